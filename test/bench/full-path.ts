// The full call path for `npm run bench`: this process is the caller (a client mesh, as a user's
// script is), one `cell up` process is the full node, and it runs one replica of examples/billing
// in bubblewrap. Each call is caller → synapse (TCP + Noise + yamux on 127.0.0.1) → full node →
// capsid Unix socket → sandboxed replica → back. Figures: calls/s, p50 and p99 at a number of calls
// in flight.
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { findBwrap, probeBwrap, sampleProcessTree } from '../../node-host/capsid/index.ts'
import { cell, stopProc, projectRoot, fleetLogs, type Proc } from '../integration/processes.ts'
import { stageCell } from '../integration/stage-cell.ts'

export interface LatencyFigure {
  name: string
  inFlight: number
  ops: number
  ms: number
  perSec: number
  /** Calls answered with the expected quote. */
  confirmed: number
  p50Ms: number
  p99Ms: number
  /** CPU time per call (µs) of the caller (this process), the full node process and the replica's process tree. */
  cpuUsPerCall: { caller: number, node: number, replica: number }
}

export const FULL_PATH_TOPOLOGY = 'caller = this process (client mesh), 1 full node (`cell up --sandbox bwrap --webtransport off` process, its default Node flags), 1 billing replica in bubblewrap; TCP + Noise + yamux on 127.0.0.1'

/** Why the full path cannot run here, or undefined when it can. */
export function fullPathSkipReason (): string | undefined {
  const bwrap = findBwrap()
  if (bwrap === undefined) return 'no bwrap (bubblewrap) on PATH'
  const broken = probeBwrap(bwrap)
  if (broken !== undefined) return `bubblewrap does not work here: ${broken}`
  return undefined
}

export interface FullPath {
  mesh: Mesh
  node: Proc
  stop: () => Promise<void>
}

/**
 * CPU the node process uses with no calls (heartbeats, gossip, the replica usage sampler), in % of
 * one core: the figures' "node CPU per call" include this background, spread over the calls.
 */
export async function nodeIdleCpuPercent (pid: number, ms: number): Promise<number> {
  const t0 = processTicks(pid)
  const start = performance.now()
  await new Promise(resolve => setTimeout(resolve, ms))
  return (processTicks(pid) - t0) * TICK_US / 1000 / (performance.now() - start) * 100
}

/**
 * Start the node, publish billing (max_replicas = 1, so the autonomic loop cannot add a second
 * replica under the bench's load) and wait until the caller sees the replica ready.
 * BENCH_NODE_PROF=dir writes a V8 CPU profile of the full node there (on its graceful stop).
 */
export async function startFullPath (): Promise<FullPath> {
  const root = await mkdtemp(join(tmpdir(), 'cell-bench-'))
  const nodes: Proc[] = []
  let mesh: Mesh | undefined
  const stop = async (): Promise<void> => {
    await mesh?.stop().catch(() => {})
    await Promise.all(nodes.map(async p => await stopProc(p, 10_000)))
    await rm(root, { recursive: true, force: true })
  }
  try {
    const key = await generateAuthority()
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    // BENCH_NODE_OPTIONS: extra Node flags for the node (experiments, e.g. its semi-space size).
    const prof = process.env.BENCH_NODE_PROF
    const nodeOptions = [...(prof !== undefined ? [`--cpu-prof --cpu-prof-dir=${prof}`] : []), ...(process.env.BENCH_NODE_OPTIONS !== undefined ? [process.env.BENCH_NODE_OPTIONS] : [])]
    const env: Record<string, string> = nodeOptions.length > 0 ? { NODE_OPTIONS: nodeOptions.join(' ') } : {}
    const node = cell(['up', '--data', join(root, 'node'), '--authority', keyPath, '--sandbox', 'bwrap', '--webtransport', 'off'], env)
    nodes.push(node)
    const bootstrap = (await node.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 60_000))[1]
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/^max_replicas = \d+$/m, 'max_replicas = 1'))
    mesh = await createClient({ bootstrap: [bootstrap], authorityKey: key, listen: true })
    await new Publisher(mesh).publish(dir, '1.0.0', key, { waitReplicas: 1, timeoutMs: 60_000 })
    await waitForReplicas(mesh, 'billing', { timeoutMs: 30_000 })
    return { mesh, node, stop }
  } catch (err) {
    const logs = fleetLogs(nodes)
    await stop()
    throw new Error(`full path did not start: ${(err as Error).message}\n${logs}`, { cause: err })
  }
}

function percentile (sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

/** At most this many latencies are kept per figure (later ones overwrite at random: a fair sample). */
const MAX_SAMPLES = 1 << 20

const TICK_US = 1e6 / 100

/** utime + stime of one process, in clock ticks. */
function processTicks (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

/** CPU ticks so far of the node process alone and of the rest of its tree (the replica, its sandbox). */
async function nodeTicks (pid: number): Promise<{ node: number, replica: number }> {
  const node = processTicks(pid)
  const tree = await sampleProcessTree(pid)
  return { node, replica: tree.cpuTicks - node }
}

/** `quote` at `inFlight` concurrent calls, for `durationMs` or (quick) `count` calls. */
export async function fullPathCalls (mesh: Mesh, nodePid: number, inFlight: number, o: { quick: boolean, durationMs: number }, count: number): Promise<LatencyFigure> {
  const samples = new Float64Array(MAX_SAMPLES)
  let kept = 0
  const start = performance.now()
  const end = start + o.durationMs
  let issued = 0
  let answered = 0
  const request = { amount: 100, currency: 'EUR' }
  const ticks0 = await nodeTicks(nodePid)
  const cpu0 = process.cpuUsage()
  const worker = async (): Promise<void> => {
    while (o.quick ? issued < count : performance.now() < end) {
      issued++
      const t0 = performance.now()
      const q = await mesh.call<{ total: number }>('billing', 'quote', request, { timeoutMs: 30_000 })
      const t = performance.now() - t0
      if (kept < MAX_SAMPLES) samples[kept++] = t
      else samples[Math.floor(Math.random() * MAX_SAMPLES)] = t
      if (q.total === 103.2) answered++
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const ms = performance.now() - start
  const cpu = process.cpuUsage(cpu0)
  const ticks = await nodeTicks(nodePid)
  const cpuUsPerCall = { caller: (cpu.user + cpu.system) / issued, node: (ticks.node - ticks0.node) * TICK_US / issued, replica: (ticks.replica - ticks0.replica) * TICK_US / issued }
  const sorted = samples.subarray(0, kept).sort()
  return { name: `full path, ${inFlight} in flight`, inFlight, ops: issued, ms, perSec: issued / (ms / 1000), confirmed: answered, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99), cpuUsPerCall }
}
