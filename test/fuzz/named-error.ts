import { CellError } from '../../core/errors.ts'

/**
 * A named refusal: an instance of a CellError subclass (not the base class) that declares its own
 * literal errorName, and whose `name` is that literal. Anything else a decoder throws is a crash.
 */
export function isNamedCellError (err: unknown): err is CellError {
  if (!(err instanceof CellError)) return false
  const cls = err.constructor as typeof CellError
  return cls !== CellError && Object.hasOwn(cls, 'errorName') && err.name === cls.errorName
}
