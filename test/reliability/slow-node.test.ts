// SLOW-NODE (issue 14 point 2). Real part: three `cell up` processes on 127.0.0.1 with the
// `versioned` cell published (2 replicas), a client (createClient: a light peer with its own fleet
// view) calling it back to back. A node holding a replica is frozen with SIGSTOP for 800 ms, then for
// 2 s; each time the fleet must not take it for dead more than once in all (a "false death": the
// client's fleet view expires the node, or a replica is started elsewhere to replace its one while it
// was only paused). Then the node is killed (SIGKILL) and the client's view must drop it within
// 10 s. The p99 of that detection over 20 kills comes from the simulator (slow-node-sim.ts: the same
// FleetView expiry under simulated time), since 20 real fleets take minutes on this machine; it
// also counts false deaths over many paused runs. `npm run reliability` runs CELL_SLOW_NODE_SIM_RUNS
// (1,000) and CELL_SLOW_NODE_REAL_ROUNDS (3 pause pairs).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import type { FleetChange } from '../../core/fleet/view.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { cellRun, fleetLogs, startFleet, stopProc, type Proc } from '../integration/processes.ts'
import { stageVersion, CELL, CallLoop } from '../integration/versioned.ts'
import { tcpAddr } from '../integration/fleet-links.ts'
import { simulateSlowNode, percentile } from './slow-node-sim.ts'

const NODES = ['s1', 's2', 's3']
const SIM_RUNS = Number(process.env.CELL_SLOW_NODE_SIM_RUNS ?? 20)
const REAL_ROUNDS = Number(process.env.CELL_SLOW_NODE_REAL_ROUNDS ?? 1)
const PAUSES_MS = [800, 2_000]
/** How long after a thaw a late death or a replacement still counts. */
const SETTLE_MS = 4_000
const DETECT_LIMIT_MS = 10_000

async function pause (ms: number): Promise<void> {
  // The length of the fault itself (the process is stopped this long), not a synchronisation wait.
  await new Promise(resolve => setTimeout(resolve, ms))
}

describe('SLOW-NODE: real processes', () => {
  let root = ''
  let key: AuthorityKey
  const nodes: Proc[] = []
  let client: Mesh | undefined

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-slow-'))
    key = await generateAuthority()
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    const bootstrap = await startFleet(nodes, root, keyPath, NODES)
    const dir = await stageVersion(root, 'v1', authorityIdOf(key.publicKey))
    const r = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--wait', '2', '--timeout', '60'], 90_000)
    expect(r.code, `${r.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    client = await createClient({ bootstrap: nodes.map(tcpAddr), authorityKey: key })
    await waitForReplicas(client, CELL, { count: 2, timeoutMs: 60_000 })
  }, 180_000)

  afterAll(async () => {
    for (const p of nodes) if (p.child.pid !== undefined) { try { process.kill(p.child.pid, 'SIGCONT') } catch {} }
    await client?.stop()
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it(`frozen for ${PAUSES_MS.join(' ms and ')} ms under calls: at most one false death; killed: noticed within 10 s`, async () => {
    const c = client!
    const ids = nodes.map(p => /cell node (\w+)/.exec(p.stdout())![1])
    // The victim holds a replica and is not the first node (everyone's bootstrap).
    const hosting = new Set(c.replicas(CELL).map(i => i.nodeId))
    const index = [2, 1, 0].find(i => hosting.has(ids[i]))!
    const victim = nodes[index]
    const victimId = ids[index]
    const pid = victim.child.pid!
    const deaths: string[] = []
    let killedAt = Infinity
    let noticedMs: number | undefined
    const onChange = (e: Event): void => {
      const d = (e as CustomEvent<FleetChange>).detail
      if (d.kind === 'node' && d.op === 'expire' && d.nodeId === victimId) {
        if (Date.now() >= killedAt) noticedMs ??= Date.now() - killedAt
        else deaths.push(`view expired the node at ${new Date().toISOString()}`)
      }
    }
    c.view.addEventListener('change', onChange)
    const before = new Set(c.view.instances(CELL).map(i => i.instanceId))
    const loop = new CallLoop(c)
    const pauses: string[] = []
    try {
      for (let round = 0; round < REAL_ROUNDS; round++) {
        for (const ms of PAUSES_MS) {
          const calls = loop.calls
          process.kill(pid, 'SIGSTOP')
          try { await pause(ms) } finally { process.kill(pid, 'SIGCONT') }
          await pause(SETTLE_MS)
          pauses.push(`${ms} ms: ${loop.calls - calls} calls`)
        }
      }
      // Replicas started elsewhere meanwhile replaced the paused node's (a false death the view may not show).
      const replaced = c.view.instances(CELL).filter(i => !before.has(i.instanceId) && i.nodeId !== victimId)
      for (const r of replaced) deaths.push(`replica ${r.instanceId} started on …${r.nodeId.slice(-6)}`)
      // The node is still seen, with its replica.
      expect(c.view.node(victimId), 'paused node missing from the view after its thaw').toBeDefined()

      killedAt = Date.now()
      process.kill(pid, 'SIGKILL')
      const deadline = Date.now() + DETECT_LIMIT_MS + 5_000
      while (noticedMs === undefined && Date.now() < deadline && c.view.node(victimId) !== undefined) await pause(20)
      // nodes() hides a stale record before the next sweep announces it: take whichever came first.
      noticedMs ??= c.view.node(victimId) === undefined ? Date.now() - killedAt : undefined
    } finally {
      c.view.removeEventListener('change', onChange)
      await loop.stop()
    }
    const failed = loop.failures.length
    console.log(`SLOW-NODE real: ${REAL_ROUNDS} round(s) of pauses (${pauses.join(', ')}), ${loop.calls} calls, ${failed} failed` +
      `${failed > 0 ? ` (first: ${loop.failures[0]})` : ''}; false deaths ${deaths.length}${deaths.length > 0 ? ` (${deaths.join('; ')})` : ''}; kill -9 noticed after ${noticedMs} ms`)
    expect(deaths.length, deaths.join('\n')).toBeLessThanOrEqual(1)
    expect(noticedMs, `killed node still in the view after ${DETECT_LIMIT_MS + 5_000} ms`).toBeDefined()
    expect(noticedMs!).toBeLessThan(DETECT_LIMIT_MS)
  }, 180_000)
})

describe('SLOW-NODE: simulator (the fleet view\'s expiry under simulated time)', () => {
  it(`${SIM_RUNS} kills: noticed within 10 s at p99; ${SIM_RUNS} pairs of pauses (800 ms, 2 s): false deaths counted`, async () => {
    const detect: number[] = []
    let falseDeaths = 0
    let runsWithDeath = 0
    let worstRun = 0
    for (let seed = 1; seed <= SIM_RUNS; seed++) {
      const paused = await simulateSlowNode(seed, { pauses: [[5_000, 800], [12_000, 2_000]], durationMs: 20_000 })
      falseDeaths += paused.falseDeaths
      if (paused.falseDeaths > 0) runsWithDeath++
      worstRun = Math.max(worstRun, paused.falseDeaths)
      const killed = await simulateSlowNode(100_000 + seed, { pauses: [], killAtMs: 5_000 + (seed % 10) * 97, durationMs: 5_000 + 30_000 })
      expect(killed.falseDeaths).toBe(0)
      expect(killed.detectMs, `seed ${seed}: kill never noticed`).toBeDefined()
      detect.push(killed.detectMs!)
    }
    const p50 = percentile(detect, 50)
    const p99 = percentile(detect, 99)
    console.log(`SLOW-NODE sim: ${SIM_RUNS} kills noticed after p50 ${p50} ms, p99 ${p99} ms, max ${Math.max(...detect)} ms; ` +
      `${SIM_RUNS} paused runs: ${falseDeaths} false deaths in ${runsWithDeath} runs (${(100 * runsWithDeath / SIM_RUNS).toFixed(1)} %)`)
    expect(p99).toBeLessThan(DETECT_LIMIT_MS)
    // At most one false death in any run of both pauses.
    expect(worstRun).toBeLessThanOrEqual(1)
  }, 120_000)
})
