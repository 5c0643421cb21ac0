import { CellError } from '../errors.ts'
import type { RetryRule } from '../errors.ts'
import type { Dissemination } from './records.ts'

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

/**
 * A connected peer disseminates fleet records the other way (docs/biology.md "Scale"): this node and
 * it do not see each other's replicas. A report for the operator, never a reason to stop: the signal
 * (the peer's gossipsub subscriptions) is the peer's own unsigned claim about itself.
 */
export class DisseminationMismatchError extends CellError {
  static override readonly errorName = 'DisseminationMismatchError'
  static override readonly retry: RetryRule = 'never'
  /** The peer's libp2p id. */
  readonly peerId: string
  /** How the peer disseminates, and how this node does. */
  readonly theirs: Dissemination
  readonly ours: Dissemination

  /** `options.self` names the side that reports it (default 'this node'; a browser tab says 'this tab'). */
  constructor (peerId: string, theirs: Dissemination, ours: Dissemination, options?: { cause?: unknown, self?: string }) {
    super(`node …${peerId.slice(-6)} disseminates ${MODE_WORDS[theirs]}, ${options?.self ?? 'this node'} ${MODE_WORDS[ours]}: they do not see each other's replicas; ` +
      'start every node and client of a fleet with the same --dissemination (or CELL_DISSEMINATION; docs/biology.md, "Scale")', options)
    this.peerId = peerId
    this.theirs = theirs
    this.ours = ours
  }
}

const MODE_WORDS: Record<Dissemination, string> = { fleet: 'per fleet', 'per-cell': 'per cell' }
