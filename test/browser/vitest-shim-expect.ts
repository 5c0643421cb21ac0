// The `expect` half of the in-page vitest stand-in (see vitest-shim.ts): only the matchers core's
// unit tests use, with vitest's semantics where they matter (toEqual ignores undefined-valued keys
// and compares typed arrays by content; toMatchObject is a recursive subset; asymmetric matchers).

export class AssertionError extends Error {}

interface Asymmetric { asymmetricMatch: (other: unknown) => boolean, toString: () => string }

const isAsymmetric = (v: unknown): v is Asymmetric =>
  typeof v === 'object' && v !== null && typeof (v as Asymmetric).asymmetricMatch === 'function'

const tag = (v: unknown): string => Object.prototype.toString.call(v)

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null

export function format (value: unknown, depth = 0): string {
  if (isAsymmetric(value)) return value.toString()
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'function') return `[Function ${value.name}]`
  if (value instanceof Error) return `${value.name}: ${value.message}`
  if (!isObject(value)) return String(value)
  if (depth > 3) return tag(value)
  if (ArrayBuffer.isView(value)) {
    const items = Array.from(value as unknown as ArrayLike<number>)
    return `${value.constructor.name}[${items.slice(0, 32).join(',')}${items.length > 32 ? ',…' : ''}]`
  }
  if (Array.isArray(value)) return `[${value.slice(0, 20).map(v => format(v, depth + 1)).join(', ')}${value.length > 20 ? ', …' : ''}]`
  if (value instanceof Map) return `Map{${[...value].map(([k, v]) => `${format(k, depth + 1)} => ${format(v, depth + 1)}`).join(', ')}}`
  if (value instanceof Set) return `Set{${[...value].map(v => format(v, depth + 1)).join(', ')}}`
  const text = `{${Object.entries(value).map(([k, v]) => `${k}: ${format(v, depth + 1)}`).join(', ')}}`
  return text.length > 400 ? text.slice(0, 400) + '…' : text
}

export function equals (a: unknown, b: unknown): boolean {
  if (isAsymmetric(b)) return b.asymmetricMatch(a)
  if (isAsymmetric(a)) return a.asymmetricMatch(b)
  if (Object.is(a, b)) return true
  if (!isObject(a) || !isObject(b)) return false
  if (tag(a) !== tag(b)) return false
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime()
  if (a instanceof RegExp && b instanceof RegExp) return a.source === b.source && a.flags === b.flags
  if (a instanceof Error && b instanceof Error) return a.name === b.name && a.message === b.message
  if (ArrayBuffer.isView(a) || Array.isArray(a)) {
    const x = a as unknown as ArrayLike<unknown>
    const y = b as unknown as ArrayLike<unknown>
    if (x.length !== y.length) return false
    for (let i = 0; i < x.length; i++) if (!equals(x[i], y[i])) return false
    return true
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false
    for (const [k, v] of a) if (!b.has(k) || !equals(v, b.get(k))) return false
    return true
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false
    for (const v of a) if (!b.has(v) && ![...b].some(w => equals(v, w))) return false
    return true
  }
  const keys = (o: Record<string, unknown>): string[] => Object.keys(o).filter(k => o[k] !== undefined)
  const ka = keys(a)
  const kb = keys(b)
  if (ka.length !== kb.length) return false
  return ka.every(k => Object.prototype.hasOwnProperty.call(b, k) && equals(a[k], b[k]))
}

/** vitest's toMatchObject: every key of `expected` (recursively) is present and matches. */
export function matchesObject (actual: unknown, expected: unknown): boolean {
  if (isAsymmetric(expected)) return expected.asymmetricMatch(actual)
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && expected.every((e, i) => matchesObject(actual[i], e))
  }
  if (!isObject(expected) || ArrayBuffer.isView(expected) || expected instanceof Date || expected instanceof Map || expected instanceof Set) {
    return equals(actual, expected)
  }
  if (!isObject(actual)) return false
  return Object.keys(expected).every(k => k in actual && matchesObject(actual[k], expected[k]))
}

type ErrorClass = abstract new (...args: any[]) => unknown

function thrownMatches (thrown: unknown, expected: unknown): boolean {
  const message = thrown instanceof Error ? thrown.message : String(thrown)
  if (expected === undefined) return true
  if (typeof expected === 'function') return thrown instanceof (expected as ErrorClass)
  if (expected instanceof RegExp) return expected.test(message)
  if (typeof expected === 'string') return message.includes(expected)
  if (expected instanceof Error) return message === expected.message
  return matchesObject(thrown, expected)
}

type Matcher = (...args: any[]) => void
export interface Matchers {
  not: Matchers
  resolves: AsyncMatchers
  rejects: AsyncMatchers
  [name: string]: any
}
type AsyncMatchers = Record<string, (...args: any[]) => Promise<void>>

const NOTHING_THROWN = Symbol('nothing thrown')

// Each check returns [pass, description-of-expectation]; `not` flips pass, `thrown` says the actual
// value is already the thrown/rejected value (from .rejects) rather than a function to call.
type Check = (actual: unknown, args: unknown[], thrown: boolean) => [boolean, string]

const checks: Record<string, Check> = {
  toBe: (a, [e]) => [Object.is(a, e), `to be ${format(e)}`],
  toEqual: (a, [e]) => [equals(a, e), `to equal ${format(e)}`],
  toStrictEqual: (a, [e]) => [equals(a, e), `to strictly equal ${format(e)}`],
  toMatchObject: (a, [e]) => [matchesObject(a, e), `to match object ${format(e)}`],
  toBeInstanceOf: (a, [c]) => [a instanceof (c as ErrorClass), `to be an instance of ${(c as { name: string }).name}`],
  toBeDefined: (a) => [a !== undefined, 'to be defined'],
  toBeUndefined: (a) => [a === undefined, 'to be undefined'],
  toBeNull: (a) => [a === null, 'to be null'],
  toBeTruthy: (a) => [Boolean(a), 'to be truthy'],
  toBeFalsy: (a) => [!a, 'to be falsy'],
  toBeGreaterThan: (a, [n]) => [(a as number) > (n as number), `to be > ${format(n)}`],
  toBeGreaterThanOrEqual: (a, [n]) => [(a as number) >= (n as number), `to be >= ${format(n)}`],
  toBeLessThan: (a, [n]) => [(a as number) < (n as number), `to be < ${format(n)}`],
  toBeLessThanOrEqual: (a, [n]) => [(a as number) <= (n as number), `to be <= ${format(n)}`],
  toBeCloseTo: (a, [n, digits = 2]) =>
    [Math.abs((a as number) - (n as number)) < 10 ** -(digits as number) / 2, `to be close to ${format(n)} (${String(digits)} digits)`],
  toContain: (a, [e]) => [(typeof a === 'string' ? a.includes(e as string) : Array.from(a as Iterable<unknown>).includes(e)), `to contain ${format(e)}`],
  toContainEqual: (a, [e]) => [Array.from(a as Iterable<unknown>).some(v => equals(v, e)), `to contain an item equal to ${format(e)}`],
  toHaveLength: (a, [n]) => [(a as { length?: number })?.length === n, `to have length ${format(n)}`],
  toMatch: (a, [e]) => [typeof a === 'string' && (e instanceof RegExp ? e.test(a) : a.includes(e as string)), `to match ${format(e)}`],
  toThrow: (a, [e], thrown) => {
    let error: unknown = NOTHING_THROWN
    if (thrown) error = a
    else {
      try { (a as () => unknown)() } catch (err) { error = err }
    }
    return [error !== NOTHING_THROWN && thrownMatches(error, e), `to throw ${e === undefined ? '' : format(e)} (threw ${error === NOTHING_THROWN ? 'nothing' : format(error)})`]
  }
}
checks.toThrowError = checks.toThrow

function build (actual: unknown, message: string | undefined, negate: boolean, thrown: boolean): Record<string, Matcher> {
  const out: Record<string, Matcher> = {}
  for (const [name, check] of Object.entries(checks)) {
    out[name] = (...args: unknown[]) => {
      const [pass, what] = check(actual, args, thrown)
      if (pass === negate) {
        const prefix = message === undefined ? '' : `${message}: `
        throw new AssertionError(`${prefix}expected ${format(actual)} ${negate ? 'not ' : ''}${what}`)
      }
    }
  }
  return out
}

function settle (promise: unknown, message: string | undefined, wantReject: boolean, negate: boolean): AsyncMatchers {
  const out: AsyncMatchers = {}
  for (const name of Object.keys(checks)) {
    out[name] = async (...args: unknown[]) => {
      let value: unknown
      let rejected = false
      try { value = await promise } catch (err) { value = err; rejected = true }
      if (rejected !== wantReject) {
        throw new AssertionError(`${message ?? ''} expected promise to ${wantReject ? 'reject' : 'resolve'} but it ${rejected ? `rejected with ${format(value)}` : `resolved to ${format(value)}`}`)
      }
      build(value, message, negate, wantReject)[name](...args)
    }
  }
  return out
}

export function expect (actual: unknown, message?: string): Matchers {
  const m = build(actual, message, false, false) as Matchers
  m.not = build(actual, message, true, false) as Matchers
  m.resolves = settle(actual, message, false, false)
  m.rejects = settle(actual, message, true, false)
  ;(m.resolves as any).not = settle(actual, message, false, true)
  ;(m.rejects as any).not = settle(actual, message, true, true)
  return m
}

expect.objectContaining = (expected: Record<string, unknown>): Asymmetric => ({
  asymmetricMatch: (other: unknown) => isObject(other) && Object.keys(expected).every(k => k in other && equals(other[k], expected[k])),
  toString: () => `ObjectContaining ${format(expected)}`
})
expect.arrayContaining = (expected: unknown[]): Asymmetric => ({
  asymmetricMatch: (other: unknown) => Array.isArray(other) && expected.every(e => other.some(o => equals(o, e))),
  toString: () => `ArrayContaining ${format(expected)}`
})
expect.any = (ctor: ErrorClass | typeof Number | typeof String | typeof Boolean | typeof BigInt): Asymmetric => ({
  asymmetricMatch: (other: unknown) =>
    (ctor as unknown) === Number ? typeof other === 'number'
      : (ctor as unknown) === String ? typeof other === 'string'
        : (ctor as unknown) === Boolean ? typeof other === 'boolean'
          : (ctor as unknown) === BigInt ? typeof other === 'bigint'
            : other instanceof (ctor as ErrorClass),
  toString: () => `Any<${ctor.name}>`
})
