import { CellError } from '../errors.ts'

/** Untrusted bytes did not decode to a valid fleet record, envelope, bundle or sync frame. */
export class MalformedFleetRecordError extends CellError {}

/** A record handed to a local publish call was refused by the local view (see `reason`). */
export class FleetRecordRejectedError extends CellError {
  readonly reason: string
  constructor (message: string, reason: string, options?: { cause?: unknown }) {
    super(message, options)
    this.reason = reason
  }
}

/** The key handed to `signRecord` is not the key of the record's `nodeId`. */
export class RecordOriginMismatchError extends CellError {}

/** A fleet-sync pull failed (stream error, protocol violation or limit exceeded). */
export class FleetSyncError extends CellError {}

/** A fleet-sync pull did not finish before its deadline. */
export class FleetSyncTimeoutError extends CellError {}
