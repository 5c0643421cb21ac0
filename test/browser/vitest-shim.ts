// A tiny stand-in for the parts of vitest core's unit tests use, so those same test files can be
// bundled for the browser and run inside Chromium (test/browser/core-in-chromium.test.ts aliases
// `vitest` to this module). Collection works like vitest's: importing a test file runs its
// describe() bodies, which register tests and hooks; runFiles() then runs them in order and
// publishes a summary on `globalThis.__shimReport` for the driving Node test to read.
import { AssertionError, expect, format } from './vitest-shim-expect.ts'

export { expect, AssertionError }

type Fn = () => unknown
interface Test { name: string, fn: Fn, timeoutMs: number }
interface Suite { name: string, tests: Array<Test | Suite>, beforeAll: Fn[], afterAll: Fn[], beforeEach: Fn[], afterEach: Fn[], parent?: Suite }

export interface ShimFailure { name: string, message: string }
export interface ShimReport {
  done: boolean
  /** it()/test() calls seen during collection, one per row for .each. */
  registered: number
  /** Tests registered per loaded file, to show no file was silently empty. */
  perFile: Record<string, number>
  /** Tests whose body was attempted (passed + failed). */
  ran: number
  passed: number
  failures: ShimFailure[]
  durationMs: number
}

const DEFAULT_TIMEOUT_MS = 20_000
let current: Suite = newSuite('')
let registered = 0

function newSuite (name: string, parent?: Suite): Suite {
  return { name, tests: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [], parent }
}

export function describe (name: string, body: () => void): void {
  const suite = newSuite(name, current)
  current.tests.push(suite)
  const outer = current
  current = suite
  try {
    body()
  } catch (err) {
    // A describe body that throws is a failure of the file, reported as a test that cannot pass.
    registerTest(`(collecting) ${name}`, () => { throw err })
  } finally {
    current = outer
  }
}
describe.skipIf = (condition: boolean) => condition ? (_name: string, _body: () => void) => {} : describe

function registerTest (name: string, fn: Fn, timeoutMs = DEFAULT_TIMEOUT_MS): void {
  registered++
  current.tests.push({ name, fn, timeoutMs })
}

// printf-style (%s %d %i %j %o %%) and $key.path placeholders, as vitest formats .each titles.
function title (template: string, row: unknown, index: number): string {
  const args = Array.isArray(row) ? [...row] : [row]
  let out = template.replace(/%[sdijo%#]/g, (spec) => {
    if (spec === '%%') return '%'
    if (spec === '%#') return String(index)
    const v = args.shift()
    if (spec === '%d' || spec === '%i') return String(Number(v))
    if (spec === '%j' || spec === '%o') return JSON.stringify(v)
    return typeof v === 'string' ? v : format(v)
  })
  if (typeof row === 'object' && row !== null && !Array.isArray(row)) {
    out = out.replace(/\$([\w.]+)/g, (_m, path: string) => {
      let v: unknown = row
      for (const k of path.split('.')) v = (v as Record<string, unknown> | undefined)?.[k]
      return typeof v === 'string' ? v : format(v)
    })
  }
  return out
}

function each (table: readonly unknown[]) {
  return (template: string, fn: (...args: any[]) => unknown, timeoutMs?: number): void => {
    table.forEach((row, i) => {
      // vitest spreads array rows into arguments and passes other rows as the single argument.
      const args = Array.isArray(row) ? row : [row]
      registerTest(title(template, row, i), () => fn(...args), timeoutMs)
    })
  }
}

export function it (name: string, fn: Fn, timeoutMs?: number): void { registerTest(name, fn, timeoutMs) }
it.each = each
it.skipIf = (condition: boolean) => condition ? (_name: string, _fn: Fn) => {} : it
export const test = it

export function beforeAll (fn: Fn): void { current.beforeAll.push(fn) }
export function afterAll (fn: Fn): void { current.afterAll.push(fn) }
export function beforeEach (fn: Fn): void { current.beforeEach.push(fn) }
export function afterEach (fn: Fn): void { current.afterEach.push(fn) }

/** vi.fn: records calls and returns what the optional implementation returns. */
export const vi = {
  fn<A extends unknown[], R> (impl?: (...args: A) => R) {
    const calls: A[] = []
    const mock = Object.assign((...args: A) => { calls.push(args); return impl?.(...args) }, { mock: { calls } })
    return mock
  }
}

async function withTimeout (fn: Fn, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what} timed out after ${ms} ms`)) }, ms)
  })
  try {
    await Promise.race([Promise.resolve().then(fn), deadline])
  } finally {
    clearTimeout(timer)
  }
}

const describeError = (err: unknown): string =>
  err instanceof AssertionError || !(err instanceof Error) ? format(err) : (err.stack?.startsWith(`${err.name}`) === true ? err.stack : `${format(err)}\n${err.stack ?? ''}`)

const report: ShimReport = { done: false, registered: 0, perFile: {}, ran: 0, passed: 0, failures: [], durationMs: 0 }
;(globalThis as any).__shimReport = report

function hooks (suite: Suite | undefined, pick: (s: Suite) => Fn[], outerFirst: boolean): Fn[] {
  const chain: Suite[] = []
  for (let s = suite; s !== undefined; s = s.parent) chain.push(s)
  if (outerFirst) chain.reverse()
  return chain.flatMap(pick)
}

function countTests (suite: Suite): Test[] {
  return suite.tests.flatMap(t => 'fn' in t ? [t] : countTests(t))
}

async function runSuite (suite: Suite, path: string[]): Promise<void> {
  let setupError: unknown
  for (const hook of suite.beforeAll) {
    try { await withTimeout(hook, DEFAULT_TIMEOUT_MS, 'beforeAll') } catch (err) { setupError = err; break }
  }
  if (setupError !== undefined) {
    // Like vitest: a failing beforeAll fails every test below it.
    for (const t of countTests(suite)) fail([...path, t.name], setupError)
  } else {
    for (const child of suite.tests) {
      if ('fn' in child) await runTest(suite, child, [...path, child.name])
      else await runSuite(child, [...path, child.name])
    }
  }
  for (const hook of suite.afterAll) {
    try { await withTimeout(hook, DEFAULT_TIMEOUT_MS, 'afterAll') } catch (err) { fail([...path, '(afterAll)'], err, false) }
  }
}

function fail (path: string[], err: unknown, counts = true): void {
  if (counts) report.ran++
  report.failures.push({ name: path.filter(p => p !== '').join(' > '), message: describeError(err) })
}

async function runTest (suite: Suite, t: Test, path: string[]): Promise<void> {
  let error: unknown
  let failed = false
  try {
    for (const hook of hooks(suite, s => s.beforeEach, true)) await withTimeout(hook, t.timeoutMs, 'beforeEach')
    await withTimeout(t.fn, t.timeoutMs, 'test')
  } catch (err) { error = err; failed = true }
  for (const hook of hooks(suite, s => s.afterEach, false)) {
    try { await withTimeout(hook, t.timeoutMs, 'afterEach') } catch (err) { if (!failed) { error = err; failed = true } }
  }
  if (failed) fail(path, error)
  else { report.ran++; report.passed++ }
}

/**
 * Loads each test file in turn (its top-level describes register under a suite named after the
 * file), runs everything, and marks the report done. Never rejects: every problem is a failure.
 */
export async function runFiles (files: Array<[name: string, load: () => Promise<unknown>]>): Promise<ShimReport> {
  const started = performance.now()
  const root = current
  for (const [name, load] of files) {
    const fileSuite = newSuite(name, root)
    root.tests.push(fileSuite)
    current = fileSuite
    const before = registered
    try {
      await load()
    } catch (err) {
      registerTest('(loading the file)', () => { throw err })
    } finally {
      current = root
    }
    report.perFile[name] = registered - before
  }
  report.registered = registered
  try {
    await runSuite(root, [])
  } catch (err) {
    fail(['(runner)'], err, false)
  }
  report.durationMs = Math.round(performance.now() - started)
  report.done = true
  return report
}
