// Core's own unit test files, unchanged, run inside Debian's Chromium: each set is bundled with
// esbuild for the browser platform with `vitest` aliased to a small in-page stand-in
// (vitest-shim.ts), served from 127.0.0.1 (a secure context, so crypto.subtle exists), and the
// page's report is checked: every registered test ran, none failed. Two fixtures bundled the same
// way show the stand-in can fail. The rest of the suite still runs under vitest in Node as before.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { build, type Plugin } from 'esbuild'
import type { BrowserContext } from 'playwright-core'
import { HAS_CHROMIUM, launchChromium } from './chromium.ts'
import type { ShimReport } from './vitest-shim.ts'

const root = join(import.meta.dirname, '..', '..')
const SHIM = join(import.meta.dirname, 'vitest-shim.ts')

// Core's pure unit tests. Left out, each for a reason that ties it to Node:
// - core/identity/grant-token.test.ts: its base64url oracle is Node's Buffer.
// - core/manifest/manifest.test.ts: reads examples/*/Cell.toml with node:fs/promises.
// - core/fleet/sync.test.ts, core/fleet/fleet-libp2p.test.ts: start libp2p nodes over @libp2p/tcp (node:net).
// - core/synapse/synapse.test.ts: starts libp2p nodes via test/bench/nodes.ts (TCP).
// - core/synapse/writer.test.ts: waits a macrotask with Node's setImmediate global.
const CORE_TESTS = [
  'core/identity/authority.test.ts',
  'core/identity/chain.test.ts',
  'core/identity/codec.test.ts',
  'core/identity/credentials.test.ts',
  'core/identity/release.test.ts',
  'core/identity/renewal.test.ts',
  'core/identity/sequence-guard.test.ts',
  'core/wire/codec.test.ts',
  'core/wire/fuzz.test.ts',
  'core/manifest/locate.test.ts',
  'core/manifest/packaged.test.ts',
  'core/manifest/units.test.ts',
  'core/manifest/version.test.ts',
  'core/biology/autonomic.test.ts',
  'core/biology/replication.test.ts',
  'core/biology/target.test.ts',
  'core/routing/choose-replica.test.ts',
  'core/fleet/codec.test.ts',
  'core/fleet/framing.test.ts',
  'core/fleet/gossip.test.ts',
  'core/fleet/identity-port.test.ts',
  'core/fleet/view.test.ts',
  'core/synapse/deadlines.test.ts',
  'core/synapse/handshake.test.ts',
  'core/mesh/json.test.ts',
  'core/mesh/noise-framing.test.ts',
  'core/mesh/lazy-window-updates.test.ts',
  'core/mesh/coalesced-writes.test.ts',
  'core/mesh/compact-datastore.test.ts',
  'core/biology/rollout-progress.test.ts',
  'core/biology/followers.test.ts',
  'core/fleet/member-records.test.ts',
  'core/fleet/view-members.test.ts',
  'core/fleet/failure-detector.test.ts',
  'core/fleet/per-cell-gossip.test.ts'
]
const MIN_CORE_TESTS = 200

const NODE_BUILTINS = new Set(builtinModules.flatMap(m => [m, `node:${m}`]))

/** Bundles the given test files behind one entry that runs them through the shim. */
async function bundle (files: string[]): Promise<Map<string, Uint8Array>> {
  const entry = [
    `import { runFiles } from ${JSON.stringify(SHIM)}`,
    'runFiles([',
    ...files.map(f => `  [${JSON.stringify(f)}, () => import(${JSON.stringify(join(root, f))})],`),
    '])'
  ].join('\n')
  const plugin: Plugin = {
    name: 'vitest-in-page',
    setup (b) {
      b.onResolve({ filter: /^vitest$/ }, () => ({ path: SHIM }))
      b.onResolve({ filter: /^cell-browser-entry$/ }, () => ({ path: 'entry', namespace: 'cell-entry' }))
      b.onLoad({ filter: /.*/, namespace: 'cell-entry' }, () => ({ contents: entry, loader: 'ts', resolveDir: root }))
      // A Node built-in would be a browser-incompatible file in the list: fail the build loudly.
      b.onResolve({ filter: /.*/ }, args => NODE_BUILTINS.has(args.path)
        ? { errors: [{ text: `${args.importer} imports the Node built-in ${args.path}` }] }
        : undefined)
    }
  }
  const result = await build({
    entryPoints: { entry: 'cell-browser-entry' },
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    splitting: true,
    outdir: join(root, 'out-virtual'),
    target: 'es2022',
    logLevel: 'silent',
    plugins: [plugin]
  })
  const out = new Map<string, Uint8Array>()
  for (const f of result.outputFiles) out.set(basename(f.path), f.contents)
  out.set('index.html', new TextEncoder().encode('<!doctype html><link rel="icon" href="data:,"><script type="module" src="entry.js"></script>'))
  return out
}

/** Serves each bundle under /<name>/ from memory on 127.0.0.1. */
async function serve (bundles: Map<string, Map<string, Uint8Array>>): Promise<{ server: Server, base: string }> {
  const server = createServer((req, res) => {
    const [, name = '', file = ''] = (req.url ?? '').split('?')[0].split('/')
    const body = bundles.get(name)?.get(file)
    if (body === undefined) { res.writeHead(404).end(); return }
    res.writeHead(200, { 'content-type': file.endsWith('.html') ? 'text/html' : 'text/javascript', 'cache-control': 'no-store' })
    res.end(body)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no server address')
  return { server, base: `http://127.0.0.1:${address.port}` }
}

async function runInPage (context: BrowserContext, url: string): Promise<ShimReport> {
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', err => pageErrors.push(err.message))
  try {
    await page.goto(url)
    await page.waitForFunction(() => (globalThis as any).__shimReport?.done === true, null, { timeout: 40_000 })
      .catch((err: Error) => { throw new Error(`${err.message}; page errors: ${pageErrors.join(' | ')}`) })
    return await page.evaluate(() => (globalThis as any).__shimReport as ShimReport)
  } finally {
    await page.close()
  }
}

const describeFailures = (r: ShimReport): string =>
  r.failures.map(f => `\n  ✗ ${f.name}\n    ${f.message.split('\n').slice(0, 6).join('\n    ')}`).join('')

describe.skipIf(!HAS_CHROMIUM)('core unit tests in Chromium', () => {
  let dir = ''
  let context: BrowserContext | undefined
  let server: Server | undefined
  afterAll(async () => {
    await context?.close().catch(() => {})
    await new Promise(resolve => server?.close(resolve) ?? resolve(undefined))
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('runs every registered core test in the page with no failures, and the shim can fail', async () => {
    const [core, oneFailure, allFail] = await Promise.all([
      bundle(CORE_TESTS),
      bundle(['test/browser/fixtures/shim-one-failure.fixture.ts']),
      bundle(['test/browser/fixtures/shim-all-fail.fixture.ts'])
    ])
    const served = await serve(new Map([['core', core], ['one', oneFailure], ['all', allFail]]))
    server = served.server
    dir = await mkdtemp(join(tmpdir(), 'cell-core-chromium-'))
    context = await launchChromium(join(dir, 'profile'))
    expect(await context.pages()[0]?.evaluate(() => navigator.userAgent) ?? '').toMatch(/Chrome\//)

    // Self-checks first: a shim that could not fail would make the core run meaningless.
    const one = await runInPage(context, `${served.base}/one/index.html`)
    expect(one.registered, JSON.stringify(one)).toBe(4)
    expect(one.ran).toBe(4)
    expect(one.failures.map(f => f.name)).toEqual(['test/browser/fixtures/shim-one-failure.fixture.ts > shim self-check > fails: arrays differ in one element'])
    expect(one.passed).toBe(3)

    const all = await runInPage(context, `${served.base}/all/index.html`)
    expect(all.registered).toBeGreaterThanOrEqual(30)
    expect(all.ran).toBe(all.registered)
    expect(all.passed, `tests that should have failed but passed (${all.passed})`).toBe(0)
    expect(all.failures).toHaveLength(all.registered)

    const report = await runInPage(context, `${served.base}/core/index.html`)
    console.log(`core in Chromium: ${report.ran} tests from ${CORE_TESTS.length} files ran in ${report.durationMs} ms, ${report.failures.length} failed`)
    for (const file of CORE_TESTS) expect(report.perFile[file], `${file} registered no tests`).toBeGreaterThan(0)
    expect(report.failures, `failures in Chromium:${describeFailures(report)}`).toEqual([])
    expect(report.ran).toBe(report.registered)
    expect(report.passed).toBe(report.registered)
    expect(report.registered).toBeGreaterThanOrEqual(MIN_CORE_TESTS)
  }, 60_000)
})
