import { CellError } from '../errors.ts'

/** The handshake did not complete within its deadline. */
export class HandshakeTimeoutError extends CellError {}
/** The remote sent something the synapse protocol does not allow at that point. */
export class SynapseProtocolError extends CellError {}
/** A call's deadline passed before its result arrived. */
export class DeadlineExceededError extends CellError {}
/** The caller aborted the call (its AbortSignal fired without an Error reason). */
export class CallCancelledError extends CellError {}
/** The channel (its libp2p stream or connection) ended; pending calls fail with this. */
export class ChannelClosedError extends CellError {}
/** More calls in flight on a channel than its limit allows. */
export class TooManyInflightError extends CellError {}
/** The outgoing queue is full; retry after `channel.onDrain()`. */
export class BackpressureError extends CellError {}
/** More channels to or from one peer than the limit allows. */
export class TooManyChannelsError extends CellError {}
/** More handshakes pending (stream opened, HELLO not yet answered) from one peer, or in total, than allowed. */
export class TooManyHandshakesError extends CellError {}
/** The server has no handler for the requested method (thrown by handler ports). */
export class UnknownMethodError extends CellError {}
/** The synapse service is not started. */
export class SynapseNotStartedError extends CellError {}

/** An error whose name the local registry does not know; `remoteName` is what the peer sent. */
export class RemoteError extends CellError {
  readonly remoteName: string

  constructor (remoteName: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.remoteName = remoteName
  }
}
