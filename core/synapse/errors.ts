import { CellError, type RetryRule } from '../errors.ts'

/** The handshake did not complete within its deadline (no call was sent yet). */
export class HandshakeTimeoutError extends CellError {
  static override readonly errorName = 'HandshakeTimeoutError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** The remote sent something the synapse protocol does not allow at that point (perhaps after a call ran). */
export class SynapseProtocolError extends CellError {
  static override readonly errorName = 'SynapseProtocolError'
  static override readonly retry: RetryRule = 'idempotent'
}
/** A call's deadline passed before its result arrived. */
export class DeadlineExceededError extends CellError { static override readonly errorName = 'DeadlineExceededError' }
/** The caller aborted the call (its AbortSignal fired without an Error reason). */
export class CallCancelledError extends CellError { static override readonly errorName = 'CallCancelledError' }
/** The channel (its libp2p stream or connection) ended; pending calls fail with this (they may have run). */
export class ChannelClosedError extends CellError {
  static override readonly errorName = 'ChannelClosedError'
  static override readonly retry: RetryRule = 'idempotent'
}
/**
 * The caller's certificate chain, checked at the channel's handshake, has expired since: the server
 * closed the channel and refuses calls on it. Nothing ran; open a new channel with a current chain.
 */
export class ChannelExpiredError extends CellError {
  static override readonly errorName = 'ChannelExpiredError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/**
 * The server is stopping (a planned stop) and never read this call: its GOAWAY counted the calls it
 * read, and this one was sent after them, or after the GOAWAY arrived. Nothing ran; call elsewhere.
 */
export class ServerGoingAwayError extends CellError {
  static override readonly errorName = 'ServerGoingAwayError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** More calls in flight on a channel than its limit allows. */
export class TooManyInflightError extends CellError {
  static override readonly errorName = 'TooManyInflightError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** The outgoing queue is full; retry after `channel.onDrain()`. */
export class BackpressureError extends CellError {
  static override readonly errorName = 'BackpressureError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** More channels to or from one peer than the limit allows. */
export class TooManyChannelsError extends CellError {
  static override readonly errorName = 'TooManyChannelsError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** More handshakes pending (stream opened, HELLO not yet answered) from one peer, or in total, than allowed. */
export class TooManyHandshakesError extends CellError {
  static override readonly errorName = 'TooManyHandshakesError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** The server has no handler for the requested method (thrown by handler ports). */
export class UnknownMethodError extends CellError { static override readonly errorName = 'UnknownMethodError' }
/** The synapse service is not started, or is stopping (a server refuses handshakes then; calls in flight may have run). */
export class SynapseNotStartedError extends CellError {
  static override readonly errorName = 'SynapseNotStartedError'
  static override readonly retry: RetryRule = 'idempotent'
}

/**
 * An error whose name the local registry does not know; `remoteName` is what the peer sent. Never
 * retried: nothing says what it means.
 */
export class RemoteError extends CellError {
  static override readonly errorName = 'RemoteError'
  readonly remoteName: string

  constructor (remoteName: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.remoteName = remoteName
  }
}
