// Runs one decoder over fast-check inputs: random bytes, small-valued bytes (plausible lengths and
// tags), and structure-aware mutations of valid encodings (bit flips, interesting values, cuts,
// extensions, inserted or deleted or repeated ranges, rewritten 16-bit lengths, splices of two
// seeds, TOML/JSON tokens for text decoders), so inputs get past the first length check.
// A crash is any exception that is not a named CellError subclass, or an input that takes longer
// than `hangMs`; fast-check then shrinks it to a small counterexample.
import fc from 'fast-check'
import { isNamedCellError } from './named-error.ts'
import type { DecoderTarget } from './targets.ts'

export interface FuzzOptions {
  runs: number
  seed?: number
  /** One input longer than this is a hang. */
  hangMs?: number
}

export interface FuzzResult {
  name: string
  runs: number
  accepted: number
  rejected: number
  /** Refusals by error name. */
  errors: Record<string, number>
  crash?: { input: string, error: string, seed: number }
  hangs: number
  ms: number
  perSecond: number
}

interface Mutation { op: number, pos: number, val: number, bytes: Uint8Array }

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20, 0x10]
const TOKENS = ['[', ']', '[[', ']]', '=', '"', "'''", '"""', '\n', '{', '}', ',', ':', '\\', '\\u0000', '1e999', '-0', 'true', 'null', '#', '.', '[cell]', '[cell.biology]', 'name = ', '\u{10ffff}', '\ud800', '9'.repeat(30)]
  .map(t => new TextEncoder().encode(t))

function mutate (seed: Uint8Array, mutations: Mutation[], text: boolean): Uint8Array {
  let b: Uint8Array = seed.slice()
  for (const m of mutations) {
    const len = b.length
    const at = len === 0 ? 0 : m.pos % len
    switch (m.op) {
      case 0: if (len > 0) b[at] ^= 1 << (m.val & 7); break
      case 1: if (len > 0) b[at] = INTERESTING[m.val % INTERESTING.length]; break
      case 2: b = b.slice(0, m.pos % (len + 1)); break
      case 3: b = join(b, m.bytes); break
      case 4: b = join(b.subarray(0, at), text ? TOKENS[m.val % TOKENS.length] : m.bytes, b.subarray(at)); break
      case 5: b = join(b.subarray(0, at), b.subarray(Math.min(len, at + 1 + (m.val & 63)))); break
      case 6: {
        const piece = b.subarray(at, Math.min(len, at + 1 + (m.val & 63)))
        b = join(b.subarray(0, at), piece, piece, b.subarray(at))
        break
      }
      case 7: if (len > 1) {
        // A 16-bit length field rewritten to a boundary: empty, the rest, one more, the maximum.
        const i = at === len - 1 ? at - 1 : at
        const v = [0, len - i - 2, len - i - 1, len - i, 0xffff][m.val % 5]
        b[i] = (v >>> 8) & 0xff
        b[i + 1] = v & 0xff
      }
        break
      default: if (len > 0) b[at] = m.val & 0xff
    }
  }
  return b
}

function join (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** The input generator for `target`. */
export function inputs (target: DecoderTarget): fc.Arbitrary<Uint8Array> {
  const seeds = target.seeds
  const mutation = fc.record({ op: fc.integer({ min: 0, max: 8 }), pos: fc.nat(), val: fc.nat(255), bytes: fc.uint8Array({ maxLength: 48 }) })
  const mutated = fc.tuple(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: 6 }))
    .map(([i, ms]) => mutate(seeds[i], ms, target.text === true))
  const spliced = fc.tuple(fc.nat(seeds.length - 1), fc.nat(seeds.length - 1), fc.nat(), fc.nat())
    .map(([i, j, a, c]) => join(seeds[i].subarray(0, a % (seeds[i].length + 1)), seeds[j].subarray(c % (seeds[j].length + 1))))
  const random = fc.uint8Array({ maxLength: 512 })
  const small = fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 128 }).map(a => Uint8Array.from(a))
  const text = fc.string({ maxLength: 256, unit: 'binary' }).map(s => new TextEncoder().encode(s))
  return fc.oneof(
    { arbitrary: mutated, weight: 6 },
    { arbitrary: spliced, weight: 1 },
    { arbitrary: random, weight: 1 },
    { arbitrary: small, weight: 1 },
    { arbitrary: text, weight: target.text === true ? 2 : 0 }
  )
}

const hex = (b: Uint8Array): string => Array.from(b.subarray(0, 2048), x => x.toString(16).padStart(2, '0')).join('')

/** Fuzzes `target` for `runs` inputs; resolves with counts, the rate and the first crash (shrunk). */
export async function fuzzDecoder (target: DecoderTarget, options: FuzzOptions): Promise<FuzzResult> {
  const hangMs = options.hangMs ?? 2_000
  const seed = options.seed ?? (Date.now() & 0x7fffffff)
  const result: FuzzResult = { name: target.name, runs: 0, accepted: 0, rejected: 0, errors: {}, hangs: 0, ms: 0, perSecond: 0 }
  let lastError: unknown
  const count = (err: unknown): boolean => {
    if (isNamedCellError(err)) {
      result.rejected++
      result.errors[err.name] = (result.errors[err.name] ?? 0) + 1
      return true
    }
    lastError = err
    return false
  }
  const timed = (t0: number): boolean => {
    if (performance.now() - t0 <= hangMs) return true
    result.hangs++
    lastError = new Error(`input took more than ${hangMs} ms`)
    return false
  }
  const started = performance.now()
  const arb = inputs(target)
  let details: fc.RunDetails<[Uint8Array]>
  if (target.async === true) {
    details = await fc.check(fc.asyncProperty(arb, async (bytes) => {
      result.runs++
      const t0 = performance.now()
      let timer: ReturnType<typeof setTimeout> | undefined
      const hang = new Promise<'hang'>(resolve => { timer = setTimeout(() => { resolve('hang') }, hangMs) })
      try {
        const r = await Promise.race([Promise.resolve(target.decode(bytes)), hang])
        if (r === 'hang') return timed(-Infinity)
        result.accepted++
        return timed(t0)
      } catch (err) {
        return count(err) && timed(t0)
      } finally {
        clearTimeout(timer)
      }
    }), { numRuns: options.runs, seed, endOnFailure: false })
  } else {
    details = fc.check(fc.property(arb, (bytes) => {
      result.runs++
      const t0 = performance.now()
      try {
        target.decode(bytes)
        result.accepted++
        return timed(t0)
      } catch (err) {
        return count(err) && timed(t0)
      }
    }), { numRuns: options.runs, seed, endOnFailure: false })
  }
  result.ms = performance.now() - started
  result.perSecond = Math.round(result.runs / (result.ms / 1000))
  if (details.failed && details.counterexample != null) {
    const err = lastError
    result.crash = { input: hex(details.counterexample[0]), error: err instanceof Error ? `${err.name}: ${err.message}` : String(err), seed }
  }
  return result
}
