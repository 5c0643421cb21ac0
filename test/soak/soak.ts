// `npm run soak -- --minutes 60`: five real `cell up` nodes with default timers, callers joined
// through every node calling continuously, a new release published every 5 minutes. Checks that
// every node sees every release (through a client joining there), that every node stays connected
// to the other four, and that no call fails; prints a summary and exits non-zero on any miss.
// Beside it the stateful example ledger (dir driver, a snapshot every 30 s) takes appends the whole
// time: its leases renew for the whole run, its newest safe snapshot never gets older than three
// periods, and at the end every acknowledged append is in its log.
// The callers' caller grants last 4 minutes, so every run of 5 minutes or more outlives several of
// them: calls keep succeeding only if the clients renew their grants.
// Every --restart-every minutes (default 10, 0 = never) one node in turn is stopped with SIGTERM and
// started again on its data dir, as an operator's rolling upgrade does: no call to the stateless cell
// may fail meanwhile (its replicas drain to the others), the node must stop with exit 0 and be back
// in the whole fleet within a minute, and the ledger may refuse appends only while the restart of
// the node that owned its claim moves the claim (counted and printed; an acknowledged append must
// still never go missing).
// Each node's resident memory is read from /proc at every check: the summary prints it per node
// (from the first check after warm-up to the last of each run of the process), and a node whose
// memory grew by more than --max-growth MiB (default 100) within one run of its process is a problem.
// --dissemination per-cell runs the fleet, its callers and the clients that check it in per-cell
// mode (compact member records, a failure detector, each cell's replicas on its own topic) instead
// of the default, every node's heartbeat to every node.
// --voter-replace-after D passes `cell up --voter-replace-after D` to every node, and --down-for S
// keeps a restarted node down S seconds (at most 50: the fleet must be whole within a minute): with
// a few seconds of each, a restart of a voter of the ledger's claim moves the claim to new voters
// (the summary counts the moves from the owners' metrics).
// Every 2 s the soak reads each node's cell_claim_voters: no disk fills and no process wedges here,
// so a voter its owner counts silent (in the fleet, not answering the claim's rounds) is a false
// verdict, and a problem (a restarted voter is gone while down, and live again on its return).
// --logs DIR keeps every node's output (stdout and stderr of each run of its process, the last
// 128-256 kB of each) in DIR, which the soak does not remove.
// Stops by itself after --minutes (and ends every process it started, also on SIGINT).
import { parseArgs } from 'node:util'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cell, cellRun, startFleet, stopProc, type Proc } from '../integration/processes.ts'
import { stageVersion, CELL } from '../integration/versioned.ts'
import { fleetPeers, seenThrough, tcpAddr, until } from '../integration/fleet-links.ts'
import { readFile, writeFile } from 'node:fs/promises'
import { stageCell } from '../integration/stage-cell.ts'
import { projectRoot } from '../integration/processes.ts'
import { DISSEMINATIONS } from '../../node-host/cli/node-config.ts'

/** How long the callers' self-issued caller grants last. */
const CALLER_GRANT_MS = 4 * 60_000

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    nodes: { type: 'string', default: '5' },
    'publish-every': { type: 'string', default: '5' },
    'check-every': { type: 'string', default: '1' },
    'restart-every': { type: 'string', default: '10' },
    'max-growth': { type: 'string', default: '100' },
    dissemination: { type: 'string', default: 'fleet' },
    'voter-replace-after': { type: 'string' },
    'down-for': { type: 'string', default: '0' },
    logs: { type: 'string' }
  }
})
/** Seconds a restarted node stays down before it starts again (an outage, not only a quick upgrade). */
const downForMs = Number(values['down-for']) * 1000
/** `cell up --voter-replace-after` for every node: short, a rolling restart's node is replaced as a voter of the ledger's claim while it is down. */
const upExtra = values['voter-replace-after'] !== undefined ? ['--voter-replace-after', values['voter-replace-after']] : []
const minutes = Number(values.minutes)
const nodeCount = Number(values.nodes)
const publishEveryMs = Number(values['publish-every']) * 60_000
const checkEveryMs = Number(values['check-every']) * 60_000
const restartEveryMs = Number(values['restart-every']) * 60_000
const maxGrowthBytes = Number(values['max-growth']) * 1024 * 1024
const dissemination = values.dissemination
if (!(minutes > 0) || !(nodeCount >= 2 && nodeCount <= 16) || !(restartEveryMs >= 0) || !(downForMs >= 0 && downForMs <= 50_000) || !(maxGrowthBytes > 0) || !(DISSEMINATIONS as readonly string[]).includes(dissemination)) {
  throw new Error(`usage: soak.ts --minutes N (> 0) --nodes N (2-16) --restart-every MIN (0 = never) --down-for S (0-50) --max-growth MiB --dissemination ${DISSEMINATIONS.join('|')} --voter-replace-after D`)
}
// Every `cell` process the soak starts and every client it creates read the mode from here.
process.env.CELL_DISSEMINATION = dissemination
// A stopped node whose process something still holds names what and where it was made (node-host/cli/open-handles.ts).
process.env.CELL_TRACE_HANDLES = '1'
/** Memory readings before this much of a process's life are its warm-up, not a trend. */
const WARM_UP_MS = 3 * 60_000

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
/** Looks at the nodes' cell_claim_voters (every VOTER_WATCH_MS), and the silent voters seen: none should be. */
const VOTER_WATCH_MS = 2_000
const voterWatch = { looks: 0, goneSeen: 0, silent: [] as string[] }
let checks = 0
let stopping = false
/**
 * Per node and per run of its process: resident memory at the first check after warm-up, the last,
 * and the most; and the V8 heap in use and the memory outside it (Buffers) at the same two checks,
 * from the node's /metrics, so a growth can be told apart: JavaScript objects, or native memory.
 */
interface MemoryRun { node: number, startedMs: number, firstBytes?: number, lastBytes?: number, maxBytes: number, first?: HeapFigures, last?: HeapFigures }
interface HeapFigures { heapUsed: number, external: number }
const memory: MemoryRun[] = []
const restarts: Array<{ node: number, stopMs: number, backMs: number, ledgerOwner: boolean }> = []
/** Each node's peer id, from its first start (a restart on the same data dir keeps it). */
const nodeIds: string[] = []
/** Windows of restarts of the ledger's owner (from SIGTERM until the fleet is whole again plus 30 s), in which the ledger may refuse appends. */
const restartWindows: Array<{ fromMs: number, toMs: number }> = []
const ledgerDuringRestarts = new Map<string, number>()
const inRestartWindow = (ms: number): boolean => restartWindows.some(w => ms >= w.fromMs && ms <= w.toMs)

/** VmRSS of a live process in bytes, from /proc (undefined once it is gone). */
async function residentBytes (pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]
  return kb !== undefined ? Number(kb) * 1024 : undefined
}

/** The node's own /metrics text (from the URL it printed at start): undefined before it printed one, '' when it cannot be read. */
async function metricsText (p: Proc): Promise<string | undefined> {
  const url = /metrics (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(p.stdout())?.[1]
  if (url === undefined) return undefined
  return await fetch(url, { signal: AbortSignal.timeout(5_000) }).then(async r => await r.text()).catch(() => '')
}

/** nodejs_heap_size_used_bytes and nodejs_external_memory_bytes from the node's own /metrics. */
async function heapFigures (p: Proc): Promise<HeapFigures | undefined> {
  const text = await metricsText(p)
  if (text === undefined) return undefined
  const figure = (name: string): number | undefined => { const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text); return m !== null ? Number(m[1]) : undefined }
  const heapUsed = figure('nodejs_heap_size_used_bytes')
  const external = figure('nodejs_external_memory_bytes')
  return heapUsed !== undefined && external !== undefined ? { heapUsed, external } : undefined
}

/** Claim moves (voters replaced) each run of each node's process counted, by `node:run start`: from cell_storage_claim_events_total. */
const voterMoves = new Map<string, number>()

async function sampleVoterMoves (): Promise<void> {
  for (const [i, p] of nodes.entries()) {
    const m = /^cell_storage_claim_events_total\{event="voterMoves"\} (\S+)$/m.exec(await metricsText(p) ?? '')
    if (m !== null) voterMoves.set(`${i}:${memory.findLast(r => r.node === i)?.startedMs ?? 0}`, Number(m[1]))
  }
}

/** Every VOTER_WATCH_MS until the end: each node's voters of the claims it owns, gone or silent. */
async function voterWatchLoop (): Promise<void> {
  while (!stopping) {
    voterWatch.looks++
    for (const [i, p] of nodes.entries()) {
      for (const m of (await metricsText(p) ?? '').matchAll(/^cell_claim_voters\{claim="([^"]+)",state="(gone|silent)"\} (\S+)$/gm)) {
        if (Number(m[3]) <= 0) continue
        if (m[2] === 'gone') voterWatch.goneSeen++
        else if (voterWatch.silent.length < 100) voterWatch.silent.push(`${elapsed()}: node ${i + 1} counted ${m[3]} voter(s) of ${m[1]} silent`)
      }
    }
    await new Promise(resolve => setTimeout(resolve, VOTER_WATCH_MS))
  }
}

/** With --logs: a run of node `i`'s process, its output kept in files (`n<i>-<run>.stdout`, `.stderr`). */
async function keepLogs (i: number, p: Proc): Promise<void> {
  if (values.logs === undefined) return
  const run = memory.filter(m => m.node === i).length
  await mkdir(values.logs, { recursive: true })
  await writeFile(join(values.logs, `n${i + 1}-${run}.stdout`), p.stdout())
  await writeFile(join(values.logs, `n${i + 1}-${run}.stderr`), p.stderr())
}

async function sampleMemory (): Promise<void> {
  for (const [i, p] of nodes.entries()) {
    const run = memory.findLast(m => m.node === i)
    const bytes = await residentBytes(p.child.pid)
    if (run === undefined || bytes === undefined) continue
    run.maxBytes = Math.max(run.maxBytes, bytes)
    if (Date.now() - run.startedMs < WARM_UP_MS) continue
    const heap = await heapFigures(p)
    run.firstBytes ??= bytes
    run.lastBytes = bytes
    if (heap !== undefined) {
      run.first ??= heap
      run.last = heap
    }
  }
}
const mib = (bytes: number | undefined): string => bytes === undefined ? '?' : `${Math.round(bytes / 1024 / 1024)}`

async function cleanup (): Promise<void> {
  stopping = true
  await Promise.all(callers.map(async c => await c.stop().catch(() => {})))
  await Promise.all(nodes.map(async p => await stopProc(p)))
  await Promise.all(nodes.map(async (p, i) => { await keepLogs(i, p).catch((err: Error) => { process.stderr.write(`keeping node ${i + 1}'s logs: ${err.message}\n`) }) }))
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
  const ids = [...nodeIds].sort()
  const latest = published.at(-1)?.version
  for (const [i, p] of nodes.entries()) {
    const peers = fleetPeers(p) ?? 0
    minPeers = Math.min(minPeers, peers)
    if (peers !== nodeCount - 1) problems.push(`${elapsed()}: node ${i + 1} has ${peers} fleet peers`)
    try {
      const seen = await seenThrough(tcpAddr(p), key, [CELL], nodeCount, 15_000, latest !== undefined ? { [CELL]: latest } : undefined)
      if (seen.nodes.join() !== ids.join()) problems.push(`${elapsed()}: through node ${i + 1} a client sees ${seen.nodes.length} of ${nodeCount} nodes`)
      if (latest !== undefined && seen.releases[CELL] !== latest) problems.push(`${elapsed()}: through node ${i + 1} the release is ${seen.releases[CELL]}, not ${latest}`)
    } catch (err) {
      problems.push(`${elapsed()}: a client joining through node ${i + 1} failed: ${(err as Error).message.slice(0, 300)}`)
    }
  }
  const safe = callers[0]?.view.safeSnapshots('ledger/0')[0]
  const safeAgeMs = safe !== undefined ? Date.now() - safe.takenMs : Infinity
  ledger.maxSafeAgeMs = Math.max(ledger.maxSafeAgeMs, safeAgeMs)
  if (safeAgeMs > 3 * LEDGER_SNAPSHOT_MS + 30_000) problems.push(`${elapsed()}: the newest safe snapshot of ledger/0 is ${Math.round(safeAgeMs / 1000)} s old`)
  say(`check ${checks}: ledger ${ledger.acked.length} appends acknowledged, newest safe snapshot ${Math.round(safeAgeMs / 1000)} s old`)
  say(`check ${checks}: fleet peers ${nodes.map(p => fleetPeers(p) ?? '?').join('/')}, calls ${calls.ok} ok ${calls.failed} failed, problems ${problems.length}`)
  await sampleMemory()
  if (upExtra.length > 0) await sampleVoterMoves()
  say(`check ${checks}: node memory (MiB RSS) ${nodes.map((_, i) => mib(memory.findLast(m => m.node === i)?.lastBytes ?? memory.findLast(m => m.node === i)?.maxBytes)).join('/')}`)
}

/**
 * A rolling restart's step: SIGTERM node `i` (it drains), start it again on its data dir (same
 * ports, same identity) with another node as bootstrap, and wait until every node counts all
 * others as fleet peers again.
 */
async function restartNode (i: number): Promise<void> {
  const fromMs = Date.now()
  // Only a restart of the node that serves the ledger's claim may make appends fail (the claim moves).
  const ledgerOwner = callers[0]?.view.instances('ledger').find(r => r.state === 'ready' && r.claim !== undefined)?.nodeId
  const window = { fromMs, toMs: Infinity }
  if (ledgerOwner === nodeIds[i]) restartWindows.push(window)
  const old = nodes[i]
  await stopProc(old, 60_000)
  const stoppedMs = Date.now() - fromMs
  const exit = await old.exited
  if (exit.signal === 'SIGKILL') problems.push(`${elapsed()}: node ${i + 1} did not stop within 60 s of SIGTERM; its last lines:\n${old.stdout().split('\n').slice(-12).join('\n')}\n${old.stderr().slice(-1500)}`)
  else if (exit.code !== 0) problems.push(`${elapsed()}: node ${i + 1} exited with ${exit.code ?? exit.signal} on SIGTERM: ${old.stderr().slice(-500)}`)
  await keepLogs(i, old).catch((err: Error) => { problems.push(`keeping node ${i + 1}'s logs: ${err.message}`) })
  const held = /cell: stopped, but the process was still held[\s\S]*?exiting anyway\)/.exec(old.stderr())
  if (held !== null) problems.push(`${elapsed()}: node ${i + 1} said it stopped but its process lived on: ${held[0]}`)
  // An outage of --down-for seconds (fault injection, not synchronisation: nothing waits on it).
  if (downForMs > 0) await new Promise(resolve => setTimeout(resolve, downForMs))
  const bootstrap = tcpAddr(nodes[(i + 1) % nodes.length])
  const p = cell(['up', '--data', join(root, `n${i + 1}`), '--authority', keyPath, ...upExtra, '--bootstrap', bootstrap])
  nodes[i] = p
  memory.push({ node: i, startedMs: Date.now(), maxBytes: 0 })
  try {
    await p.waitFor(/listening \/ip4/, 60_000)
    await until(() => nodes.every(n => fleetPeers(n) === nodeCount - 1), () => `fleet peers ${nodes.map(n => fleetPeers(n) ?? '?').join('/')}`, 60_000, 250)
  } catch (err) {
    problems.push(`${elapsed()}: node ${i + 1} restarted but the fleet is not whole: ${(err as Error).message}`)
  }
  const backMs = Date.now() - fromMs
  window.toMs = Date.now() + 30_000
  restarts.push({ node: i, stopMs: stoppedMs, backMs, ledgerOwner: ledgerOwner === nodeIds[i] })
  // A slow stop names its steps (`stopping: replicas stopped (31.2 s)` …), so the soak says where the time went.
  const steps = stoppedMs > 3_000 ? old.stdout().split('\n').filter(l => l.startsWith('stopping: ')).map(l => l.slice('stopping: '.length)) : []
  say(`restarted node ${i + 1}${ledgerOwner === nodeIds[i] ? ' (the ledger\'s owner)' : ''}: stopped in ${(stoppedMs / 1000).toFixed(1)} s${steps.length > 0 ? ` (${steps.join(', ')})` : ''}, whole fleet again ${(backMs / 1000).toFixed(1)} s after SIGTERM`)
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
      const name = (err as Error).name
      if (inRestartWindow(Date.now())) {
        ledgerDuringRestarts.set(name, (ledgerDuringRestarts.get(name) ?? 0) + 1)
      } else {
        ledger.failed++
        ledger.failures.set(name, (ledger.failures.get(name) ?? 0) + 1)
        if (ledger.failed <= 20) say(`append failed: ${name}: ${(err as Error).message}`)
      }
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
  say(`starting ${nodeCount} nodes in ${root} for ${minutes} min (default timers, dissemination ${dissemination})`)
  await startFleet(nodes, root, keyPath, Array.from({ length: nodeCount }, (_, i) => `n${i + 1}`), upExtra)
  for (const i of nodes.keys()) memory.push({ node: i, startedMs: Date.now(), maxBytes: 0 })
  for (const p of nodes) nodeIds.push((await p.waitFor(/cell node (\w+)/, 30_000))[1])
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
  const loops = [...callers.map(c => callLoop(c)), appendLoop(callers[0]), voterWatchLoop()]
  const endMs = startedMs + minutes * 60_000
  let nextPublish = Date.now() + publishEveryMs
  let nextCheck = Date.now() + Math.min(checkEveryMs, 30_000)
  let nextRestart = restartEveryMs > 0 ? Date.now() + restartEveryMs : Infinity
  let restartTurn = 0
  while (Date.now() < endMs) {
    await new Promise(resolve => setTimeout(resolve, Math.max(0, Math.min(nextPublish, nextCheck, nextRestart, endMs) - Date.now())))
    if (Date.now() >= nextPublish && Date.now() < endMs) {
      await publish(++publishes)
      nextPublish += publishEveryMs
    }
    if (Date.now() >= nextRestart) {
      // No restart in the last minute: the fleet must be whole for the final check.
      if (Date.now() < endMs - 60_000) await restartNode(restartTurn++ % nodes.length)
      nextRestart = Date.now() + restartEveryMs < endMs - 60_000 ? Date.now() + restartEveryMs : Infinity
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
  if (voterWatch.silent.length > 0) problems.push(`voters counted silent (nothing here stops a voter from voting while it is in the fleet): ${voterWatch.silent.length} sighting(s), first ${voterWatch.silent.slice(0, 5).join('; ')}`)
  if (ledger.failed > 0) problems.push(`ledger: ${ledger.failed} appends failed (${[...ledger.failures].map(([n, c]) => `${n} ×${c}`).join(', ')})`)
  const joins = nodes.map(p => (p.stdout().match(/^peer joined /gm) ?? []).length)
  const leaves = nodes.map(p => (p.stdout().match(/^peer left /gm) ?? []).length)
  for (const run of memory) {
    if (run.firstBytes !== undefined && run.lastBytes !== undefined && run.lastBytes - run.firstBytes > maxGrowthBytes) {
      problems.push(`node ${run.node + 1}: resident memory grew from ${mib(run.firstBytes)} to ${mib(run.lastBytes)} MiB within one run of its process (more than ${values['max-growth']} MiB)`)
    }
  }
  const memoryLines = memory.map(run => `    node ${run.node + 1} (from ${((run.startedMs - startedMs) / 60_000).toFixed(1)} min): ${run.firstBytes === undefined ? 'no reading after its warm-up (too short a run to judge)' : `${mib(run.firstBytes)} → ${mib(run.lastBytes)} MiB after warm-up`}, at most ${mib(run.maxBytes)}` +
    (run.first !== undefined && run.last !== undefined ? `; V8 heap in use ${mib(run.first.heapUsed)} → ${mib(run.last.heapUsed)}, outside it ${mib(run.first.external)} → ${mib(run.last.external)} MiB` : ''))
  process.stdout.write([
    '',
    `soak summary: ${minutes} min, ${nodeCount} nodes, default timers, dissemination ${dissemination}`,
    `  releases published: ${published.map(p => `${p.version} (prepared on ${p.prepared})`).join(', ')}`,
    `  calls: ${calls.ok} ok, ${calls.failed} failed${calls.failures.size > 0 ? ` (${[...calls.failures].map(([n, c]) => `${n} ×${c}`).join(', ')})` : ''}`,
    `  checks: ${checks}, fewest fleet peers seen on any node: ${minPeers}`,
    `  ledger: ${ledger.acked.length} appends acknowledged, ${missing.length} missing, ${ledger.failed} failed; oldest newest-safe-snapshot seen: ${Math.round(ledger.maxSafeAgeMs / 1000)} s`,
    `  peer joins per node (this run of each process): ${joins.join('/')}, leaves: ${leaves.join('/')}`,
    `  restarts: ${restarts.length}${restarts.length > 0 ? ` (${restarts.map(r => `node ${r.node + 1}${r.ledgerOwner ? ' (ledger owner)' : ''} stopped in ${(r.stopMs / 1000).toFixed(1)} s, fleet whole after ${(r.backMs / 1000).toFixed(1)} s`).join('; ')})` : ''}`,
    `  ledger appends refused while the owner's restart moved the claim: ${[...ledgerDuringRestarts].map(([n, c]) => `${n} ×${c}`).join(', ') || 'none'}`,
    ...(upExtra.length > 0 ? [`  the ledger claim's voters replaced (moves its owners counted by their last check, --voter-replace-after ${values['voter-replace-after']}): at least ${[...voterMoves.values()].reduce((a, b) => a + b, 0)}`] : []),
    `  claim voters (each node's cell_claim_voters every ${VOTER_WATCH_MS / 1000} s, ${voterWatch.looks} looks): seen gone ${voterWatch.goneSeen} time(s), silent ${voterWatch.silent.length} time(s)`,
    ...(values.logs !== undefined ? [`  node logs: ${values.logs}`] : []),
    '  resident memory per node and run of its process:',
    ...memoryLines,
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
