// The voters of the claims a node owns, as an operator needs to see them: which are live in this
// node's view and answer its claim rounds, and for how long the others have been gone (out of the
// fleet) or silent (in the fleet, but their register does not answer: a full disk, a broken store). A claim renews and moves only with a
// majority of its voters, and a voter gone for good is replaced only after `--voter-replace-after`, so a
// claim with one voter left above its majority is one node loss away from stopping: `cell status
// <cell>` prints it, the owner logs it and `cell_claim_voters{claim,state}` carries it for alerts.

import { majorityOf } from '../../core/claims/index.ts'

/** One voter of a claim in the owner's view. */
export interface VoterState {
  peerId: string
  /** In this node's view and answering its claim rounds: it can vote. */
  live: boolean
  /**
   * Not live: for at least how long (out of the fleet: since this node last saw it live, or first saw
   * it gone while holding the claim; silent: since it last answered, or was first asked).
   */
  goneMs?: number
  /** Not live, but in the fleet: asked about the claim and not answering (its register cannot vote). */
  silent?: boolean
}

/** A claim this node holds, with its voters. */
export interface ClaimVoters {
  claimId: string
  epoch: number
  /** The claim's generation: how many times its voters were replaced (absent: 0). */
  gen?: number
  /** False once its lease ran out here (a lost majority of voters, a pause): held, not served. */
  serving?: boolean
  /**
   * The owner's `cell up --voter-replace-after`: how long a voter may be gone or silent before the
   * owner replaces it (0: never). Absent in reports of nodes from before it was sent.
   */
  replaceAfterMs?: number
  voters: VoterState[]
}

/**
 * What the voters mean for the claim: `ok` (every voter live), `degraded` (some gone, more than a
 * majority left), `at-risk` (exactly a majority left: one more loss stops the claim) or `stuck` (fewer
 * than a majority: the owner cannot renew, nobody can take the claim until voters return).
 */
export function voterVerdict (voters: readonly VoterState[]): 'ok' | 'degraded' | 'at-risk' | 'stuck' {
  const live = voters.filter(v => v.live).length
  const needed = majorityOf(voters.length)
  if (live === voters.length) return 'ok'
  if (live < needed) return 'stuck'
  return live === needed ? 'at-risk' : 'degraded'
}

/**
 * One line about a claim's voters, or undefined when every voter is live:
 * `ledger/0: voter …x4Kq9s (gone 2m) not in the fleet; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (its owner replaces a voter gone or silent for 5m, its --voter-replace-after: …x4Kq9s in 3m)`;
 * a silent voter reads `voter …x4Kq9s (for 40 s) in the fleet but not answering its claim rounds`.
 */
export function describeClaimVoters (claim: ClaimVoters, short: (peerId: string) => string, age: (ms: number) => string): string | undefined {
  const verdict = voterVerdict(claim.voters)
  if (verdict === 'ok') return undefined
  const down = claim.voters.filter(v => !v.live)
  const live = claim.voters.length - down.length
  const needed = majorityOf(claim.voters.length)
  const list = (vs: VoterState[], what: (ms: string) => string): string => vs.map(v => `${short(v.peerId)}${v.goneMs !== undefined ? ` (${what(age(v.goneMs))})` : ''}`).join(', ')
  const gone = down.filter(v => v.silent !== true)
  const silent = down.filter(v => v.silent === true)
  const parts = [
    ...(gone.length > 0 ? [`voter${gone.length > 1 ? 's' : ''} ${list(gone, a => `gone ${a}`)} not in the fleet`] : []),
    ...(silent.length > 0 ? [`voter${silent.length > 1 ? 's' : ''} ${list(silent, a => `for ${a}`)} in the fleet but not answering its claim rounds`] : [])
  ]
  const head = `${claim.claimId}: ${parts.join('; ')}; ${live} of its ${claim.voters.length} voters left, ${needed} needed to renew or move it`
  if (verdict === 'stuck') return `${head}: it cannot renew, and no node can take it, until ${needed - live} of them return${needed - live > 1 ? '' : 's'}`
  if (verdict === 'at-risk') return `${head}: one more gone and it stops until one returns (${replaceHint(claim.replaceAfterMs, down, short, age)})`
  return head
}

/** What the owner will do about `down` voters, as its own --voter-replace-after says (the default, for a report that does not carry it). */
function replaceHint (replaceAfterMs: number | undefined, down: readonly VoterState[], short: (peerId: string) => string, age: (ms: number) => string): string {
  if (replaceAfterMs === undefined) return 'the owner replaces a voter gone or silent for cell up --voter-replace-after, 5m by default'
  if (replaceAfterMs === 0) return 'its owner never replaces voters: it runs with --voter-replace-after 0'
  const longest = down.reduce<VoterState | undefined>((a, v) => a === undefined || (v.goneMs ?? 0) > (a.goneMs ?? 0) ? v : a, undefined)
  const head = `its owner replaces a voter gone or silent for ${age(replaceAfterMs)}, its --voter-replace-after`
  if (longest === undefined) return head
  const leftMs = replaceAfterMs - (longest.goneMs ?? 0)
  return `${head}: ${short(longest.peerId)} ${leftMs > 0 ? `in ${age(leftMs)}` : 'is due now (a failed move is tried again at its next check)'}`
}

/**
 * What the owner of claims saw of each of their voters in its view: when it last saw each live
 * (in the view), and when each last came back (into the view after being out of it, or restarted:
 * its node record names another start). A voter out of the view is gone since it was last seen live
 * (or since first noted out). A voter is silent only for as long as it was asked while in the view
 * since its return: the rounds it missed while it was gone (or down for a restart too short to leave
 * the view) count against it as gone, not as silent, so a voter that just came back is not shown
 * silent, nor replaced as silent, before the owner's next round has asked it. Bounded by the voters
 * the caller keeps (`keepOnly`).
 */
export class VoterSightings {
  private readonly of = new Map<string, { lastLiveMs: number, startedMs?: number, out: boolean, backMs?: number }>()

  /**
   * Notes `peerId` in the view (with its record's `startedMs`) or out of it at `nowMs`; returns
   * since when it has been back, or undefined when it has been in the view since first noted.
   */
  note (peerId: string, inView: boolean, startedMs: number | undefined, nowMs: number): number | undefined {
    const v = this.of.get(peerId)
    if (v === undefined) {
      this.of.set(peerId, { lastLiveMs: nowMs, out: !inView, ...(startedMs !== undefined ? { startedMs } : {}) })
      return undefined
    }
    if (!inView) { v.out = true; return v.backMs }
    if (v.out || (startedMs !== undefined && v.startedMs !== undefined && startedMs !== v.startedMs)) v.backMs = nowMs
    v.out = false
    v.lastLiveMs = nowMs
    if (startedMs !== undefined) v.startedMs = startedMs
    return v.backMs
  }

  /** How long `peerId` has been out of the view at `nowMs`: since it was last noted in it, or first noted out (0 if never noted). */
  goneForMs (peerId: string, nowMs: number): number {
    const v = this.of.get(peerId)
    return v === undefined ? 0 : Math.max(0, nowMs - v.lastLiveMs)
  }

  /** Forgets every voter not in `ids`. */
  keepOnly (ids: ReadonlySet<string>): void {
    for (const id of this.of.keys()) if (!ids.has(id)) this.of.delete(id)
  }
}

/** How long a voter in the view has been silent: unanswered, but never for longer than it has been back (VoterSightings). */
export function silentForMs (unansweredMs: number, backMs: number | undefined, nowMs: number): number {
  return backMs === undefined ? unansweredMs : Math.min(unansweredMs, Math.max(0, nowMs - backMs))
}
