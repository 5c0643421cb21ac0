import { CellError, type RetryRule } from '../../core/errors.ts'

// Errors a caller must recognise to decide on a retry (busy, draining, stopped, crashed) live in
// core/mesh/errors.ts so light peers register them too; the deadline, method and frame errors are
// the synapse's and wire's own classes (one class per name in the project). Re-exported here so the
// capsid's modules import them from one place.
export { CapsidBusyError, CapsidDrainingError, CapsidStoppedError, ReplicaCrashedError, type ExitInfo } from '../../core/mesh/errors.ts'
export { DeadlineExceededError, UnknownMethodError } from '../../core/synapse/errors.ts'
export { FrameTooLargeError } from '../../core/wire/errors.ts'

/** The replica exited, or never sent READY, before its startup deadline. Message carries the stderr tail. */
export class CapsidStartError extends CellError {
  static override readonly errorName = 'CapsidStartError'
  readonly stderrTail: string[]
  constructor (message: string, stderrTail: string[] = [], options?: { cause?: unknown }) {
    super(stderrTail.length > 0 ? `${message}\n--- replica stderr ---\n${stderrTail.join('\n')}` : message, options)
    this.stderrTail = stderrTail
  }
}

/**
 * A strict (bubblewrap) sandbox was asked for (`--sandbox bwrap` or `auto`) but bubblewrap or
 * prlimit is not installed or does not work here. Never retried: the operator must install
 * bubblewrap or choose `--sandbox process` explicitly.
 */
export class SandboxUnavailableError extends CellError { static override readonly errorName = 'SandboxUnavailableError' }

/** The release requires a stricter sandbox (`[cell.sandbox] require`) than this node provides. */
export class SandboxTooWeakError extends CellError { static override readonly errorName = 'SandboxTooWeakError' }

/** The replica broke the framing protocol; the capsid kills it. */
export class CapsidProtocolError extends CellError { static override readonly errorName = 'CapsidProtocolError' }

/**
 * A handler threw. `name` is the handler error's own name (e.g. `InvalidAmountError`) so callers
 * can match on it across the wire; `instanceof RemoteHandlerError` still holds on the host.
 */
export class RemoteHandlerError extends CellError {
  static override readonly errorName = 'RemoteHandlerError'
  readonly remoteName: string
  readonly code?: string
  constructor (remoteName: string, message: string, code?: string) {
    super(message)
    this.remoteName = remoteName
    this.name = remoteName
    if (code !== undefined) this.code = code
  }
}

/**
 * This node's lease on the replica's claim ran out (it could not renew with the claim's voters), so
 * another node may already own the claim at a higher epoch: the call is refused, and an answer the
 * replica produced after the lease ended is never sent. What this fenced replica wrote is never
 * restored, so nothing that counts ran: the caller retries on the claim's new owner.
 */
export class FencedReplicaError extends CellError {
  static override readonly errorName = 'FencedReplicaError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
