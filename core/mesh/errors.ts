import { CellError } from '../errors.ts'

/** No ready replica of the cell is known to this peer (or none is left after failures). */
export class NoReplicaError extends CellError {}
/** The cell has no release from an authority this peer trusts. */
export class UnknownCellError extends CellError {}
/** A call payload or result is not JSON the typed client can carry. */
export class PayloadEncodingError extends CellError {}
/** The mesh was used before start() or after stop(). */
export class MeshNotStartedError extends CellError {}
/**
 * Two authorities this peer trusts both signed releases for one cell name. Names are bound to their
 * authority, so neither may stand in for the other: the operator must stop trusting one of them.
 */
export class CellNameConflictError extends CellError {}
