import { CellError } from '../../core/errors.ts'

/** The replica exited, or never sent READY, before its startup deadline. Message carries the stderr tail. */
export class CapsidStartError extends CellError {
  readonly stderrTail: string[]
  constructor (message: string, stderrTail: string[] = [], options?: { cause?: unknown }) {
    super(stderrTail.length > 0 ? `${message}\n--- replica stderr ---\n${stderrTail.join('\n')}` : message, options)
    this.stderrTail = stderrTail
  }
}

export interface ExitInfo {
  code: number | null
  signal: string | null
  stderrTail: string[]
  /** Which capsid limit ended the replica, when the kernel enforced one (e.g. the memory cgroup's OOM kill). */
  limit?: 'memory'
  /** Why, in words, when known. */
  reason?: string
}

/** The replica died without being asked to stop; pending calls fail with this. */
export class ReplicaCrashedError extends CellError {
  readonly exit?: ExitInfo
  constructor (message: string, exit?: ExitInfo, options?: { cause?: unknown }) {
    super(message, options)
    this.exit = exit
  }
}

/** The cell has no handler of that name (raised by the replica, re-typed on the host). */
export class UnknownMethodError extends CellError {}

/** Too many calls in flight on this capsid. */
export class CapsidBusyError extends CellError {}

/**
 * A strict (bubblewrap) sandbox was asked for (`--sandbox bwrap` or `auto`) but bubblewrap or
 * prlimit is not installed or does not work here. Never retried: the operator must install
 * bubblewrap or choose `--sandbox process` explicitly.
 */
export class SandboxUnavailableError extends CellError {}

/** The release requires a stricter sandbox (`[cell.sandbox] require`) than this node provides. */
export class SandboxTooWeakError extends CellError {}

/** The capsid was stopped (or stopped while the call was pending). */
export class CapsidStoppedError extends CellError {}

/** The capsid is draining: in-flight calls finish, new ones are refused. */
export class CapsidDrainingError extends CellError {}

/** The call's deadline passed before the replica answered. Same `name` as the synapse error. */
export class DeadlineExceededError extends CellError {}

/** A frame (payload + header) exceeds the capsid protocol limit. */
export class FrameTooLargeError extends CellError {}

/** The replica broke the framing protocol; the capsid kills it. */
export class CapsidProtocolError extends CellError {}

/**
 * A handler threw. `name` is the handler error's own name (e.g. `InvalidAmountError`) so callers
 * can match on it across the wire; `instanceof RemoteHandlerError` still holds on the host.
 */
export class RemoteHandlerError extends CellError {
  readonly remoteName: string
  readonly code?: string
  constructor (remoteName: string, message: string, code?: string) {
    super(message)
    this.remoteName = remoteName
    this.name = remoteName
    if (code !== undefined) this.code = code
  }
}
