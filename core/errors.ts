// Base class for every named error in Cell. Callers match on the class (instanceof) or on `name`
// when an error crossed the wire; never on the message text.
//
// Bundlers rename classes (`class NoReplicaError` becomes `var DG = class …` in a production
// build), so a name taken from the constructor is not stable: every subclass declares its name as
// a literal, and whether a call that failed with it may be tried again elsewhere:
//
//   export class NoReplicaError extends CellError {
//     static override readonly errorName = 'NoReplicaError'
//     static override readonly retry: RetryRule = 'nothing-ran'
//   }
//
// A class that others extend widens its name to string (`static override readonly errorName:
// string = 'TrustError'`) so its subclasses may declare their own literal.

/**
 * May a call that failed with this error be retried on another replica?
 * - `never`: the failure would repeat (trust refusals, bad input) or retrying is unsafe;
 * - `nothing-ran`: the call never reached a handler, so any other replica may take it;
 * - `idempotent`: the handler may have run, so only methods marked idempotent are retried.
 */
export type RetryRule = 'never' | 'nothing-ran' | 'idempotent'

export class CellError extends Error {
  /** The literal class name; subclasses must declare their own (a unit test checks every class). */
  static readonly errorName: string = 'CellError'
  static readonly retry: RetryRule = 'never'

  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    // Never the constructor's name, which a bundler renames; test/errors/error-names.test.ts fails on
    // a class without its own literal errorName.
    this.name = (new.target as typeof CellError).errorName
  }
}

/**
 * The retry rule declared by the class of `err`, or undefined for a value that is no CellError
 * (a libp2p dial failure, a TypeError): the caller decides those from where the call stood.
 */
export function retryRuleOf (err: unknown): RetryRule | undefined {
  return err instanceof CellError ? (err.constructor as typeof CellError).retry : undefined
}
