// One node's voter side of every claim it votes on: answers prepare and accept requests of
// `/cell/claim/1`. Every change of a slot (a promise or an accepted value) is saved through the
// store BEFORE the answer leaves: an acceptor that forgot a promise after a restart could vote for
// two different values of one ballot round, and then two owners of one epoch become possible.
import { logger } from '@libp2p/logger'
import { refusalCode, isRefusal } from '../fleet/peer-grant.ts'
import { MalformedClaimFrameError } from './errors.ts'
import { decodeClaimFrame, encodeClaimAnswer, encodeClaimRefusal, type ClaimAnswer, type ClaimRequest, type RejectReason } from './codec.ts'
import type { ClaimGrantGate } from './grant-gate.ts'
import type { MonotonicClock } from './clocks.ts'
import {
  acceptAccept, acceptPrepare, cellOfClaim, emptySlot, placeOfSlot, restoreSlot, DEFAULT_MARGIN,
  type Ballot, type ClaimOrigin, type ClaimPlace, type ClaimSlot, type MarginPolicy
} from './register.ts'

const log = logger('cell:claims:acceptor')

/** What an acceptor persists: every slot, by claim id. */
export interface AcceptorState { claims: Record<string, ClaimSlot> }

/** Durable storage of an acceptor's state. `save` resolves only once the state is durable. */
export interface AcceptorStore {
  load: () => Promise<AcceptorState | null>
  save: (state: AcceptorState) => Promise<void>
}

/** For tests and the simulator: keeps a deep copy, so a "restart" sees exactly what was saved. */
export class MemoryAcceptorStore implements AcceptorStore {
  private saved: string | null = null
  saves = 0

  async load (): Promise<AcceptorState | null> {
    return this.saved == null ? null : JSON.parse(this.saved) as AcceptorState
  }

  async save (state: AcceptorState): Promise<void> {
    this.saved = JSON.stringify(state)
    this.saves++
  }
}

export interface ClaimAcceptorInit {
  /** This node's peer id (it votes only on claims that name it). */
  selfId: string
  store: AcceptorStore
  /** `voterClock()` in hosts (see clocks.ts). */
  clock: MonotonicClock
  gate: ClaimGrantGate
  /** Most claims this acceptor votes on; a new one past it is refused (default 4096). */
  maxClaims?: number
  margin?: MarginPolicy
}

export interface ClaimAcceptorStats {
  prepares: number
  accepts: number
  /** Requests answered with a reject (ballot, lease held, voters, owner, capacity, not a voter). */
  rejected: number
  /** Requests from peers without a host grant for the claim's cell. */
  refused: number
  malformed: number
}

export class ClaimAcceptor {
  private readonly init: ClaimAcceptorInit
  private readonly maxClaims: number
  private readonly margin: MarginPolicy
  private claims = new Map<string, ClaimSlot>()
  private started: Promise<void> | undefined
  private tail: Promise<unknown> = Promise.resolve()
  private readonly counters: ClaimAcceptorStats = { prepares: 0, accepts: 0, rejected: 0, refused: 0, malformed: 0 }

  constructor (init: ClaimAcceptorInit) {
    this.init = init
    this.maxClaims = Math.max(1, init.maxClaims ?? 4096)
    this.margin = init.margin ?? DEFAULT_MARGIN
  }

  /** Loads the persisted state (idempotent); `handle` waits for it. */
  async start (): Promise<void> {
    this.started ??= (async () => {
      const state = await this.init.store.load()
      const now = this.init.clock.nowMs()
      const claims = new Map<string, ClaimSlot>()
      for (const [id, slot] of Object.entries(state?.claims ?? {})) claims.set(id, restoreSlot(slot, now))
      this.claims = claims
    })()
    await this.started
  }

  stats (): ClaimAcceptorStats {
    return { ...this.counters }
  }

  /** The slot this acceptor holds for `claimId` (a copy), for inspection. */
  slot (claimId: string): ClaimSlot | undefined {
    const s = this.claims.get(claimId)
    return s == null ? undefined : structuredClone(s)
  }

  /** Where this voter last saw `claimId`'s register: its generation, voters and the move that made it. */
  place (claimId: string): ClaimPlace | undefined {
    const s = this.claims.get(claimId)
    return s == null ? undefined : structuredClone(placeOfSlot(s))
  }

  /**
   * Answers one request frame from `fromPeerId` (the peer the transport authenticated). Throws
   * MalformedClaimFrameError for a frame that is not a request (the caller closes the stream);
   * a peer without a host grant gets a refusal frame, counted.
   */
  async handle (fromPeerId: string, frame: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    await this.start()
    let request: ClaimRequest
    let chain: Uint8Array
    try {
      const decoded = decodeClaimFrame(frame)
      if (decoded.type !== 'request') throw new MalformedClaimFrameError(`a voter got a ${decoded.type} frame`)
      request = decoded.request
      chain = decoded.chain
    } catch (err) {
      if (err instanceof MalformedClaimFrameError) {
        this.counters.malformed++
        log('malformed claim frame from %s: %s', fromPeerId, err.message)
      }
      throw err
    }
    const cell = cellOfClaim(request.claimId)
    try {
      await this.init.gate.check(chain, fromPeerId, cell, options)
    } catch (err) {
      if (!isRefusal(err)) throw err
      this.counters.refused++
      log('refused %s on %s: %s', fromPeerId, request.claimId, (err as Error).name)
      return encodeClaimRefusal(refusalCode(err))
    }
    options.signal?.throwIfAborted()
    const answer = await this.serialized(async () => await this.decide(fromPeerId, request))
    if (answer.kind === 'reject') this.counters.rejected++
    return encodeClaimAnswer(answer, this.init.gate.chain(cell))
  }

  /** One request at a time, so that a slot's read, change and save are not interleaved. */
  private async serialized<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn)
    this.tail = run.catch(() => {})
    return await run
  }

  private async decide (from: string, req: ClaimRequest): Promise<ClaimAnswer> {
    const base = { claimId: req.claimId, ballot: req.ballot, nonce: req.nonce }
    const phase = req.kind
    const reject = (reason: RejectReason, extra: Partial<{ promised: Ballot, voters: string[], holder: string, epoch: number, waitMs: number, gen: number, origin: ClaimOrigin }> = {}): ClaimAnswer => {
      const out: ClaimAnswer = { kind: 'reject', ...base, phase, reason, ...extra }
      if (out.promised != null && out.promised.counter < 1) delete out.promised
      return out
    }
    if (!req.voters.includes(this.init.selfId)) return reject('not-voter')
    let slot = this.claims.get(req.claimId)
    if (slot == null) {
      if (this.claims.size >= this.maxClaims) {
        log('refusing new claim %s: %d claims held', req.claimId, this.claims.size)
        return reject('capacity')
      }
      slot = emptySlot()
    }
    const now = this.init.clock.nowMs()
    const place: ClaimPlace = { gen: req.gen ?? 0, voters: req.voters, ...(req.origin !== undefined ? { origin: req.origin } : {}) }
    // The claim moved on from the request's generation: where to, if this voter knows.
    const moved = (at: ClaimPlace | undefined): ClaimAnswer => reject('moved', at === undefined ? {} : { gen: at.gen, voters: at.voters, ...(at.origin !== undefined ? { origin: at.origin } : {}) })
    if (req.kind === 'prepare') {
      this.counters.prepares++
      const out = acceptPrepare(slot, req.ballot, req.voters, now, this.margin, place)
      if (!out.ok) return out.reason === 'ballot' ? reject('ballot', { promised: out.promised }) : out.reason === 'moved' ? moved(out.place) : reject('voters', { voters: out.voters })
      await this.commit(req.claimId, out.slot)
      return { kind: 'promise', ...base, accepted: out.accepted, waitMs: Math.ceil(out.waitMs) }
    }
    this.counters.accepts++
    const out = acceptAccept(slot, req.ballot, req.value, from, now, this.margin, place)
    if (!out.ok) {
      if (out.reason === 'ballot') return reject('ballot', { promised: out.promised })
      if (out.reason === 'voters') return reject('voters', { voters: out.voters })
      if (out.reason === 'moved') return moved(out.place)
      if (out.reason === 'lease-held') return reject('lease-held', { holder: out.holder, epoch: out.epoch, waitMs: Math.ceil(out.waitMs) })
      return reject('owner')
    }
    if (out.slot !== slot) await this.commit(req.claimId, out.slot)
    return { kind: 'accepted', ...base }
  }

  /** Saves the state with `slot` in it, and only then makes it current (a failed save changes nothing). */
  private async commit (claimId: string, slot: ClaimSlot): Promise<void> {
    const next = new Map(this.claims)
    next.set(claimId, slot)
    await this.init.store.save({ claims: Object.fromEntries(next) })
    this.claims = next
  }
}
