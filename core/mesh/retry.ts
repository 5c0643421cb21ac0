// Whether the mesh tries a failed call on another replica. The error's class declares it
// (core/errors.ts RetryRule); errors from the wire are rebuilt into their classes by the registry,
// and a name nobody registered arrives as a RemoteError, which is never retried. Nothing here
// matches names: a bundler renames classes, and a guess from a name is no declaration.
import { retryRuleOf } from '../errors.ts'

/**
 * May a failed attempt be tried on another replica? Before the channel opened no call was sent, so
 * anything but a refusal (`never`: trust, bad input, unknown names) is worth another node,
 * including plain dial failures that are no CellError. After it opened, `nothing-ran` is retried
 * and `idempotent` only for methods marked idempotent.
 */
export function mayRetry (err: unknown, where: { opened: boolean, idempotent: boolean }): boolean {
  const rule = retryRuleOf(err)
  if (!where.opened) return rule !== 'never'
  return rule === 'nothing-ran' || (rule === 'idempotent' && where.idempotent)
}
