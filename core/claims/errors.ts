// Named failures of the claim register (core/claims). Callers match on the class.
import { CellError, type RetryRule } from '../errors.ts'

/** A claim frame (request or answer) that is not what `/cell/claim/1` carries: cut short, too large, unknown fields. */
export class MalformedClaimFrameError extends CellError {
  static override readonly errorName = 'MalformedClaimFrameError'
  static override readonly retry: RetryRule = 'never'
}

/** The claim is held by another owner whose lease has not ended by the voters' clocks. */
export class ClaimHeldError extends CellError {
  static override readonly errorName = 'ClaimHeldError'
  static override readonly retry: RetryRule = 'never'
  readonly holder: string
  readonly epoch: number
  /** How long, at most, the answering voters will still refuse a takeover (their own clocks, margin included). */
  readonly leaseEndsInMs: number

  constructor (message: string, details: { holder: string, epoch: number, leaseEndsInMs: number }, options?: { cause?: unknown }) {
    super(message, options)
    this.holder = details.holder
    this.epoch = details.epoch
    this.leaseEndsInMs = details.leaseEndsInMs
  }
}

/** A renew or release found the claim no longer held by this node at that epoch: stop serving it. */
export class ClaimLostError extends CellError {
  static override readonly errorName = 'ClaimLostError'
  static override readonly retry: RetryRule = 'never'
}

/** The register answered, but only after the lease it granted had already run out on this node's clock. */
export class ClaimLeaseExpiredError extends CellError {
  static override readonly errorName = 'ClaimLeaseExpiredError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** No majority of the claim's voters answered within the deadline or the retries (partition, dead voters, contention). */
export class ClaimQuorumError extends CellError {
  static override readonly errorName = 'ClaimQuorumError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The voters named in the request are not the claim's voters (fixed in its first accepted value). */
export class ClaimVotersMismatchError extends CellError {
  static override readonly errorName = 'ClaimVotersMismatchError'
  static override readonly retry: RetryRule = 'never'
  readonly voters: string[]

  constructor (message: string, voters: string[], options?: { cause?: unknown }) {
    super(message, options)
    this.voters = voters
  }
}

/** An answer that does not belong to the request it came back for (other claim, ballot or phase): never a vote. */
export class StaleClaimAnswerError extends CellError {
  static override readonly errorName = 'StaleClaimAnswerError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** An acceptor holds as many claims as it may; a new claim is refused. */
export class TooManyClaimsError extends CellError {
  static override readonly errorName = 'TooManyClaimsError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** Bad arguments to the register (claim id, voters, lease length). */
export class InvalidClaimError extends CellError {
  static override readonly errorName = 'InvalidClaimError'
  static override readonly retry: RetryRule = 'never'
}

/** A voter did not answer within the phase deadline. */
export class ClaimTimeoutError extends CellError {
  static override readonly errorName = 'ClaimTimeoutError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
