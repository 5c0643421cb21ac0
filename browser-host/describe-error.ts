// User-facing words for the named errors a page meets when it calls a cell (the table is shared
// with the dashboard). Matches on the class's literal name (the wire rebuilds errors by name), never
// on the message; unknown names fall back to a sentence that still carries the name so a user can
// report it.

import { ERROR_WORDS } from './error-words.ts'

/** The error's name as sent over the wire (RemoteError keeps the peer's name in `remoteName`). */
export function errorName (err: unknown): string {
  const e = err as { remoteName?: unknown, name?: unknown }
  if (typeof e?.remoteName === 'string') return e.remoteName
  return typeof e?.name === 'string' ? e.name : 'Error'
}

/** One sentence for a person, naming the failure class so support can match it. */
export function describeError (err: unknown): string {
  const name = errorName(err)
  const words = ERROR_WORDS[name]
  if (words != null) return `${words} (${name})`
  const message = String((err as Error)?.message ?? err).slice(0, 200)
  return `The call failed: ${message} (${name})`
}
