// The voters of the claims a node owns, as an operator needs to see them: which are live in this
// node's view and for how long the others have been gone. A claim renews and moves only with a
// majority of its voters, and a voter gone for good is replaced only after `--voter-replace-after`, so a
// claim with one voter left above its majority is one node loss away from stopping: `cell status
// <cell>` prints it, the owner logs it and `cell_claim_voters{claim,state}` carries it for alerts.

import { majorityOf } from '../../core/claims/index.ts'

/** One voter of a claim in the owner's view. */
export interface VoterState {
  peerId: string
  live: boolean
  /** Not live: for at least how long (since this node last saw it live, or first saw it gone while holding the claim). */
  goneMs?: number
}

/** A claim this node holds, with its voters. */
export interface ClaimVoters {
  claimId: string
  epoch: number
  /** The claim's generation: how many times its voters were replaced (absent: 0). */
  gen?: number
  /** False once its lease ran out here (a lost majority of voters, a pause): held, not served. */
  serving?: boolean
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
 * `ledger/0: voter …x4Kq9s not in the fleet for 12m; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (the owner replaces a voter gone for cell up --voter-replace-after, 5m by default)`.
 */
export function describeClaimVoters (claim: ClaimVoters, short: (peerId: string) => string, age: (ms: number) => string): string | undefined {
  const verdict = voterVerdict(claim.voters)
  if (verdict === 'ok') return undefined
  const gone = claim.voters.filter(v => !v.live)
  const live = claim.voters.length - gone.length
  const needed = majorityOf(claim.voters.length)
  const who = gone.map(v => `${short(v.peerId)}${v.goneMs !== undefined ? ` (gone ${age(v.goneMs)})` : ''}`).join(', ')
  const head = `${claim.claimId}: voter${gone.length > 1 ? 's' : ''} ${who} not in the fleet; ${live} of its ${claim.voters.length} voters left, ${needed} needed to renew or move it`
  if (verdict === 'stuck') return `${head}: it cannot renew, and no node can take it, until ${needed - live} of them return${needed - live > 1 ? '' : 's'}`
  if (verdict === 'at-risk') return `${head}: one more gone and it stops until one returns (the owner replaces a voter gone for cell up --voter-replace-after, 5m by default)`
  return head
}
