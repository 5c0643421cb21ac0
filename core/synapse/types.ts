import type { CallerInfo } from '../cell.ts'

/** Who the other end is, as the identity port decided. Same shape as a cell's `ctx.caller`. */
export type Principal = CallerInfo

/** What a handshake presents: the Noise-authenticated peer id, the cell and opaque cert-chain bytes. */
export interface HandshakeRequest {
  remotePeerId: string
  cell: string
  credentials: Uint8Array
}

/**
 * Server port: checks a client's credentials for a cell. Throws a named error (e.g.
 * UnknownAuthorityError) to refuse; the name and message travel to the client in REJECT.
 */
export type AuthenticatePort = (req: HandshakeRequest, options: { signal: AbortSignal }) => Promise<Principal>

/** Client port: checks the server's credentials; throw to refuse the channel. */
export type AuthenticateServerPort = (req: HandshakeRequest, options: { signal: AbortSignal }) => Promise<Principal | undefined>

/** The credentials (cert chain bytes) this node presents for a cell, as client or server. */
export type CredentialsPort = (cell: string) => Uint8Array

/** Context of a one-way message. `payload` is a view into the received batch; copy it to keep it long. */
export interface MessageContext {
  cell: string
  method: string
  payload: Uint8Array
  principal: Principal
  remotePeer: string
  traceparent?: string
  /** The release (artifact digest) the caller chose when it opened the channel (HELLO), if it named one. */
  release?: string
}

/** Context of a call or stream. `signal` aborts on CANCEL, deadline, or channel close. */
export interface CallContext extends MessageContext {
  /** Absolute deadline, ms on the server's clock; Infinity for streams opened without one. */
  deadlineMs: number
  readonly signal: AbortSignal
}

/**
 * Server port the node host implements (forwarding into a capsid); tests use in-process handlers.
 * Errors thrown travel to the caller as ERROR { name, message }.
 */
export interface SynapseHandler {
  call(ctx: CallContext): Promise<Uint8Array>
  message(ctx: MessageContext): void
  stream(ctx: CallContext): AsyncIterable<Uint8Array>
  /**
   * Optional: told once, synchronously, when the session answers a call it handed to `call`:
   * `result` is the payload sent (undefined when the call failed), `error` what the caller was
   * told instead (the handler's error, DeadlineExceededError, CallCancelledError on CANCEL,
   * ChannelClosedError when the channel ended first); `elapsedMs` runs from the call's arrival
   * on the service's monotonic clock. A host meters calls here without adding a promise step to
   * each one; it must not throw (a throw is logged and otherwise ignored).
   */
  settled?(ctx: CallContext, result: Uint8Array | undefined, error: unknown, elapsedMs: number): void
}

/**
 * Told once that a call was aborted (the caller's CANCEL, its deadline, the channel closing): a
 * function, or an object whose `callAborted` runs, so that an object a host already makes per call
 * can listen without a closure of its own.
 */
export type CallAbortListener = ((reason: Error) => void) | { callAborted(reason: Error): void }

/**
 * A call's one-listener abort hook, which the session's call contexts have (ServerCall): what
 * `ctx.signal` tells, without an AbortController or an EventTarget per call. Not part of
 * CallContext: a wrapper's context would drop a listener set on it.
 */
export interface CallAbortSlot {
  /** Whether the call was aborted already (a listener set now is never called). */
  readonly aborted: boolean
  /** Why, once aborted. */
  readonly abortReason: Error | undefined
  /** The one listener, set by the handler (replacing any other); cleared when it is called. */
  onAbort: CallAbortListener | undefined
}

export interface SynapseCallOptions {
  signal?: AbortSignal
  /** Relative deadline; calls default to the service's defaultTimeoutMs, streams to none. */
  timeoutMs?: number
  traceparent?: string
}
