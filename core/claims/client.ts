// The proposer side of the claim register: acquire, renew and release a claim by CASPaxos rounds
// (prepare, then accept) to a majority of the claim's voters. Ballot conflicts are retried with a
// bounded, jittered backoff inside a deadline.
//
// The lease an owner gets counts from the moment it SENT the winning accept round, on its own
// monotonic clock: every voter accepted after that moment, so the owner's lease always ends
// before any voter's view of it does. The owner must stop serving once `nowMs > leaseStartLocalMs
// + leaseMs` (see `leaseValid`), whether or not a renew is still under way.
import { logger } from '@libp2p/logger'
import { systemRandom, type Clock, type Random } from '../ports.ts'
import { isRefusal, refusalError } from '../fleet/peer-grant.ts'
import {
  ClaimHeldError, ClaimLeaseExpiredError, ClaimLostError, ClaimQuorumError, ClaimVotersMismatchError,
  InvalidClaimError, MalformedClaimFrameError, StaleClaimAnswerError, TooManyClaimsError
} from './errors.ts'
import { decodeClaimFrame, encodeClaimRequest, type ClaimAnswer, type ClaimRequest } from './codec.ts'
import type { ClaimGrantGate } from './grant-gate.ts'
import type { MonotonicClock } from './clocks.ts'
import {
  applyChange, assertClaimId, cellOfClaim, compareBallots, majorityOf, normalizeVoters, sameBallot, startOf,
  MIN_LEASE_MS, MAX_LEASE_MS, type AcceptedValue, type Ballot, type Change, type ClaimOrigin, type ClaimPlace, type ClaimValue
} from './register.ts'

const log = logger('cell:claims:client')
/** Why a finished phase cancels its outstanding requests (one object: an Error per round costs a stack trace). */
const PHASE_OVER = Object.freeze(new ClaimQuorumError('phase over'))
/** Most claims whose ballot counters (and generations) a client keeps; the oldest is forgotten past it (as a restart forgets them all). */
const MAX_BALLOT_COUNTERS = 4096
/** Most generations one operation follows a claim through (each a move that replaced voters). */
const MAX_HOPS = 8
/** Most (claim, voter) pairs whose answers a client remembers (VoterHeard); the least recently asked goes past it. */
const MAX_HEARD = 3 * MAX_BALLOT_COUNTERS

/** Sends one request frame to `peerId` and resolves with its answer frame; rejects on failure or abort. */
export interface ClaimTransport {
  send: (peerId: string, frame: Uint8Array, options: { signal: AbortSignal }) => Promise<Uint8Array>
}

export interface ClaimLease {
  claimId: string
  epoch: number
  leaseMs: number
  /** This node's monotonic time when it sent the round that granted the lease. */
  leaseStartLocalMs: number
  voters: string[]
  /** The claim's generation: 0 until a move replaced its voters; each move adds one. */
  gen: number
  /** Above generation 0: the move that made it (pass it back with `gen` on the next operation). */
  origin?: ClaimOrigin
  /** On acquire: the final snapshot the previous epoch's owner handed over with its release, if any. */
  handedOver?: { epoch: number, tag: string, owner: string }
}

/** The options that carry a lease's (or a stored place's) generation into the next operation on its claim; none for generation 0. */
export function placeOptions (place: { gen?: number, origin?: ClaimOrigin }): { gen?: number, origin?: ClaimOrigin } {
  return (place.gen ?? 0) > 0 ? { gen: place.gen, ...(place.origin !== undefined ? { origin: place.origin } : {}) } : {}
}

/** May the owner still serve? False from the first millisecond past the lease on its own clock. */
export function leaseValid (lease: Pick<ClaimLease, 'leaseMs' | 'leaseStartLocalMs'>, nowMs: number): boolean {
  return nowMs <= lease.leaseStartLocalMs + lease.leaseMs
}

export function leaseRemainingMs (lease: Pick<ClaimLease, 'leaseMs' | 'leaseStartLocalMs'>, nowMs: number): number {
  return Math.max(0, lease.leaseStartLocalMs + lease.leaseMs - nowMs)
}

export interface ClaimRegisterClientInit {
  selfId: string
  transport: ClaimTransport
  /** `ownerClock()` in hosts (see clocks.ts); leases are counted on it. */
  clock: MonotonicClock
  /** Timers for deadlines and backoff (the host's Clock; the simulator's fake one). */
  timers: Pick<Clock, 'setTimeout' | 'clearTimeout'>
  gate: ClaimGrantGate
  random?: Random
  /** Default lease length (default 10 s). */
  leaseMs?: number
  /** How long one phase waits for a majority (default 1 s). */
  phaseTimeoutMs?: number
  /** Whole operation deadline (default 5 s). */
  timeoutMs?: number
  /** Most prepare/accept rounds per operation (default 6). */
  maxAttempts?: number
  /** First backoff after a conflict; doubles per attempt, jittered (default 25 ms). */
  backoffMs?: number
}

/**
 * What a client knows of one voter of one claim since it started: when it first and last asked it
 * and when it last got an answer that shows the voter's register working (a promise, an accept or
 * a reject of its ballot, lease, voters or generation; not a refusal, an error, a timeout, a
 * `capacity` or `not-voter` reject). A voter still asked but long unanswered is in the fleet but
 * cannot vote (a full disk, a broken store, a wedged process): its owner replaces it
 * (node-host/volumes). On the client's clock.
 */
export interface VoterHeard {
  firstAskedMs: number
  lastAskedMs: number
  lastAnsweredMs?: number
}

/** How long `heard` went unanswered: from its last answer (or its first ask) to its last ask. */
export function unansweredMs (heard: VoterHeard): number {
  return Math.max(0, heard.lastAskedMs - (heard.lastAnsweredMs ?? heard.firstAskedMs))
}

export interface ClaimClientStats {
  rounds: number
  conflicts: number
  /** Answers not bound to the request they came back for (claim, ballot, phase): never counted as votes. */
  staleAnswers: number
  /** Answers from voters without a host grant for the cell: never counted as votes. */
  refusedVoters: number
  malformedAnswers: number
  /** Requests a voter refused for this node's grant. */
  refusedByVoters: number
}

interface OpOptions {
  signal?: AbortSignal
  leaseMs?: number
  /**
   * How long one phase waits for a majority in this operation (default: the client's). An owner's
   * renew gives a round most of what is left of its lease: on a starved machine (fsyncs behind a
   * busy disk, a loaded CPU) a quorum that answers in 5 s is still a quorum, and a phase cut at 3 s
   * would only start another round that needs the same slow fsyncs.
   */
  phaseTimeoutMs?: number
  /**
   * The claim's generation and the move that made it, as the last lease (or this node's own vote)
   * said; absent: generation 0. The client follows the claim from there to wherever it moved since.
   */
  gen?: number
  origin?: ClaimOrigin
}

interface AcquireOptions extends OpOptions {
  /**
   * Looks at the claim's current value (the register's, from a majority's promises) once the
   * acquire could go ahead, before anything is accepted: throwing refuses the acquire with that
   * error and changes nothing (no epoch is spent). A node uses it to leave a claim to a former owner
   * that may hold newer data than any snapshot (node-host/volumes).
   */
  admit?: (previous: ClaimValue | null) => void
}

interface Tally {
  ok: Array<{ peer: string, answer: ClaimAnswer }>
  rejects: Array<{ peer: string, answer: Extract<ClaimAnswer, { kind: 'reject' }> }>
  errors: Array<{ peer: string, error: unknown }>
  /** Voters that refused this node's grant (a subset of `errors`), by the named trust error they sent. */
  refusedUs: Error[]
}

export class ClaimRegisterClient {
  private readonly init: ClaimRegisterClientInit
  private readonly random: Random
  /**
   * Ballot counters, one per claim: a voter refuses a ballot that jumps more than MAX_BALLOT_JUMP
   * past its promise, so one counter shared by every claim, raised by each renew of every claim this
   * node ever held, would after weeks be too far ahead of a claim it had never asked (or a fresh
   * voter) for any voter to accept.
   */
  private readonly ballotCounters = new Map<string, number>()
  /** Claims this client followed to a newer generation than its callers may know (bounded like the counters). */
  private readonly places = new Map<string, ClaimPlace>()
  private readonly counters: ClaimClientStats = { rounds: 0, conflicts: 0, staleAnswers: 0, refusedVoters: 0, malformedAnswers: 0, refusedByVoters: 0 }
  /** By heardKey(claim, voter), least recently asked first (bounded by MAX_HEARD). */
  private readonly heardOf = new Map<string, VoterHeard>()

  constructor (init: ClaimRegisterClientInit) {
    this.init = init
    this.random = init.random ?? systemRandom
  }

  stats (): ClaimClientStats {
    return { ...this.counters }
  }

  /** When this client asked `peer` about `claimId` and last heard it answer (a copy), or undefined if never asked since start. */
  heard (claimId: string, peer: string): VoterHeard | undefined {
    const h = this.heardOf.get(heardKey(claimId, peer))
    return h === undefined ? undefined : { ...h }
  }

  private noteAsked (claimId: string, peer: string, nowMs: number): void {
    const key = heardKey(claimId, peer)
    const h = this.heardOf.get(key)
    this.heardOf.delete(key)
    this.heardOf.set(key, h === undefined ? { firstAskedMs: nowMs, lastAskedMs: nowMs } : { ...h, lastAskedMs: nowMs })
    if (this.heardOf.size > MAX_HEARD) this.heardOf.delete(this.heardOf.keys().next().value as string)
  }

  private noteAnswered (claimId: string, peer: string, nowMs: number): void {
    const h = this.heardOf.get(heardKey(claimId, peer))
    if (h !== undefined && (h.lastAnsweredMs === undefined || nowMs > h.lastAnsweredMs)) h.lastAnsweredMs = nowMs
  }

  /** A new epoch for this node, or ClaimHeldError naming the holder and how long its lease still runs. */
  async acquire (claimId: string, voters: readonly string[], options: AcquireOptions = {}): Promise<ClaimLease> {
    const place = this.placeFor(claimId, voters, options)
    const leaseMs = this.leaseOf(options)
    const out = await this.run(claimId, place, { op: 'acquire', self: this.init.selfId, leaseMs, voters: place.voters }, options)
    const lease = this.lease(claimId, out.value, out.sentAtMs, out.place)
    const prev = out.previous
    if (prev?.state === 'released' && prev.final !== undefined && prev.epoch === lease.epoch - 1) lease.handedOver = { epoch: prev.epoch, tag: prev.final, owner: prev.owner }
    return lease
  }

  /** A fresh lease at the same epoch; ClaimLostError when the claim is no longer this node's at `epoch`. */
  async renew (claimId: string, voters: readonly string[], epoch: number, options: OpOptions = {}): Promise<ClaimLease> {
    const place = this.placeFor(claimId, voters, options)
    const leaseMs = this.leaseOf(options)
    const out = await this.run(claimId, place, { op: 'renew', self: this.init.selfId, epoch, leaseMs }, options, options.phaseTimeoutMs)
    return this.lease(claimId, out.value, out.sentAtMs, out.place)
  }

  /**
   * Replaces the claim's voters (some gone for good) while this node owns it at `epoch`: a round of
   * the current voters finishes their register with a value naming the next generation and its
   * voters, then the owner starts that generation's register with its own lease at the same epoch.
   * The owner serves on throughout (the move's round is a renew). The returned lease is in the new
   * generation; should its first round fail, the lease of the move's round comes back (pass its
   * `gen` and `origin` on: the next renew starts the new generation). README.md "Replacing voters".
   */
  async move (claimId: string, voters: readonly string[], epoch: number, nextVoters: readonly string[], options: OpOptions = {}): Promise<ClaimLease> {
    const place = this.placeFor(claimId, voters, options)
    const leaseMs = this.leaseOf(options)
    const out = await this.run(claimId, place, { op: 'move', self: this.init.selfId, epoch, leaseMs, next: { gen: place.gen + 1, voters: normalizeVoters(nextVoters) } }, options, options.phaseTimeoutMs)
    const next = out.value.next
    // The claim had just moved here and this round took it up (a renew): it moves again next time.
    if (next === undefined) return this.lease(claimId, out.value, out.sentAtMs, out.place)
    const there: ClaimPlace = { gen: next.gen, voters: next.voters, origin: { owner: out.value.owner, epoch: out.value.epoch, leaseMs: out.value.leaseMs } }
    this.remember(claimId, there)
    const bridge = this.lease(claimId, { ...out.value, voters: next.voters }, out.sentAtMs, there)
    try {
      return await this.renew(claimId, there.voters, epoch, { ...options, ...placeOptions(there) })
    } catch (err) {
      if (err instanceof ClaimLostError || err instanceof ClaimHeldError) throw err
      log('%s moved to generation %d; its first round there failed (%s), the move\'s lease bridges', claimId, there.gen, (err as Error).name)
      return bridge
    }
  }

  /**
   * Planned hand-over: the next acquire needs no wait. The caller must have stopped serving the
   * claim (final snapshot taken) BEFORE calling this; its lease counts as ended from now on.
   */
  async release (claimId: string, voters: readonly string[], epoch: number, options: { signal?: AbortSignal, final?: string, gen?: number, origin?: ClaimOrigin } = {}): Promise<void> {
    const place = this.placeFor(claimId, voters, options)
    await this.run(claimId, place, { op: 'release', self: this.init.selfId, epoch, ...(options.final !== undefined ? { final: options.final } : {}) }, options)
  }

  /** Where to ask: the caller's place, or a newer generation this client followed the claim to. */
  private placeFor (claimId: string, voters: readonly string[], options: { gen?: number, origin?: ClaimOrigin }): ClaimPlace {
    assertClaimId(claimId)
    const gen = options.gen ?? 0
    if (!(Number.isSafeInteger(gen) && gen >= 0)) throw new InvalidClaimError(`generation ${gen} is not a non-negative integer`)
    if (gen > 0 && options.origin === undefined) throw new InvalidClaimError(`generation ${gen} of ${claimId} needs the move that made it (origin)`)
    const given: ClaimPlace = { gen, voters: normalizeVoters(voters), ...(gen > 0 && options.origin !== undefined ? { origin: options.origin } : {}) }
    const known = this.places.get(claimId)
    return known !== undefined && known.gen > given.gen ? known : given
  }

  private remember (claimId: string, place: ClaimPlace): void {
    const known = this.places.get(claimId)
    if (known !== undefined && known.gen >= place.gen) return
    this.places.delete(claimId)
    this.places.set(claimId, place)
    if (this.places.size > MAX_BALLOT_COUNTERS) this.places.delete(this.places.keys().next().value as string)
  }

  private leaseOf (options: OpOptions): number {
    const leaseMs = options.leaseMs ?? this.init.leaseMs ?? 10_000
    if (!Number.isSafeInteger(leaseMs) || leaseMs < MIN_LEASE_MS || leaseMs > MAX_LEASE_MS) throw new InvalidClaimError(`lease of ${leaseMs} ms is outside [${MIN_LEASE_MS}, ${MAX_LEASE_MS}]`)
    return leaseMs
  }

  private lease (claimId: string, value: ClaimValue, sentAtMs: number, place: ClaimPlace): ClaimLease {
    const lease: ClaimLease = { claimId, epoch: value.epoch, leaseMs: value.leaseMs, leaseStartLocalMs: sentAtMs, voters: value.voters, gen: place.gen, ...(place.origin !== undefined ? { origin: place.origin } : {}) }
    if (!leaseValid(lease, this.init.clock.nowMs())) throw new ClaimLeaseExpiredError(`${claimId} epoch ${value.epoch} was granted, but its lease ran out before the answer came back`)
    return lease
  }

  private async run (claimId: string, start: ClaimPlace, change: Change, options: { signal?: AbortSignal, admit?: AcquireOptions['admit'] }, phaseTimeoutMs?: number): Promise<{ value: ClaimValue, sentAtMs: number, previous: ClaimValue | null, place: ClaimPlace }> {
    const timeoutMs = this.init.timeoutMs ?? 5_000
    const deadline = new AbortController()
    const timer = this.init.timers.setTimeout(() => { deadline.abort(new ClaimQuorumError(`${change.op} ${claimId}: no majority of ${start.voters.length} voters within ${timeoutMs} ms`)) }, timeoutMs)
    const signal = options.signal != null ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal
    const attempts = Math.max(1, this.init.maxAttempts ?? 6)
    let place = start
    let hops = 0
    let lastProblem = 'no answers'
    // The claim moved on: go on in its newer generation (a move is chosen before anyone asks there).
    const hop = (to: ClaimPlace): void => {
      if (++hops > MAX_HOPS) throw new ClaimQuorumError(`${change.op} ${claimId}: followed the claim through ${MAX_HOPS} generations and it moved on again`)
      log('%s moved from generation %d to %d (voters %s)', claimId, place.gen, to.gen, to.voters.map(v => `…${v.slice(-6)}`).join(', '))
      place = to
      this.remember(claimId, to)
    }
    try {
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await this.backoff(attempt, signal)
        signal.throwIfAborted()
        const voters = place.voters
        const majority = majorityOf(voters.length)
        const where = place.gen > 0 ? { gen: place.gen, ...(place.origin !== undefined ? { origin: place.origin } : {}) } : {}
        const ballot: Ballot = { counter: this.nextCounter(claimId, place.gen), proposer: this.init.selfId }
        const prepare = await this.round(voters, { kind: 'prepare', claimId, ballot, nonce: this.nonce(), voters, ...where }, majority, signal, phaseTimeoutMs)
        const movedOn = movedPlace(prepare, place)
        if (movedOn !== undefined) { hop(movedOn); attempt = -1; continue }
        if (prepare.ok.length < majority) {
          lastProblem = this.problems('prepare', prepare, voters, claimId, place.gen)
          continue
        }
        let current: AcceptedValue | null = null
        let waitMs = 0
        for (const { answer } of prepare.ok) {
          if (answer.kind !== 'promise') continue
          waitMs = Math.max(waitMs, answer.waitMs)
          if (answer.accepted != null && (current == null || compareBallots(answer.accepted.ballot, current.ballot) > 0)) current = answer.accepted
        }
        const frozen = current?.value.next !== undefined ? current.value : undefined
        if (frozen?.next !== undefined) {
          // A move this generation may have chosen: propose it again unchanged (anyone may), and
          // once a majority holds it, go on where it points. Its owner's own move ends here.
          const sentAtMs = this.init.clock.nowMs()
          const accept = await this.round(voters, { kind: 'accept', claimId, ballot, nonce: this.nonce(), voters, value: frozen, ...where }, majority, signal, phaseTimeoutMs)
          const movedOn = movedPlace(accept, place)
          if (movedOn !== undefined) { hop(movedOn); attempt = -1; continue }
          if (accept.ok.length < majority) {
            lastProblem = this.problems('accept', accept, voters, claimId, place.gen)
            continue
          }
          if (change.op === 'move' && frozen.owner === change.self && frozen.epoch === change.epoch) return { value: frozen, sentAtMs, previous: frozen, place }
          hop({ gen: frozen.next.gen, voters: frozen.next.voters, origin: { owner: frozen.owner, epoch: frozen.epoch, leaseMs: frozen.leaseMs } })
          attempt = -1
          continue
        }
        // Computed where the round is: a claim followed to a newer generation has that one's voters.
        const proposed = change.op === 'move' ? { ...change, next: { gen: place.gen + 1, voters: change.next.voters } } : change.op === 'acquire' ? { ...change, voters } : change
        const next = applyChange(current?.value ?? null, waitMs, proposed, current == null ? place.origin : undefined, voters)
        const previous = current?.value ?? startOf(place.origin, voters)
        if (!next.ok) {
          if (next.reason === 'held') throw new ClaimHeldError(`${claimId} is held by ${next.holder} at epoch ${next.epoch} for up to ${next.waitMs} ms more`, { holder: next.holder, epoch: next.epoch, leaseEndsInMs: next.waitMs })
          if (next.reason === 'voters') throw new ClaimVotersMismatchError(`${claimId} has voters ${next.voters.join(', ')}`, next.voters)
          throw new ClaimLostError(`${claimId} is ${next.owner == null ? 'not held' : `${next.state ?? 'not yet taken up in its new generation'} by ${next.owner} at epoch ${next.epoch}`}: not this node's at the asked epoch`)
        }
        if (change.op === 'acquire') options.admit?.(previous)
        if (next.noop === true) return { value: next.value, sentAtMs: this.init.clock.nowMs(), previous, place }
        const sentAtMs = this.init.clock.nowMs()
        const accept = await this.round(voters, { kind: 'accept', claimId, ballot, nonce: this.nonce(), voters, value: next.value, ...where }, majority, signal, phaseTimeoutMs)
        const movedAway = movedPlace(accept, place)
        if (movedAway !== undefined) { hop(movedAway); attempt = -1; continue }
        if (accept.ok.length >= majority) return { value: next.value, sentAtMs, previous, place }
        const held = accept.rejects.filter(r => r.answer.reason === 'lease-held')
        if (held.length > voters.length - majority) {
          const waits = held.map(r => r.answer.waitMs ?? 0)
          const first = held[0].answer
          throw new ClaimHeldError(`${claimId} is still held by ${first.holder ?? 'another owner'} on ${held.length} voters' clocks`, { holder: first.holder ?? '', epoch: first.epoch ?? 0, leaseEndsInMs: Math.max(...waits) })
        }
        lastProblem = this.problems('accept', accept, voters, claimId, place.gen)
      }
      throw new ClaimQuorumError(`${change.op} ${claimId}: no majority after ${attempts} rounds (${lastProblem})`)
    } catch (err) {
      if (deadline.signal.aborted && !(options.signal?.aborted ?? false) && !(err instanceof ClaimHeldError || err instanceof ClaimLostError || err instanceof ClaimVotersMismatchError)) {
        throw new ClaimQuorumError(`${change.op} ${claimId}: no majority of ${place.voters.length} voters within ${timeoutMs} ms (${lastProblem})`, { cause: err })
      }
      throw err
    } finally {
      this.init.timers.clearTimeout(timer)
    }
  }

  /** Looks at a failed phase: raises the ballot past any promise seen, and names what went wrong. */
  private problems (phase: string, tally: Tally, voters: string[], claimId: string, gen: number): string {
    for (const { answer } of tally.rejects) {
      if (answer.promised != null) this.raiseCounter(claimId, gen, answer.promised.counter)
      if (answer.reason === 'voters' && answer.voters != null && tally.rejects.filter(r => r.answer.reason === 'voters').length > voters.length - majorityOf(voters.length)) {
        throw new ClaimVotersMismatchError(`the claim's voters are ${answer.voters.join(', ')}`, answer.voters)
      }
    }
    const full = tally.rejects.filter(r => r.answer.reason === 'capacity')
    if (full.length > voters.length - majorityOf(voters.length)) throw new TooManyClaimsError(`${full.length} of the ${voters.length} voters hold as many claims as they may`)
    // Enough voters refused this node's own grant that no majority can say yes: their named error says why.
    if (tally.refusedUs.length > voters.length - majorityOf(voters.length)) throw tally.refusedUs[0]
    if (tally.rejects.some(r => r.answer.reason === 'ballot')) this.counters.conflicts++
    // Which voter said what: `accept: 0 of 3 yes; …9V4WkD rejected: lease-held by …xTBzSy; …xTBzSy failed: ConnectionClosedError` (at most 8 voters named).
    const said = [
      ...tally.rejects.map(r => `…${r.peer.slice(-6)} rejected: ${r.answer.reason}${r.answer.reason === 'lease-held' && r.answer.holder !== undefined ? ` by …${r.answer.holder.slice(-6)}` : ''}`),
      ...tally.errors.map(e => `…${e.peer.slice(-6)} failed: ${e.error instanceof Error ? e.error.name : 'error'}`)
    ]
    return `${phase}: ${tally.ok.length} of ${voters.length} yes${said.length > 0 ? `; ${said.slice(0, 8).join('; ')}` : ''}`
  }

  /** The ballot counter `claimId`'s next round uses (each generation's register counts on its own). */
  private nextCounter (claimId: string, gen: number): number {
    const key = counterKey(claimId, gen)
    const next = (this.ballotCounters.get(key) ?? 0) + 1
    this.setCounter(key, next)
    return next
  }

  /** Past a promise a voter reported: the next ballot for `claimId` starts above it. */
  private raiseCounter (claimId: string, gen: number, seen: number): void {
    const key = counterKey(claimId, gen)
    if (seen > (this.ballotCounters.get(key) ?? 0)) this.setCounter(key, seen)
  }

  private setCounter (claimId: string, counter: number): void {
    this.ballotCounters.delete(claimId)
    this.ballotCounters.set(claimId, counter)
    if (this.ballotCounters.size > MAX_BALLOT_COUNTERS) this.ballotCounters.delete(this.ballotCounters.keys().next().value as string)
  }

  private nonce (): string {
    let out = ''
    for (const b of this.random.bytes(8)) out += b.toString(16).padStart(2, '0')
    return out
  }

  private async backoff (attempt: number, signal: AbortSignal): Promise<void> {
    const base = (this.init.backoffMs ?? 25) * 2 ** Math.min(attempt - 1, 6)
    const ms = base * (0.5 + this.random.next())
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { this.init.timers.clearTimeout(t); reject(signal.reason) }
      const t = this.init.timers.setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * Sends `req` to every voter and resolves once a majority said yes, once a majority can no
   * longer say yes, or at the phase deadline. Answers are checked against the request (claim,
   * ballot, phase) and the voter's grant before they count. The requests still out when it
   * resolves run on until the phase deadline, only so that a slower voter's answer is heard
   * (VoterHeard): a voter always cut off by two faster ones is slow, not broken.
   */
  private async round (voters: string[], req: ClaimRequest, majority: number, signal: AbortSignal, phaseTimeoutMs?: number): Promise<Tally> {
    this.counters.rounds++
    const cell = cellOfClaim(req.claimId)
    const frame = encodeClaimRequest(req, this.init.gate.chain(cell))
    const phaseMs = phaseTimeoutMs ?? this.init.phaseTimeoutMs ?? 1_000
    const phase = new AbortController()
    const onAbort = (): void => { phase.abort(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    let outstanding = voters.length
    const end = (): void => {
      this.init.timers.clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      phase.abort(PHASE_OVER)
    }
    const timer = this.init.timers.setTimeout(() => { phase.abort(new ClaimQuorumError('phase deadline')); end() }, phaseMs)
    const tally: Tally = { ok: [], rejects: [], errors: [], refusedUs: [] }
    let decided = false
    await new Promise<void>(resolve => {
      let pending = voters.length
      const decide = (): void => { decided = true; resolve() }
      const settle = (): void => {
        if (tally.ok.length >= majority || tally.ok.length + pending < majority) decide()
      }
      phase.signal.addEventListener('abort', decide, { once: true })
      const askedMs = this.init.clock.nowMs()
      for (const peer of voters) {
        this.noteAsked(req.claimId, peer, askedMs)
        void this.ask(peer, req, frame, cell, phase.signal).then(result => {
          if (result.kind === 'answer' && answerShowsRegister(result.answer)) this.noteAnswered(req.claimId, peer, this.init.clock.nowMs())
          if (!decided) {
            pending--
            if (result.kind === 'error') {
              tally.errors.push({ peer, error: result.error })
              if (result.refusedUs === true) tally.refusedUs.push(result.error as Error)
            }
            else if (result.answer.kind === 'reject') tally.rejects.push({ peer, answer: result.answer })
            else tally.ok.push({ peer, answer: result.answer })
            settle()
          }
          if (--outstanding === 0) end()
        })
      }
      settle()
    })
    if (voters.length === 0) end()
    return tally
  }

  private async ask (peer: string, req: ClaimRequest, frame: Uint8Array, cell: string, signal: AbortSignal): Promise<{ kind: 'answer', answer: ClaimAnswer } | { kind: 'error', error: unknown, refusedUs?: boolean }> {
    try {
      const bytes = await this.init.transport.send(peer, frame, { signal })
      const decoded = decodeClaimFrame(bytes)
      if (decoded.type === 'refused') {
        this.counters.refusedByVoters++
        return { kind: 'error', error: refusalError(decoded.code, `voter ${peer} of ${req.claimId}`), refusedUs: true }
      }
      if (decoded.type !== 'answer') throw new MalformedClaimFrameError(`voter ${peer} sent a ${decoded.type} frame`)
      const answer = decoded.answer
      if (!answerMatches(req, answer)) {
        this.counters.staleAnswers++
        throw new StaleClaimAnswerError(`voter ${peer} answered another request (${answer.kind} of ${answer.claimId} at ballot ${answer.ballot.counter})`)
      }
      try {
        await this.init.gate.check(decoded.chain, peer, cell, { signal })
      } catch (err) {
        if (isRefusal(err)) this.counters.refusedVoters++
        throw err
      }
      return { kind: 'answer', answer }
    } catch (err) {
      if (err instanceof MalformedClaimFrameError) this.counters.malformedAnswers++
      if (!signal.aborted) log('voter %s of %s: %s', peer, req.claimId, (err as Error).name)
      return { kind: 'error', error: err }
    }
  }
}

function heardKey (claimId: string, peer: string): string {
  return `${claimId}\n${peer}`
}

/** Does `answer` show the voter's register at work (not a voter that cannot or will not hold the claim)? */
function answerShowsRegister (answer: ClaimAnswer): boolean {
  return answer.kind !== 'reject' || (answer.reason !== 'capacity' && answer.reason !== 'not-voter')
}

/** Which ballot counter a round of `claimId` in generation `gen` uses. */
function counterKey (claimId: string, gen: number): string {
  return gen === 0 ? claimId : `${claimId}#${gen}`
}

/** A voter in a newer generation than `place` said where the claim is now (one such voter is enough: nobody asks there before the move was chosen). */
function movedPlace (tally: Tally, place: ClaimPlace): ClaimPlace | undefined {
  let best: ClaimPlace | undefined
  for (const { answer } of tally.rejects) {
    if (answer.reason !== 'moved' || answer.gen === undefined || answer.voters === undefined || answer.origin === undefined) continue
    if (answer.gen > place.gen && (best === undefined || answer.gen > best.gen)) best = { gen: answer.gen, voters: answer.voters, origin: answer.origin }
  }
  return best
}

/** Is `answer` the answer to `req`: same claim, ballot and nonce, a kind of the same phase? */
export function answerMatches (req: ClaimRequest, answer: ClaimAnswer): boolean {
  if (answer.claimId !== req.claimId || answer.nonce !== req.nonce || !sameBallot(answer.ballot, req.ballot)) return false
  if (req.kind === 'prepare') return answer.kind === 'promise' || (answer.kind === 'reject' && answer.phase === 'prepare')
  return answer.kind === 'accepted' || (answer.kind === 'reject' && answer.phase === 'accept')
}
