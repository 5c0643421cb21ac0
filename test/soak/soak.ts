// `npm run soak -- --minutes 60`: five real `cell up` nodes with default timers, callers joined
// through every node calling continuously, a new release published every 5 minutes. Checks that
// every node sees every release (through a client joining there), that every node stays connected
// to the other four, and that no call fails; prints a summary and exits non-zero on any miss.
// Beside it the stateful example ledger (dir driver, a snapshot every 30 s) takes appends the whole
// time: its leases renew for the whole run, its newest safe snapshot never gets older than three
// periods, and at the end every acknowledged append is in its log.
// The callers' caller grants last 4 minutes, so every run of 5 minutes or more outlives several of
// them: calls keep succeeding only if the clients renew their grants.
// Stops by itself after --minutes (and ends every process it started, also on SIGINT).
import { parseArgs } from 'node:util'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cellRun, startFleet, stopProc, type Proc } from '../integration/processes.ts'
import { stageVersion, CELL } from '../integration/versioned.ts'
import { fleetPeers, seenThrough, tcpAddr } from '../integration/fleet-links.ts'
import { readFile, writeFile } from 'node:fs/promises'
import { stageCell } from '../integration/stage-cell.ts'
import { projectRoot } from '../integration/processes.ts'

/** How long the callers' self-issued caller grants last. */
const CALLER_GRANT_MS = 4 * 60_000

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    nodes: { type: 'string', default: '5' },
    'publish-every': { type: 'string', default: '5' },
    'check-every': { type: 'string', default: '1' }
  }
})
const minutes = Number(values.minutes)
const nodeCount = Number(values.nodes)
const publishEveryMs = Number(values['publish-every']) * 60_000
const checkEveryMs = Number(values['check-every']) * 60_000
if (!(minutes > 0) || !(nodeCount >= 2 && nodeCount <= 16)) throw new Error('usage: soak.ts --minutes N (> 0) --nodes N (2-16)')

const startedMs = Date.now()
const elapsed = (): string => `${((Date.now() - startedMs) / 60_000).toFixed(1)} min`
const say = (line: string): void => { process.stdout.write(`[soak ${elapsed()}] ${line}\n`) }

const root = await mkdtemp(join(tmpdir(), 'cell-soak-'))
const key = await generateAuthority()
const keyPath = join(root, 'authority.key')
await writeAuthorityKey(keyPath, key)
const nodes: Proc[] = []
const callers: Mesh[] = []
const problems: string[] = []
const published: Array<{ version: string, prepared: string }> = []
const calls = { ok: 0, failed: 0, failures: new Map<string, number>() }
const ledger = { acked: [] as number[], failed: 0, failures: new Map<string, number>(), maxSafeAgeMs: 0 }
const LEDGER_SNAPSHOT_MS = 30_000
let minPeers = Infinity
let checks = 0
let stopping = false

async function cleanup (): Promise<void> {
  stopping = true
  await Promise.all(callers.map(async c => await c.stop().catch(() => {})))
  await Promise.all(nodes.map(async p => await stopProc(p)))
  await rm(root, { recursive: true, force: true })
}
process.once('SIGINT', () => { say('SIGINT: stopping'); void cleanup().then(() => process.exit(130)) })

async function publish (n: number): Promise<void> {
  const version = `1.${n}.0`
  const dir = await stageVersion(root, `v${n}`, authorityIdOf(key.publicKey))
  const r = await cellRun(['publish', version, '--dir', dir, '--bootstrap', tcpAddr(nodes[n % nodes.length]), '--key', keyPath, '--wait', '1', '--timeout', '120'], 180_000)
  const prepared = /prepared on (\d+ of \d+) nodes/.exec(r.stdout)?.[1] ?? '?'
  published.push({ version, prepared })
  say(`published ${CELL}@${version}: exit ${r.code}, prepared on ${prepared} nodes`)
  if (r.code !== 0) problems.push(`publish ${version} failed: ${r.stderr.trim().slice(0, 500)}`)
  if (prepared !== `${nodeCount} of ${nodeCount}`) problems.push(`publish ${version}: prepared on ${prepared} nodes\n${r.stdout}`)
}

/** Every node: connected to all others, and a client joining there sees every node and the last release. */
async function check (): Promise<void> {
  checks++
  const ids = nodes.map(p => /cell node (\w+)/.exec(p.stdout())![1]).sort()
  const latest = published.at(-1)?.version
  for (const [i, p] of nodes.entries()) {
    const peers = fleetPeers(p) ?? 0
    minPeers = Math.min(minPeers, peers)
    if (peers !== nodeCount - 1) problems.push(`${elapsed()}: node ${i + 1} has ${peers} fleet peers`)
    const seen = await seenThrough(tcpAddr(p), key, [CELL], nodeCount, 15_000, latest !== undefined ? { [CELL]: latest } : undefined)
    if (seen.nodes.join() !== ids.join()) problems.push(`${elapsed()}: through node ${i + 1} a client sees ${seen.nodes.length} of ${nodeCount} nodes`)
    if (latest !== undefined && seen.releases[CELL] !== latest) problems.push(`${elapsed()}: through node ${i + 1} the release is ${seen.releases[CELL]}, not ${latest}`)
  }
  const safe = callers[0]?.view.safeSnapshots('ledger/0')[0]
  const safeAgeMs = safe !== undefined ? Date.now() - safe.takenMs : Infinity
  ledger.maxSafeAgeMs = Math.max(ledger.maxSafeAgeMs, safeAgeMs)
  if (safeAgeMs > 3 * LEDGER_SNAPSHOT_MS + 30_000) problems.push(`${elapsed()}: the newest safe snapshot of ledger/0 is ${Math.round(safeAgeMs / 1000)} s old`)
  say(`check ${checks}: ledger ${ledger.acked.length} appends acknowledged, newest safe snapshot ${Math.round(safeAgeMs / 1000)} s old`)
  say(`check ${checks}: fleet peers ${nodes.map(p => fleetPeers(p) ?? '?').join('/')}, calls ${calls.ok} ok ${calls.failed} failed, problems ${problems.length}`)
}

async function callLoop (mesh: Mesh): Promise<void> {
  while (!stopping) {
    try {
      await mesh.call(CELL, 'version', null, { timeoutMs: 15_000 })
      calls.ok++
    } catch (err) {
      if (stopping) return
      calls.failed++
      const name = (err as Error).name
      calls.failures.set(name, (calls.failures.get(name) ?? 0) + 1)
      if (calls.failed <= 20) say(`call failed: ${name}: ${(err as Error).message}`)
    }
    // Paced: a steady trickle of calls from every caller, not a benchmark.
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

async function appendLoop (mesh: Mesh): Promise<void> {
  let n = 0
  while (!stopping) {
    const next = ++n
    try {
      await mesh.call('ledger', 'append', { account: 'soak', amount: 1, memo: String(next) }, { timeoutMs: 15_000 })
      ledger.acked.push(next)
    } catch (err) {
      if (stopping) return
      ledger.failed++
      const name = (err as Error).name
      ledger.failures.set(name, (ledger.failures.get(name) ?? 0) + 1)
      if (ledger.failed <= 20) say(`append failed: ${name}: ${(err as Error).message}`)
    }
    await new Promise(resolve => setTimeout(resolve, 500))
  }
}

/** Every acknowledged append, read back page by page. */
async function ledgerMissing (mesh: Mesh): Promise<number[]> {
  const memos = new Set<string>()
  for (let from = 1; ;) {
    const page = await mesh.call<Array<{ seq: number, memo?: string }>>('ledger', 'list', { fromSeq: from, limit: 1000 }, { timeoutMs: 30_000 })
    for (const e of page) memos.add(e.memo ?? '')
    if (page.length < 1000) break
    from = page[page.length - 1].seq + 1
  }
  return ledger.acked.filter(n => !memos.has(String(n)))
}

let exitCode = 1
try {
  say(`starting ${nodeCount} nodes in ${root} for ${minutes} min (default timers)`)
  await startFleet(nodes, root, keyPath, Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`))
  let publishes = 0
  await publish(++publishes)
  for (const p of nodes) {
    // Caller grants of 4 minutes (a client's default is an hour): every run renews them several
    // times under calls, as a service calling for days does (renewed at a quarter of the validity).
    const caller = await createClient({ bootstrap: [tcpAddr(p)], authorityKey: key, keep: 1, grantValidityMs: CALLER_GRANT_MS })
    callers.push(caller)
    // Calls start once the caller's view has a replica: a call before that fails by design (UnknownCellError).
    await waitForReplicas(caller, CELL, { timeoutMs: 60_000 })
  }
  const ledgerDir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
  const toml = join(ledgerDir, 'Cell.toml')
  await writeFile(toml, (await readFile(toml, 'utf8')).replace(/snapshot_every = "[^"]+"/, `snapshot_every = "${LEDGER_SNAPSHOT_MS / 1000}s"`))
  const lr = await cellRun(['publish', '--dir', ledgerDir, '--bootstrap', tcpAddr(nodes[0]), '--key', keyPath, '--wait', '1', '--timeout', '120'], 180_000)
  say(`published ledger: exit ${lr.code}`)
  if (lr.code !== 0) problems.push(`publish ledger failed: ${lr.stderr.trim().slice(0, 500)}`)
  await waitForReplicas(callers[0], 'ledger', { timeoutMs: 60_000 })
  const loops = [...callers.map(c => callLoop(c)), appendLoop(callers[0])]
  const endMs = startedMs + minutes * 60_000
  let nextPublish = Date.now() + publishEveryMs
  let nextCheck = Date.now() + Math.min(checkEveryMs, 30_000)
  while (Date.now() < endMs) {
    await new Promise(resolve => setTimeout(resolve, Math.max(0, Math.min(nextPublish, nextCheck, endMs) - Date.now())))
    if (Date.now() >= nextPublish && Date.now() < endMs) {
      await publish(++publishes)
      nextPublish += publishEveryMs
    }
    if (Date.now() >= nextCheck) {
      await check()
      nextCheck = Date.now() + checkEveryMs
    }
  }
  await check()
  stopping = true
  await Promise.all(loops)
  const missing = await ledgerMissing(callers[1] ?? callers[0]).catch((err: Error) => { problems.push(`reading the ledger back: ${err.name}: ${err.message}`); return [] as number[] })
  if (missing.length > 0) problems.push(`ledger: ${missing.length} acknowledged appends missing (${missing.slice(0, 10).join(', ')}…)`)
  if (ledger.failed > 0) problems.push(`ledger: ${ledger.failed} appends failed (${[...ledger.failures].map(([n, c]) => `${n} ×${c}`).join(', ')})`)
  const joins = nodes.map(p => (p.stdout().match(/^peer joined /gm) ?? []).length)
  const leaves = nodes.map(p => (p.stdout().match(/^peer left /gm) ?? []).length)
  process.stdout.write([
    '',
    `soak summary: ${minutes} min, ${nodeCount} nodes, default timers`,
    `  releases published: ${published.map(p => `${p.version} (prepared on ${p.prepared})`).join(', ')}`,
    `  calls: ${calls.ok} ok, ${calls.failed} failed${calls.failures.size > 0 ? ` (${[...calls.failures].map(([n, c]) => `${n} ×${c}`).join(', ')})` : ''}`,
    `  checks: ${checks}, fewest fleet peers seen on any node: ${minPeers}`,
    `  ledger: ${ledger.acked.length} appends acknowledged, ${missing.length} missing, ${ledger.failed} failed; oldest newest-safe-snapshot seen: ${Math.round(ledger.maxSafeAgeMs / 1000)} s`,
    `  peer joins per node: ${joins.join('/')}, leaves per node: ${leaves.join('/')}`,
    `  problems: ${problems.length}`,
    ...problems.slice(0, 30).map(p => `    - ${p}`),
    ''
  ].join('\n'))
  exitCode = problems.length === 0 && calls.failed === 0 ? 0 : 1
} catch (err) {
  process.stderr.write(`soak aborted: ${(err as Error).stack ?? String(err)}\n`)
  for (const [i, p] of nodes.entries()) process.stderr.write(`--- node ${i + 1} stderr tail ---\n${p.stderr().slice(-2000)}\n`)
} finally {
  await cleanup()
}
process.exit(exitCode)
