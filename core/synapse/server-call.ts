import type { CallAbortListener, CallAbortSlot, CallContext, Principal } from './types.ts'

// Per-call context handed to the handler port. The AbortController is created only when the
// handler reads `signal`: most handlers never do, and at tens of thousands of calls per second
// an eager controller per call is a measurable cost. A handler that must learn of an abort without
// one sets `onAbort` (one listener, no EventTarget).
export class ServerCall implements CallContext, CallAbortSlot {
  readonly cell: string
  readonly method: string
  readonly payload: Uint8Array
  readonly principal: Principal
  readonly remotePeer: string
  readonly deadlineMs: number
  readonly traceparent?: string
  readonly release: string | undefined
  /** Deadline wheel slot, -1 when the call has no deadline. */
  slot = -1
  /** Monotonic ms when a call arrived, for the handler's `settled`; -1 for streams (and calls nobody meters). */
  startedMs = -1
  /** Whether this is a server stream (STREAM_OPEN), not a call. */
  stream = false
  /** Stream credit (streams only): items the client will still accept. */
  credit = 0
  creditWaiter: (() => void) | undefined
  /** The one abort listener (CallAbortSlot): called once, on CANCEL, the deadline or the channel closing. */
  onAbort: CallAbortListener | undefined = undefined
  private controller: AbortController | undefined
  private reason: Error | undefined

  constructor (cell: string, method: string, payload: Uint8Array, principal: Principal, remotePeer: string, deadlineMs: number, traceparent: string | undefined, release: string | undefined) {
    this.cell = cell
    this.release = release
    this.method = method
    this.payload = payload
    this.principal = principal
    this.remotePeer = remotePeer
    this.deadlineMs = deadlineMs
    if (traceparent !== undefined) this.traceparent = traceparent
  }

  get signal (): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.reason !== undefined) this.controller.abort(this.reason)
    }
    return this.controller.signal
  }

  get aborted (): boolean {
    return this.reason !== undefined
  }

  get abortReason (): Error | undefined {
    return this.reason
  }

  /**
   * Aborts the call once: `onAbort`, the signal (if one was made) and a stream's credit waiter.
   * Returns what `onAbort` threw, for the session to log (the other ends still run).
   */
  abort (reason: Error): unknown {
    if (this.reason !== undefined) return undefined
    this.reason = reason
    const listener = this.onAbort
    this.onAbort = undefined
    let thrown: unknown
    if (listener !== undefined) {
      try {
        if (typeof listener === 'function') listener(reason)
        else listener.callAborted(reason)
      } catch (err) {
        thrown = err ?? new Error('onAbort threw nothing')
      }
    }
    this.controller?.abort(reason)
    const w = this.creditWaiter
    this.creditWaiter = undefined
    w?.()
    return thrown
  }

  addCredit (count: number): void {
    this.credit += count
    const w = this.creditWaiter
    this.creditWaiter = undefined
    w?.()
  }
}
