import { CellError } from '../errors.ts'

/** Untrusted bytes did not decode to a valid fleet record, envelope, bundle or sync frame. */
export class MalformedFleetRecordError extends CellError { static override readonly errorName = 'MalformedFleetRecordError' }

/** A record handed to a local publish call was refused by the local view (see `reason`). */
export class FleetRecordRejectedError extends CellError {
  static override readonly errorName = 'FleetRecordRejectedError'
  readonly reason: string
  constructor (message: string, reason: string, options?: { cause?: unknown }) {
    super(message, options)
    this.reason = reason
  }
}

/** The key handed to `signRecord` is not the key of the record's `nodeId`. */
export class RecordOriginMismatchError extends CellError { static override readonly errorName = 'RecordOriginMismatchError' }

/** A fleet-sync pull failed (stream error, protocol violation or limit exceeded). */
export class FleetSyncError extends CellError { static override readonly errorName = 'FleetSyncError' }

/** A fleet-sync pull did not finish before its deadline. */
export class FleetSyncTimeoutError extends CellError { static override readonly errorName = 'FleetSyncTimeoutError' }
