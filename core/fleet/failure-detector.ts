// Failure detector of per-cell dissemination (docs/biology.md, "Scale"): watches the connections
// this node keeps to other full nodes. When the last connection to a watched peer closes, the peer
// becomes a suspect: one redial is tried at once (with its own deadline) while a reconnection from
// either side is awaited. A suspect still unreachable `suspectMs` after it was lost is reported
// down once for the seq the view holds of it (the gossip layer signs and publishes the down record;
// a node that is alive refutes it with a higher seq, and a new loss at that seq is reported again).
//
// It judges only peers it lost: a peer it never connected to is not its business. Runtime-agnostic:
// every effect goes through the injected ports (clock, peer events, isConnected, dial, watched,
// report), so a libp2p node, a fake in a unit test or a simulator can drive it.
import { CellError } from '../errors.ts'
import type { RetryRule } from '../errors.ts'
import type { Clock } from '../ports.ts'

/** A `FailureDetectorInit` field is out of range. */
export class FailureDetectorConfigError extends CellError {
  static override readonly errorName = 'FailureDetectorConfigError'
  static override readonly retry: RetryRule = 'never'
}

export const FAILURE_DETECTOR_DEFAULTS = {
  /** How long a lost peer may stay unreachable before it is reported down. */
  suspectMs: 3_000,
  /** Deadline of the one redial (at most suspectMs). */
  redialTimeoutMs: 2_000,
  /** Suspects tracked at once; the oldest is dropped (and counted) to make room. */
  maxSuspects: 1024,
  /** Peers whose last reported seq is remembered (so each seq is reported once); oldest forgotten first. */
  maxReported: 4096
} as const

/** A peer id as libp2p's events carry it (PeerId), or anything else whose string form is the id. */
export interface PeerIdLike { toString: () => string }

/**
 * The connection events the detector listens to: libp2p's `peer:connect` (first connection to a
 * peer opened) and `peer:disconnect` (last connection to a peer closed). A js-libp2p 3.x node fits.
 */
export interface PeerConnectionEvents {
  addEventListener: (type: 'peer:connect' | 'peer:disconnect', listener: (evt: CustomEvent<PeerIdLike>) => void) => void
  removeEventListener: (type: 'peer:connect' | 'peer:disconnect', listener: (evt: CustomEvent<PeerIdLike>) => void) => void
}

export interface FailureDetectorInit {
  clock: Clock
  events: PeerConnectionEvents
  /** Whether this node has an open connection to the peer now. */
  isConnected: (peerId: string) => boolean
  /** Dials the peer by id (its known addresses); resolves once connected, rejects otherwise. */
  dial: (peerId: string, options: { signal: AbortSignal }) => Promise<unknown>
  /** The peer's newest seq if the view holds it as a live full node; undefined: not watched. */
  watched: (peerId: string) => { seq: number } | undefined
  /** Reports the subject down at the seq given (FleetGossip.reportDown). Called once per subject seq. */
  report: (subject: string, subjectSeq: number) => Promise<void>
  /** This node's own id: never watched (optional). */
  selfId?: string
  suspectMs?: number
  redialTimeoutMs?: number
  maxSuspects?: number
  maxReported?: number
}

export interface FailureDetectorStats {
  /** Watched peers whose last connection closed. */
  suspected: number
  /** Down reports handed to `report`. */
  reported: number
  /** Suspects that were connected again before their deadline (by themselves or by the redial). */
  recovered: number
  /** Redials tried. */
  redials: number
  /** Redials that failed or hit their deadline. */
  dialFailures: number
  /** `report` calls that rejected. */
  reportErrors: number
  /** Suspects dropped because maxSuspects were tracked already. */
  dropped: number
  /** Suspects tracked now. */
  suspects: number
}

interface Suspect {
  readonly peerId: string
  readonly sinceMs: number
  deadline: unknown
  redial?: { abort: AbortController, timer: unknown }
}

function positive (name: string, value: number, integer: boolean): number {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new FailureDetectorConfigError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(value)}`)
  }
  return value
}

export class FailureDetector {
  private readonly init: FailureDetectorInit
  readonly suspectMs: number
  readonly redialTimeoutMs: number
  private readonly maxSuspects: number
  private readonly maxReported: number
  private readonly suspectsById = new Map<string, Suspect>()
  /** Subject → the seq it was last reported down at (insertion order = age). */
  private readonly reportedSeq = new Map<string, number>()
  private running = false
  private readonly counts = { suspected: 0, reported: 0, recovered: 0, redials: 0, dialFailures: 0, reportErrors: 0, dropped: 0 }
  private readonly onConnect = (evt: CustomEvent<PeerIdLike>): void => { this.connected(String(evt.detail)) }
  private readonly onDisconnect = (evt: CustomEvent<PeerIdLike>): void => { this.lost(String(evt.detail)) }

  constructor (init: FailureDetectorInit) {
    for (const port of ['isConnected', 'dial', 'watched', 'report'] as const) {
      if (typeof init[port] !== 'function') throw new FailureDetectorConfigError(`${port} must be a function`)
    }
    if (init.clock == null || init.events == null) throw new FailureDetectorConfigError('clock and events are required')
    this.init = init
    this.suspectMs = positive('suspectMs', init.suspectMs ?? FAILURE_DETECTOR_DEFAULTS.suspectMs, false)
    this.redialTimeoutMs = positive('redialTimeoutMs', init.redialTimeoutMs ?? Math.min(FAILURE_DETECTOR_DEFAULTS.redialTimeoutMs, this.suspectMs), false)
    if (this.redialTimeoutMs > this.suspectMs) {
      throw new FailureDetectorConfigError(`redialTimeoutMs (${this.redialTimeoutMs}) must not exceed suspectMs (${this.suspectMs})`)
    }
    this.maxSuspects = positive('maxSuspects', init.maxSuspects ?? FAILURE_DETECTOR_DEFAULTS.maxSuspects, true)
    this.maxReported = positive('maxReported', init.maxReported ?? FAILURE_DETECTOR_DEFAULTS.maxReported, true)
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.init.events.addEventListener('peer:connect', this.onConnect)
    this.init.events.addEventListener('peer:disconnect', this.onDisconnect)
  }

  /** Stops listening, clears every timer and aborts every redial; nothing is reported afterwards. */
  stop (): void {
    if (!this.running) return
    this.running = false
    this.init.events.removeEventListener('peer:connect', this.onConnect)
    this.init.events.removeEventListener('peer:disconnect', this.onDisconnect)
    for (const s of this.suspectsById.values()) this.forget(s)
    this.suspectsById.clear()
    this.reportedSeq.clear()
  }

  stats (): FailureDetectorStats {
    return { ...this.counts, suspects: this.suspectsById.size }
  }

  /** Peers suspected now (lost, not yet reconnected nor reported), oldest first. */
  suspects (): string[] {
    return [...this.suspectsById.keys()]
  }

  /** Called on `peer:disconnect`; public so a host without such events can feed losses itself. */
  lost (peerId: string): void {
    if (!this.running || peerId === this.init.selfId || this.suspectsById.has(peerId)) return
    const watched = this.init.watched(peerId)
    if (watched === undefined || this.init.isConnected(peerId)) return
    if (this.reportedSeq.get(peerId) === watched.seq) return
    if (this.suspectsById.size >= this.maxSuspects) {
      const oldest = this.suspectsById.values().next().value
      if (oldest !== undefined) {
        this.forget(oldest)
        this.suspectsById.delete(oldest.peerId)
        this.counts.dropped++
      }
    }
    const suspect: Suspect = { peerId, sinceMs: this.init.clock.now(), deadline: undefined }
    suspect.deadline = this.init.clock.setTimeout(() => { this.expire(suspect) }, this.suspectMs)
    this.suspectsById.set(peerId, suspect)
    this.counts.suspected++
    this.redial(suspect)
  }

  /** Called on `peer:connect`. */
  connected (peerId: string): void {
    const suspect = this.suspectsById.get(peerId)
    if (suspect !== undefined) this.recover(suspect)
  }

  private redial (suspect: Suspect): void {
    const abort = new AbortController()
    const timer = this.init.clock.setTimeout(() => {
      if (suspect.redial?.abort !== abort) return
      suspect.redial = undefined
      this.counts.dialFailures++
      abort.abort()
    }, this.redialTimeoutMs)
    suspect.redial = { abort, timer }
    this.counts.redials++
    let dialing: Promise<unknown>
    try {
      dialing = this.init.dial(suspect.peerId, { signal: abort.signal })
    } catch (err) {
      dialing = Promise.reject(err)
    }
    dialing.then(() => {
      this.redialEnded(suspect, abort)
      if (this.suspectsById.get(suspect.peerId) === suspect && this.init.isConnected(suspect.peerId)) this.recover(suspect)
    }, () => {
      if (this.redialEnded(suspect, abort)) this.counts.dialFailures++
    })
  }

  /** Clears the redial's deadline; true if this redial was still the suspect's (not cancelled). */
  private redialEnded (suspect: Suspect, abort: AbortController): boolean {
    if (suspect.redial?.abort !== abort) return false
    this.init.clock.clearTimeout(suspect.redial.timer)
    suspect.redial = undefined
    return true
  }

  private recover (suspect: Suspect): void {
    this.forget(suspect)
    this.suspectsById.delete(suspect.peerId)
    this.counts.recovered++
  }

  private expire (suspect: Suspect): void {
    if (!this.running || this.suspectsById.get(suspect.peerId) !== suspect) return
    suspect.deadline = undefined
    if (this.init.isConnected(suspect.peerId)) { this.recover(suspect); return }
    this.forget(suspect)
    this.suspectsById.delete(suspect.peerId)
    // The seq the view holds now: the newest this node saw of the subject.
    const watched = this.init.watched(suspect.peerId)
    if (watched === undefined || this.reportedSeq.get(suspect.peerId) === watched.seq) return
    this.reportedSeq.delete(suspect.peerId)
    this.reportedSeq.set(suspect.peerId, watched.seq)
    while (this.reportedSeq.size > this.maxReported) {
      const oldest = this.reportedSeq.keys().next().value
      if (oldest === undefined) break
      this.reportedSeq.delete(oldest)
    }
    this.counts.reported++
    let reporting: Promise<void>
    try {
      reporting = this.init.report(suspect.peerId, watched.seq)
    } catch (err) {
      reporting = Promise.reject(err)
    }
    reporting.catch(() => { this.counts.reportErrors++ })
  }

  /** Cancels the suspect's deadline and its redial (if any), without counting. */
  private forget (suspect: Suspect): void {
    if (suspect.deadline !== undefined) this.init.clock.clearTimeout(suspect.deadline)
    suspect.deadline = undefined
    if (suspect.redial !== undefined) {
      this.init.clock.clearTimeout(suspect.redial.timer)
      suspect.redial.abort.abort()
      suspect.redial = undefined
    }
  }
}
