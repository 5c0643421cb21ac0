import { CellError } from '../errors.ts'

// Durations and sizes as written in Cell.toml and accepted by every other module.
//
// Rules (strict on purpose: a typo in an operations file should fail loudly, not mean something):
// - Integers only, no sign, no spaces, no fractions: `10s`, not `10 s`, `-5s`, `1.5h`.
// - A unit is mandatory: a bare `10` is ambiguous and rejected.
// - Duration units are lowercase: ms, s, m, h, d. Several may be combined in strictly descending
//   order, each at most once: `1h30m`, `1d12h`, `2m500ms`; `30m1h` and `1h1h` are rejected.
// - Size units are case-sensitive symbols: B; decimal kB (also KB), MB, GB, TB, PB; binary KiB,
//   MiB, GiB, TiB, PiB. `10gib` and `10GIB` are rejected: `Mb` vs `MB` means megabit vs megabyte
//   elsewhere, so guessing would be wrong.
// - Zero is rejected unless `{ allowZero: true }`: a zero grace period, snapshot interval or claim
//   is almost always a mistake.
// - The result must not exceed Number.MAX_SAFE_INTEGER (milliseconds or bytes).

export class InvalidDurationError extends CellError { static override readonly errorName = 'InvalidDurationError' }
export class InvalidSizeError extends CellError { static override readonly errorName = 'InvalidSizeError' }

export interface UnitOptions {
  /** Accept a value of zero (default false). */
  allowZero?: boolean
}

const MAX_TEXT_LENGTH = 64

const DURATION_UNITS_MS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
  ['ms', 1]
]

// `ms` must be tried before `m`; the rank check below enforces descending order.
const DURATION_PART = /(\d+)(ms|d|h|m|s)/y

/** Parse a duration such as `500ms`, `10s`, `5m`, `24h`, `7d` or `1h30m` into milliseconds. */
export function parseDuration (text: string, options: UnitOptions = {}): number {
  const bad = (why: string): InvalidDurationError =>
    new InvalidDurationError(`invalid duration ${JSON.stringify(text)}: ${why} (write e.g. "10s", "500ms", "1h30m")`)
  if (typeof text !== 'string') throw bad('not a string')
  if (text.length === 0) throw bad('empty')
  if (text.length > MAX_TEXT_LENGTH) throw bad('too long')
  if (/^\d+$/.test(text)) throw bad('missing unit')

  let total = 0
  let lastRank = -1
  let pos = 0
  while (pos < text.length) {
    DURATION_PART.lastIndex = pos
    const match = DURATION_PART.exec(text)
    if (match === null) throw bad(`unexpected ${JSON.stringify(text.slice(pos, pos + 1))} at position ${pos + 1}`)
    const rank = DURATION_UNITS_MS.findIndex(([unit]) => unit === match[2])
    if (rank <= lastRank) throw bad('units must appear once each, largest first')
    lastRank = rank
    const amount = Number(match[1])
    const part = amount * DURATION_UNITS_MS[rank][1]
    if (!Number.isSafeInteger(amount) || !Number.isSafeInteger(part) || !Number.isSafeInteger(total + part)) {
      throw bad('too large')
    }
    total += part
    pos = DURATION_PART.lastIndex
  }
  if (total === 0 && options.allowZero !== true) throw bad('must be greater than zero')
  return total
}

const SIZE_UNITS_BYTES: Readonly<Record<string, bigint>> = {
  B: 1n,
  kB: 1000n,
  KB: 1000n,
  MB: 1000n ** 2n,
  GB: 1000n ** 3n,
  TB: 1000n ** 4n,
  PB: 1000n ** 5n,
  KiB: 1024n,
  MiB: 1024n ** 2n,
  GiB: 1024n ** 3n,
  TiB: 1024n ** 4n,
  PiB: 1024n ** 5n
}

const SIZE = /^(\d+)([A-Za-z]+)$/

/** Parse a size such as `10GiB`, `512MiB`, `10GB` or `4096B` into bytes. */
export function parseSize (text: string, options: UnitOptions = {}): number {
  const bad = (why: string): InvalidSizeError =>
    new InvalidSizeError(`invalid size ${JSON.stringify(text)}: ${why} (write e.g. "10GiB", "512MiB", "4096B")`)
  if (typeof text !== 'string') throw bad('not a string')
  if (text.length === 0) throw bad('empty')
  if (text.length > MAX_TEXT_LENGTH) throw bad('too long')
  if (/^\d+$/.test(text)) throw bad('missing unit')
  const match = SIZE.exec(text)
  if (match === null) throw bad('expected an integer followed by a unit')
  const multiplier = Object.hasOwn(SIZE_UNITS_BYTES, match[2]) ? SIZE_UNITS_BYTES[match[2]] : undefined
  if (multiplier === undefined) {
    throw bad(`unknown unit ${JSON.stringify(match[2])} (units are case-sensitive: B, kB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB)`)
  }
  const bytes = BigInt(match[1]) * multiplier
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('too large')
  if (bytes === 0n && options.allowZero !== true) throw bad('must be greater than zero')
  return Number(bytes)
}
