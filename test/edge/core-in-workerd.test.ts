// Issue 11 point 5(a): core's own unit test files, unchanged, run inside workerd, the runtime of
// the edge routing node. As for Chromium (test/browser/core-in-chromium.test.ts), each set of test
// files is bundled with esbuild, `vitest` aliased to the in-page stand-in (test/browser/vitest-shim.ts),
// here as a Worker module whose fetch handler runs them and answers the shim's report. The bundles
// are served by the real workerd binary wrangler ships (node_modules/.bin/workerd, no wrangler in
// between), one Worker per bundle, without nodejs_compat: core may use web-platform APIs only. Two
// fixtures bundled the same way show the stand-in fails when a test fails.
import { describe, it, expect, afterAll } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build, type Plugin } from 'esbuild'
import type { ShimReport } from '../browser/vitest-shim.ts'
import { freePort } from './wrangler.ts'

const root = join(import.meta.dirname, '..', '..')
const SHIM = join(root, 'test', 'browser', 'vitest-shim.ts')
const WORKERD = join(root, 'node_modules', '.bin', 'workerd')
/** No newer than the bundled workerd (edge-host/wrangler.toml uses the same). */
const COMPATIBILITY_DATE = '2026-04-20'

// Core's pure unit tests, the same set Chromium runs. Left out, each for a reason that ties it to Node:
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
  'core/mesh/retry.test.ts',
  'core/mesh/host-grant-policy.test.ts',
  'core/mesh/peer-keeper.test.ts',
  'core/mesh/json.test.ts',
  'core/mesh/noise-framing.test.ts',
  'core/mesh/lazy-window-updates.test.ts',
  'core/mesh/coalesced-writes.test.ts',
  'core/biology/rollout-progress.test.ts',
  'core/biology/followers.test.ts',
  'core/fleet/member-records.test.ts',
  'core/fleet/view-members.test.ts',
  'core/fleet/failure-detector.test.ts',
  'core/fleet/per-cell-gossip.test.ts'
]
const MIN_CORE_TESTS = 200

const NODE_BUILTINS = new Set(builtinModules.flatMap(m => [m, `node:${m}`]))

/** One Worker module: importing it registers nothing; its fetch handler loads the files through the shim, runs them and answers the report. */
async function bundle (files: string[]): Promise<string> {
  const entry = [
    `import { runFiles } from ${JSON.stringify(SHIM)}`,
    'let running',
    'export default {',
    '  async fetch () {',
    // Test files run inside the handler: workerd allows no timers, randomness or I/O at global scope.
    '    running ??= runFiles([',
    ...files.map(f => `      [${JSON.stringify(f)}, () => import(${JSON.stringify(join(root, f))})],`),
    '    ])',
    '    return Response.json(await running)',
    '  }',
    '}'
  ].join('\n')
  const plugin: Plugin = {
    name: 'vitest-in-workerd',
    setup (b) {
      b.onResolve({ filter: /^vitest$/ }, () => ({ path: SHIM }))
      b.onResolve({ filter: /^cell-workerd-entry$/ }, () => ({ path: 'entry', namespace: 'cell-entry' }))
      b.onLoad({ filter: /.*/, namespace: 'cell-entry' }, () => ({ contents: entry, loader: 'ts', resolveDir: root }))
      // A Node built-in would be a file core cannot ship to workerd: fail the build loudly.
      b.onResolve({ filter: /.*/ }, args => NODE_BUILTINS.has(args.path)
        ? { errors: [{ text: `${args.importer} imports the Node built-in ${args.path}` }] }
        : undefined)
    }
  }
  const result = await build({
    entryPoints: ['cell-workerd-entry'],
    bundle: true,
    write: false,
    platform: 'browser',
    conditions: ['workerd', 'worker', 'browser'],
    format: 'esm',
    target: 'es2022',
    logLevel: 'silent',
    plugins: [plugin]
  })
  return result.outputFiles[0].text
}

interface Served { proc: ChildProcess, urls: Record<string, string>, output: () => string }

/** Serves each bundle as its own Worker on its own loopback port, in one workerd process. */
async function serve (dir: string, bundles: Record<string, string>): Promise<Served> {
  const names = Object.keys(bundles)
  const ports: Record<string, number> = {}
  for (const name of names) {
    ports[name] = await freePort()
    await writeFile(join(dir, `${name}.js`), bundles[name])
  }
  const config = [
    'using Workerd = import "/workerd/workerd.capnp";',
    'const config :Workerd.Config = (',
    '  services = [',
    names.map(n => `    (name = "${n}", worker = (modules = [(name = "worker.js", esModule = embed "${n}.js")], compatibilityDate = "${COMPATIBILITY_DATE}"))`).join(',\n'),
    '  ],',
    '  sockets = [',
    names.map(n => `    (name = "${n}", address = "127.0.0.1:${ports[n]}", http = (), service = "${n}")`).join(',\n'),
    '  ]',
    ');'
  ].join('\n')
  await writeFile(join(dir, 'config.capnp'), config)
  const proc = spawn(WORKERD, ['serve', join(dir, 'config.capnp')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-32_000) })
  proc.stderr!.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-32_000) })
  const urls = Object.fromEntries(names.map(n => [n, `http://127.0.0.1:${ports[n]}/`]))
  return { proc, urls, output: () => out }
}

/** Fetch the report; workerd may still be binding its sockets, so connection refusals are retried until the deadline. */
async function report (served: Served, name: string, timeoutMs = 120_000): Promise<ShimReport> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (served.proc.exitCode != null) throw new Error(`workerd exited (${served.proc.exitCode}): ${served.output()}`)
    try {
      const res = await fetch(served.urls[name], { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) })
      const text = await res.text()
      if (res.status !== 200) throw new Error(`workerd answered ${res.status}: ${text.slice(0, 2000)}\n${served.output()}`)
      return JSON.parse(text) as ShimReport
    } catch (err) {
      const refused = (err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED'
      if (!refused || Date.now() > deadline) throw err
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

const describeFailures = (r: ShimReport): string =>
  r.failures.map(f => `\n  ✗ ${f.name}\n    ${f.message.split('\n').slice(0, 6).join('\n    ')}`).join('')

describe('core unit tests in workerd', () => {
  let dir = ''
  let served: Served | undefined
  afterAll(async () => {
    if (served !== undefined && served.proc.exitCode == null) {
      served.proc.kill('SIGTERM')
      await new Promise(resolve => served!.proc.once('exit', resolve))
    }
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('runs every registered core test in a Worker with no failures, and the shim can fail', async () => {
    const [core, one, all] = await Promise.all([
      bundle(CORE_TESTS),
      bundle(['test/browser/fixtures/shim-one-failure.fixture.ts']),
      bundle(['test/browser/fixtures/shim-all-fail.fixture.ts'])
    ])
    dir = await mkdtemp(join(tmpdir(), 'cell-core-workerd-'))
    served = await serve(dir, { core, one, all })

    // Self-checks first: a shim that could not fail would make the core run meaningless.
    const oneReport = await report(served, 'one')
    expect(oneReport.registered, JSON.stringify(oneReport)).toBe(4)
    expect(oneReport.ran).toBe(4)
    expect(oneReport.failures.map(f => f.name)).toEqual(['test/browser/fixtures/shim-one-failure.fixture.ts > shim self-check > fails: arrays differ in one element'])
    expect(oneReport.passed).toBe(3)

    const allReport = await report(served, 'all')
    expect(allReport.registered).toBeGreaterThanOrEqual(30)
    expect(allReport.ran).toBe(allReport.registered)
    expect(allReport.passed, `tests that should have failed but passed (${allReport.passed})`).toBe(0)
    expect(allReport.failures).toHaveLength(allReport.registered)

    const coreReport = await report(served, 'core')
    console.log(`core in workerd: ${coreReport.ran} tests from ${CORE_TESTS.length} files ran in ${coreReport.durationMs} ms, ${coreReport.failures.length} failed`)
    for (const file of CORE_TESTS) expect(coreReport.perFile[file], `${file} registered no tests`).toBeGreaterThan(0)
    expect(coreReport.failures, `failures in workerd:${describeFailures(coreReport)}`).toEqual([])
    expect(coreReport.ran).toBe(coreReport.registered)
    expect(coreReport.passed).toBe(coreReport.registered)
    expect(coreReport.registered).toBeGreaterThanOrEqual(MIN_CORE_TESTS)
  }, 180_000)
})
