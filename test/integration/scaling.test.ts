// Issue #3 §9 (scaling): five `cell up` processes. A load generator keeps the `burner` replica's CPU
// (sampled from /proc) above cpu_target and the fleet grows the replica count on its own; when the
// load stops, the count falls back to min_replicas after the (shortened) scale-down window.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cellRun, fleetLogs, stopProc, projectRoot, startFleet, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'

describe('scaling on a multi-process fleet', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const nodes: Proc[] = []
  let bootstrap = ''
  let client: Mesh | undefined

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-scale-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    bootstrap = await startFleet(nodes, root, keyPath, ['n1', 'n2', 'n3', 'n4', 'n5'], ['--scale-down-window', '10s'])
  }, 120_000)

  afterAll(async () => {
    await client?.stop()
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('grows replicas under CPU load and falls back to min_replicas when it stops', async () => {
    const dir = await stageCell(join(projectRoot, 'test', 'integration', 'fixtures', 'burner'), join(root, 'burner'), authorityIdOf(key.publicKey))
    const published = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(published.stderr, fleetLogs(nodes)).toBe('')
    expect(published.code, fleetLogs(nodes)).toBe(0)

    client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    await waitForReplicas(client, 'burner', { timeoutMs: 30_000 })
    const c = client
    const ready = (): number => c.replicas('burner').length

    // Start from exactly one replica (a start-up overshoot drains after the window), so growth below
    // can only come from the load.
    // It must hold for a while (several heartbeats), not just pass through one on its way elsewhere.
    await waitForView(c, () => c.view.liveInstances('burner').length === 1 && ready() === 1 ? true : undefined,
      'a single burner replica, steady for 5 s, before load', { timeoutMs: 90_000, holdMs: 5_000 })

    // Load: 3 callers in a loop, each call 100 ms of CPU, until the fleet has grown (bounded).
    let loading = true
    let calls = 0
    let failures = 0
    const loadDeadline = Date.now() + 120_000
    let peakCpu = 0
    const onChange = (): void => { for (const i of c.view.instances('burner')) peakCpu = Math.max(peakCpu, i.cpuPercent) }
    c.view.addEventListener('change', onChange)
    const worker = async (): Promise<void> => {
      while (loading && Date.now() < loadDeadline) {
        try {
          await c.call('burner', 'burn', { ms: 100 }, { timeoutMs: 10_000 })
          calls++
        } catch {
          failures++
        }
      }
    }
    const workers = [worker(), worker(), worker()]
    const grown = await waitForView(c, () => ready() >= 2 ? ready() : undefined, 'the fleet to add a burner replica under load', { timeoutMs: 120_000 })
      .finally(() => { loading = false })
    await Promise.all(workers)
    c.view.removeEventListener('change', onChange)
    process.stdout.write(`scaling: ${calls} calls, ${failures} failed, grew to ${grown} replicas, peak replica CPU ${peakCpu.toFixed(0)} %\n`)
    expect(grown).toBeGreaterThanOrEqual(2)
    // The growth was driven by measured CPU: some replica reported more than cpu_target (30 %).
    expect(Math.max(...c.view.instances('burner').map(i => i.cpuPercent), peakCpu)).toBeGreaterThan(30)
    expect(calls).toBeGreaterThan(0)
    // Idempotent calls retried elsewhere when a replica was busy starting; none may be lost.
    expect(failures).toBe(0)

    // Load gone: after the 10 s scale-down window the surplus drains to min_replicas = 1.
    const settled = await waitForView(c, () => ready() === 1 && c.view.liveInstances('burner').length === 1 ? 1 : undefined,
      'burner to fall back to one replica', { timeoutMs: 90_000 })
    expect(settled).toBe(1)
  }, 300_000)
})
