import { CellError, type RetryRule } from '../errors.ts'

/** No ready replica of the cell is known to this peer (or none is left after failures). */
export class NoReplicaError extends CellError {
  static override readonly errorName = 'NoReplicaError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** The cell has no release from an authority this peer trusts. */
export class UnknownCellError extends CellError { static override readonly errorName = 'UnknownCellError' }
/** A call payload or result is not JSON the typed client can carry. */
export class PayloadEncodingError extends CellError { static override readonly errorName = 'PayloadEncodingError' }
/** The mesh was used before start() or after stop(). */
export class MeshNotStartedError extends CellError { static override readonly errorName = 'MeshNotStartedError' }
/**
 * Two authorities this peer trusts both signed releases for one cell name. Names are bound to their
 * authority, so neither may stand in for the other: the operator must stop trusting one of them.
 */
export class CellNameConflictError extends CellError { static override readonly errorName = 'CellNameConflictError' }

/**
 * A stateful replica answered from a claim epoch lower than one this caller has since seen (the
 * claim moved while the call was out): what that replica wrote may not be in the new owner's copy,
 * so the answer is not passed on. Retried only for idempotent methods.
 */
export class StaleEpochAnswerError extends CellError {
  static override readonly errorName = 'StaleEpochAnswerError'
  static override readonly retry: RetryRule = 'idempotent'
}

// What a full node's capsid reports to callers about a replica. They are here, not in node-host,
// because every caller (light peers included) rebuilds them from the wire and reads their retry rule.

/** Too many calls in flight on this replica's capsid; the call was refused before it ran. */
export class CapsidBusyError extends CellError {
  static override readonly errorName = 'CapsidBusyError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The capsid is draining: in-flight calls finish, new ones are refused before they run. */
export class CapsidDrainingError extends CellError {
  static override readonly errorName = 'CapsidDrainingError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The capsid was stopped (or stopped while the call was pending): the handler may have run. */
export class CapsidStoppedError extends CellError {
  static override readonly errorName = 'CapsidStoppedError'
  static override readonly retry: RetryRule = 'idempotent'
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

/** The replica died without being asked to stop; pending calls fail with this (the handler may have run). */
export class ReplicaCrashedError extends CellError {
  static override readonly errorName = 'ReplicaCrashedError'
  static override readonly retry: RetryRule = 'idempotent'
  readonly exit?: ExitInfo
  constructor (message: string, exit?: ExitInfo, options?: { cause?: unknown }) {
    super(message, options)
    this.exit = exit
  }
}

/** The mesh's and the capsid's errors, registered on every mesh so callers rebuild them from the wire. */
export const MESH_ERROR_CLASSES = [
  NoReplicaError, UnknownCellError, PayloadEncodingError, MeshNotStartedError, CellNameConflictError,
  CapsidBusyError, CapsidDrainingError, CapsidStoppedError, ReplicaCrashedError, StaleEpochAnswerError
]
