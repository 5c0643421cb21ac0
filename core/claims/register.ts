// The pure core of the claim register: one CASPaxos register per claim id (`<cell>/<ordinal>`),
// its values, ballots, the acceptor's two transitions (prepare, accept) and the proposer's change
// functions (acquire, renew, release). No I/O, no clocks read here: times come in as arguments, so
// the simulator and the unit tests drive exactly the code the node runs.
//
// Fencing lives in `acceptAccept`: an acceptor lets a value change owner or epoch only when the
// lease it last accepted has run out on ITS OWN monotonic clock plus a margin, or was released.
// The proposer cannot talk it out of that; see README.md for the safety argument.
import { InvalidClaimError } from './errors.ts'

/** Largest number of voters a claim has. */
export const MAX_VOTERS = 5
/** Longest peer id string accepted (base58 ed25519 ids are 52 characters). */
export const MAX_PEER_ID_CHARS = 128
export const MIN_LEASE_MS = 100
export const MAX_LEASE_MS = 10 * 60_000
/** A ballot counter may move at most this far past the acceptor's promise in one step: no proposer burns the ballot space. */
export const MAX_BALLOT_JUMP = 1_000_000
/** A claim's generation (its voter set's number) may move at most this far past an acceptor's in one request. */
export const MAX_GEN_JUMP = 1_000
const CLAIM_ID = /^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\/(?:0|[1-9][0-9]{0,5})$/
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{16,128}$/

/** `(counter, proposerId)`, ordered by counter then proposer id. */
export interface Ballot { counter: number, proposer: string }

export type ClaimState = 'held' | 'released'

export interface ClaimValue {
  owner: string
  epoch: number
  leaseMs: number
  state: ClaimState
  /** The claim's voters, fixed by its first accepted value (sorted). */
  voters: string[]
  /**
   * Set by a planned release: the tag of the final snapshot the owner took after it stopped
   * serving. The next owner restores that one (and waits for it), never an older one.
   */
  final?: string
  /**
   * Set by a move (a dead voter replaced): this generation's register is finished and the claim
   * continues in generation `gen` with `voters`. A value with `next` is never changed again, only
   * proposed again unchanged (by anyone) to complete the move; see README.md "Replacing voters".
   */
  next?: ClaimNext
}

export interface ClaimNext { gen: number, voters: string[] }

/**
 * What every request of a generation above 0 carries: the value that moved the claim there (its
 * owner, epoch and lease). A voter keeps it from the first request of the generation it sees, and
 * from then on lets no one but that owner start the new generation's register until that lease has
 * run out on its own clock: the owner served through the move and may still.
 */
export interface ClaimOrigin { owner: string, epoch: number, leaseMs: number }

/** Where a claim's register is: generation, its voters, and (above generation 0) the move that made it. */
export interface ClaimPlace { gen: number, voters: string[], origin?: ClaimOrigin }

/** A snapshot tag as a release may carry it (OCI tag grammar, bounded). */
const FINAL_TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

export function isFinalTag (tag: unknown): tag is string {
  return typeof tag === 'string' && FINAL_TAG.test(tag)
}

export interface AcceptedValue { ballot: Ballot, value: ClaimValue }

/** What one acceptor keeps per claim. */
export interface ClaimSlot {
  promised: Ballot | null
  accepted: AcceptedValue | null
  /** The acceptor's monotonic time when it accepted `accepted` (not persisted meaningfully across restarts: see `restoreSlot`). */
  acceptedAtLocalMs: number
  /** The claim's generation this slot is for (absent: 0). A request of a higher one starts the slot afresh. */
  gen?: number
  /** Above generation 0: the voters and the move the generation's first request named, and when it came (own clock). */
  place?: { voters: string[], origin: ClaimOrigin, sinceLocalMs: number }
}

export interface MarginPolicy {
  /** Part of the lease added as margin (clock rate drift between owner and voter), default 0.05. */
  fraction: number
  /** Fixed margin, default 500 ms. */
  fixedMs: number
}

export const DEFAULT_MARGIN: MarginPolicy = { fraction: 0.05, fixedMs: 500 }

export function marginMs (leaseMs: number, policy: MarginPolicy = DEFAULT_MARGIN): number {
  return Math.ceil(leaseMs * policy.fraction + policy.fixedMs)
}

export function compareBallots (a: Ballot, b: Ballot): number {
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1
  return a.proposer < b.proposer ? -1 : a.proposer > b.proposer ? 1 : 0
}

export function sameBallot (a: Ballot, b: Ballot): boolean {
  return compareBallots(a, b) === 0
}

export function isClaimId (id: string): boolean {
  return CLAIM_ID.test(id)
}

export function isPeerIdString (id: string): boolean {
  return PEER_ID.test(id)
}

/** The cell a claim id belongs to (`ledger/0` → `ledger`). */
export function cellOfClaim (claimId: string): string {
  return claimId.slice(0, claimId.indexOf('/'))
}

export function assertClaimId (id: string): void {
  if (typeof id !== 'string' || !isClaimId(id)) throw new InvalidClaimError(`"${String(id).slice(0, 80)}" is not a claim id (<cell>/<ordinal>)`)
}

/** Sorted, de-duplicated, 1..MAX_VOTERS valid peer ids; throws InvalidClaimError otherwise. */
export function normalizeVoters (voters: readonly string[]): string[] {
  if (!Array.isArray(voters) || voters.length === 0 || voters.length > MAX_VOTERS) throw new InvalidClaimError(`a claim has 1 to ${MAX_VOTERS} voters, got ${Array.isArray(voters) ? voters.length : 'none'}`)
  for (const v of voters) if (typeof v !== 'string' || !isPeerIdString(v)) throw new InvalidClaimError(`voter "${String(v).slice(0, 80)}" is not a peer id`)
  const out = [...new Set(voters)].sort()
  if (out.length !== voters.length) throw new InvalidClaimError('voters repeat a peer')
  return out
}

export function sameVoters (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

export function majorityOf (voterCount: number): number {
  return Math.floor(voterCount / 2) + 1
}

export function emptySlot (): ClaimSlot {
  return { promised: null, accepted: null, acceptedAtLocalMs: 0 }
}

/**
 * A slot read back from disk after a restart: the monotonic clock started again, so the time the
 * lease was accepted is unknown. Counting it from now only lengthens the wait for a takeover (safe).
 */
export function restoreSlot (slot: ClaimSlot, nowMs: number): ClaimSlot {
  return { ...slot, acceptedAtLocalMs: nowMs, ...(slot.place !== undefined ? { place: { ...slot.place, sinceLocalMs: nowMs } } : {}) }
}

/** The generation a slot is for, its voters (accepted value's, else the generation's first request's) and origin. */
export function placeOfSlot (slot: ClaimSlot): ClaimPlace | undefined {
  const voters = slot.accepted?.value.voters ?? slot.place?.voters
  if (voters === undefined) return undefined
  return { gen: slot.gen ?? 0, voters, ...(slot.place !== undefined ? { origin: slot.place.origin } : {}) }
}

/**
 * How long this acceptor will still refuse a change of owner or epoch over what it accepted: 0
 * when it accepted nothing, a released value, or the lease plus margin has passed on its clock.
 */
export function takeoverWaitMs (slot: ClaimSlot, nowMs: number, policy: MarginPolicy = DEFAULT_MARGIN): number {
  const acc = slot.accepted
  if (acc == null) return originWaitMs(slot, nowMs, policy)
  if (acc.value.state === 'released') return 0
  const endsAt = slot.acceptedAtLocalMs + acc.value.leaseMs + marginMs(acc.value.leaseMs, policy)
  return Math.max(0, endsAt - nowMs)
}

/**
 * A generation's register that accepted nothing yet: how long it still refuses a first value from
 * anyone but the owner that moved the claim here. That owner's lease, counted from the move it sent
 * before this generation's first request existed, ends before this wait does on this clock.
 */
export function originWaitMs (slot: ClaimSlot, nowMs: number, policy: MarginPolicy = DEFAULT_MARGIN): number {
  const place = slot.place
  if (place === undefined || slot.accepted != null) return 0
  const endsAt = place.sinceLocalMs + place.origin.leaseMs + marginMs(place.origin.leaseMs, policy)
  return Math.max(0, endsAt - nowMs)
}

/**
 * The slot a request of generation `place.gen` meets: this one, a fresh one for a newer generation,
 * or a refusal naming where the claim is now (a request of an older generation, or one that jumps
 * too far).
 */
export function slotForGen (slot: ClaimSlot, place: ClaimPlace, nowMs: number): { ok: true, slot: ClaimSlot } | { ok: false, reason: 'moved', place: ClaimPlace | undefined } {
  const mine = slot.gen ?? 0
  if (place.gen === mine) return { ok: true, slot }
  if (place.gen < mine || place.gen > mine + MAX_GEN_JUMP || place.origin === undefined) return { ok: false, reason: 'moved', place: place.gen < mine ? placeOfSlot(slot) : undefined }
  return { ok: true, slot: { promised: null, accepted: null, acceptedAtLocalMs: 0, gen: place.gen, place: { voters: place.voters, origin: place.origin, sinceLocalMs: nowMs } } }
}

// ---------------------------------------------------------------------------------------------
// Acceptor transitions. Each returns the answer and the slot to persist BEFORE answering.

export type PrepareOutcome =
  | { ok: true, slot: ClaimSlot, accepted: AcceptedValue | null, waitMs: number }
  | { ok: false, reason: 'ballot', promised: Ballot }
  | { ok: false, reason: 'voters', voters: string[] }
  | { ok: false, reason: 'moved', place: ClaimPlace | undefined }

export function acceptPrepare (current: ClaimSlot, ballot: Ballot, voters: string[], nowMs: number, policy?: MarginPolicy, place: ClaimPlace = { gen: 0, voters }): PrepareOutcome {
  const at = slotForGen(current, place, nowMs)
  if (!at.ok) return at
  const slot = at.slot
  const fixed = slot.accepted?.value.voters ?? slot.place?.voters
  if (fixed != null && !sameVoters(fixed, voters)) return { ok: false, reason: 'voters', voters: fixed }
  const floor = slot.promised ?? slot.accepted?.ballot
  // Strictly greater: a ballot is promised once, so a duplicated or replayed prepare changes nothing.
  if (floor != null && compareBallots(ballot, floor) <= 0) return { ok: false, reason: 'ballot', promised: floor }
  if (ballot.counter > (floor?.counter ?? 0) + MAX_BALLOT_JUMP) return { ok: false, reason: 'ballot', promised: floor ?? { counter: 0, proposer: '' } }
  const next = { ...slot, promised: ballot }
  return { ok: true, slot: next, accepted: slot.accepted, waitMs: takeoverWaitMs(slot, nowMs, policy) }
}

export type AcceptOutcome =
  | { ok: true, slot: ClaimSlot }
  | { ok: false, reason: 'ballot', promised: Ballot }
  | { ok: false, reason: 'voters', voters: string[] }
  | { ok: false, reason: 'lease-held', holder: string, epoch: number, waitMs: number }
  | { ok: false, reason: 'owner' }
  | { ok: false, reason: 'moved', place: ClaimPlace | undefined }

/**
 * Accepts `value` at `ballot` from `proposer` (the peer the transport authenticated), or says why not.
 * A value names its proposer as owner, except a move proposed again unchanged to complete it; it
 * may change owner or epoch only once the current lease ended on this acceptor's clock (plus
 * margin) or was released. A generation's first value from anyone but the owner that moved the
 * claim there waits out that owner's lease the same way.
 */
export function acceptAccept (current: ClaimSlot, ballot: Ballot, value: ClaimValue, proposer: string, nowMs: number, policy?: MarginPolicy, place: ClaimPlace = { gen: 0, voters: value.voters }): AcceptOutcome {
  const at = slotForGen(current, place, nowMs)
  if (!at.ok) return at
  const slot = at.slot
  const cur = slot.accepted
  const fixed = cur?.value.voters ?? slot.place?.voters
  if (fixed != null && !sameVoters(fixed, value.voters)) return { ok: false, reason: 'voters', voters: fixed }
  if (ballot.proposer !== proposer || (value.owner !== proposer && value.next === undefined)) return { ok: false, reason: 'owner' }
  if (slot.promised != null && compareBallots(ballot, slot.promised) < 0) return { ok: false, reason: 'ballot', promised: slot.promised }
  if (cur != null && compareBallots(ballot, cur.ballot) <= 0) {
    // The same accept again (duplicated or replayed): nothing changes, the lease is not lengthened.
    if (sameBallot(ballot, cur.ballot) && sameValue(cur.value, value)) return { ok: true, slot }
    return { ok: false, reason: 'ballot', promised: cur.ballot }
  }
  if (ballot.counter > (slot.promised?.counter ?? 0) + MAX_BALLOT_JUMP) return { ok: false, reason: 'ballot', promised: slot.promised ?? { counter: 0, proposer: '' } }
  if (cur != null && cur.value.state === 'held' && (cur.value.owner !== value.owner || cur.value.epoch !== value.epoch)) {
    const waitMs = takeoverWaitMs(slot, nowMs, policy)
    if (waitMs > 0) return { ok: false, reason: 'lease-held', holder: cur.value.owner, epoch: cur.value.epoch, waitMs }
  }
  if (cur == null && slot.place !== undefined && proposer !== slot.place.origin.owner) {
    const waitMs = originWaitMs(slot, nowMs, policy)
    if (waitMs > 0) return { ok: false, reason: 'lease-held', holder: slot.place.origin.owner, epoch: slot.place.origin.epoch, waitMs }
  }
  return { ok: true, slot: { ...slot, promised: ballot, accepted: { ballot, value }, acceptedAtLocalMs: nowMs } }
}

export function sameValue (a: ClaimValue, b: ClaimValue): boolean {
  return a.owner === b.owner && a.epoch === b.epoch && a.leaseMs === b.leaseMs && a.state === b.state && a.final === b.final && sameVoters(a.voters, b.voters) && sameNext(a.next, b.next)
}

function sameNext (a: ClaimNext | undefined, b: ClaimNext | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.gen === b.gen && sameVoters(a.voters, b.voters)
}

// ---------------------------------------------------------------------------------------------
// Proposer change functions: from the newest value a majority reported, the value to propose.

export type Change =
  | { op: 'acquire', self: string, leaseMs: number, voters: string[] }
  | { op: 'renew', self: string, epoch: number, leaseMs: number }
  | { op: 'release', self: string, epoch: number, final?: string }
  | { op: 'move', self: string, epoch: number, leaseMs: number, next: ClaimNext }

export type ChangeOutcome =
  | { ok: true, value: ClaimValue, noop?: boolean }
  | { ok: false, reason: 'held', holder: string, epoch: number, waitMs: number }
  | { ok: false, reason: 'lost', owner: string | null, epoch: number, state: ClaimState | null }
  | { ok: false, reason: 'voters', voters: string[] }

/**
 * The value a generation's register starts from when it accepted nothing yet: generation 0 starts
 * empty; a newer one from the move that made it (its owner held the claim at that epoch, and may
 * still: its lease ran on through the move).
 */
export function startOf (origin: ClaimOrigin | undefined, voters: string[]): ClaimValue | null {
  return origin === undefined ? null : { owner: origin.owner, epoch: origin.epoch, leaseMs: origin.leaseMs, state: 'held', voters }
}

/**
 * `current` is the value with the highest ballot among a majority's promises (null: none accepted
 * yet); `waitMs` the longest takeover wait those acceptors reported. The acceptors check the wait
 * again themselves; the proposer only avoids a round that would be refused. In a generation above
 * 0 that accepted nothing yet, pass its `origin`: the claim is then as the move left it. A value
 * with `next` is not changed here: the proposer completes the move (client.ts) and goes on there.
 */
export function applyChange (accepted: ClaimValue | null, waitMs: number, change: Change, origin?: ClaimOrigin, voters?: string[]): ChangeOutcome {
  const fromOrigin = accepted == null && origin !== undefined
  const current = accepted ?? startOf(origin, voters ?? [])
  if (change.op === 'acquire') {
    if (current != null && !sameVoters(current.voters, change.voters)) return { ok: false, reason: 'voters', voters: current.voters }
    // The owner that moved the claim here takes it up again at its own epoch (renew), never as a new one.
    if (fromOrigin && current !== null && current.owner === change.self) return { ok: false, reason: 'held', holder: current.owner, epoch: current.epoch, waitMs }
    if (current != null && current.state === 'held' && waitMs > 0) return { ok: false, reason: 'held', holder: current.owner, epoch: current.epoch, waitMs }
    // A new epoch starts without the last one's final tag (the acquirer reads it from `current`).
    return { ok: true, value: { owner: change.self, epoch: (current?.epoch ?? 0) + 1, leaseMs: change.leaseMs, state: 'held', voters: current?.voters ?? change.voters } }
  }
  const mine = current != null && current.owner === change.self && current.epoch === change.epoch
  if (change.op === 'renew') {
    if (!mine || current.state !== 'held') return { ok: false, reason: 'lost', owner: current?.owner ?? null, epoch: current?.epoch ?? 0, state: current?.state ?? null }
    return { ok: true, value: { ...current, leaseMs: change.leaseMs } }
  }
  if (change.op === 'move') {
    if (!mine || current.state !== 'held') return { ok: false, reason: 'lost', owner: current?.owner ?? null, epoch: current?.epoch ?? 0, state: current?.state ?? null }
    // Not yet taken up in this generation: take it up first (a renew); the move can come next time.
    if (fromOrigin) return { ok: true, value: { ...current, leaseMs: change.leaseMs } }
    if (!(Number.isSafeInteger(change.next.gen) && change.next.gen > 0)) throw new InvalidClaimError(`generation ${change.next.gen} is not a positive integer`)
    return { ok: true, value: { ...current, leaseMs: change.leaseMs, next: { gen: change.next.gen, voters: normalizeVoters(change.next.voters) } } }
  }
  if (!mine) return { ok: false, reason: 'lost', owner: current?.owner ?? null, epoch: current?.epoch ?? 0, state: current?.state ?? null }
  if (current.state === 'released' && current.final === change.final) return { ok: true, value: current, noop: true }
  if (change.final !== undefined && !isFinalTag(change.final)) throw new InvalidClaimError(`"${String(change.final).slice(0, 80)}" is not a snapshot tag`)
  const { final: _old, ...rest } = current
  return { ok: true, value: { ...rest, state: 'released', ...(change.final !== undefined ? { final: change.final } : {}) } }
}
