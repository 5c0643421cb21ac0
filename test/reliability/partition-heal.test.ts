// Issue 14 point 1, PARTITION-HEAL: five `cell up` nodes in network namespaces on one bridge run
// billing (min 2, max 3 replicas). The test cuts 2 | 3 so that each side holds one replica, keeps
// calling from the majority side, and reads every node's own view from its metrics (inside its
// namespace, so the cut does not hide it) twice a second. The majority side replaces the replica it
// lost; the minority side, seeing 2 of the 5 nodes it knew, starts none (else the healed fleet would
// run 4). Then the links go back: every node's view digest is equal within 30 s, no node ever saw
// more than max_replicas ready, and the majority's calls kept succeeding.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cellRun, fleetLogs, projectRoot } from '../integration/processes.ts'
import { stageCell } from '../integration/stage-cell.ts'
import { NetnsFleet, metricValue } from '../integration/netns-fleet.ts'

const MAX = 3

describe.skipIf(process.env.CELL_PARTITION === '0' || process.getuid?.() !== 0)('PARTITION-HEAL: a 2 | 3 cut of five nodes and its heal', () => {
  let root = ''
  let key: AuthorityKey
  const fleet = new NetnsFleet({ tag: 'ph', octet: 234, count: 5 })
  const { nodes, ids } = fleet
  let client: Mesh | undefined

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-heal-'))
    key = await generateAuthority()
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    fleet.create()
    await fleet.start(i => ['--data', join(root, `n${i}`), '--authority', keyPath, '--drain-grace', '1s'], { DEBUG: 'cell:*:error,cell:autonomic' })
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/min_replicas = \d+/, 'min_replicas = 2').replace(/max_replicas = \d+/, `max_replicas = ${MAX}`))
    const r = await cellRun(['publish', '--dir', dir, '--bootstrap', fleet.addresses[0], '--key', keyPath, '--timeout', '90'], 120_000)
    expect(r.code, `${r.stdout}\n${r.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    client = await createClient({ bootstrap: fleet.addresses, authorityKey: key })
  }, 240_000)

  afterAll(async () => {
    await client?.stop()
    await fleet.stop()
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 120_000)

  it('keeps the majority serving, never runs more than max_replicas, and agrees on one view within 30 s of the heal', async () => {
    const c = client!
    const ready = (): Array<{ nodeId: string }> => c.view.liveInstances('billing').filter(i => i.state === 'ready')
    await waitForView(c, () => { const r = ready(); return r.length >= 2 ? r : undefined }, 'two ready billing replicas', { timeoutMs: 90_000 })

    // Every node's own view, sampled twice a second from its metrics: the most billing replicas any
    // node saw ready, and the view digests of the last sample.
    let maxSeen = 0
    let maxSeenBy = ''
    let maxSeenAt = 0
    let digests: Array<number | undefined> = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const texts = await Promise.all(nodes.map(async (_p, i) => await fleet.metrics(i).catch(() => '')))
        digests = texts.map(t => metricValue(t, 'cell_fleet_view_digest'))
        for (const [i, t] of texts.entries()) {
          const n = metricValue(t, 'cell_fleet_ready_replicas', 'cell="billing"') ?? 0
          if (n > maxSeen) { maxSeen = n; maxSeenBy = `node ${i + 1}`; maxSeenAt = Date.now() }
        }
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    })()
    // Calls from the majority side (the test's client is there) for the whole test.
    const calls = { ok: 0, failed: 0, errors: new Map<string, number>() }
    let calling = true
    const caller = (async () => {
      while (calling) {
        try {
          await c.call('billing', 'quote', { amount: 5 }, { timeoutMs: 10_000 })
          calls.ok++
        } catch (err) {
          calls.failed++
          const name = (err as Error).name
          calls.errors.set(name, (calls.errors.get(name) ?? 0) + 1)
        }
      }
    })()

    // One replica on the minority side: a replica's node and one node without a replica, chosen from
    // the view of the moment of the cut (the calls may have scaled billing up to 3 meanwhile). A
    // minority holding more than max - min replicas would bring the healed fleet over the cap while
    // the majority refills to min (availability before the cap, see docs/reliability.md).
    const replicaNodes = ready().map(r => ids.indexOf(r.nodeId))
    const minority = [replicaNodes[0], [0, 1, 2, 3, 4].find(i => !replicaNodes.includes(i))!]
    const majority = [0, 1, 2, 3, 4].filter(i => !minority.includes(i))
    try {
      fleet.cut(minority)
      const cutAt = Date.now()
      // The majority replaces the replica it cannot see any more.
      await waitForView(c, () => { const r = ready().filter(i => majority.includes(ids.indexOf(i.nodeId))); return r.length >= 2 ? true : undefined }, 'two ready replicas on the majority side', { timeoutMs: 90_000 })
        .catch((err) => { throw new Error(`${(err as Error).message}\n${fleetLogs(nodes, 2000)}`) })
      const replacedMs = Date.now() - cutAt
      // The cut lasts long enough for the minority to have started a replica of its own if it would:
      // it sees the majority's nodes expire as fast as the majority sees its ones go.
      await waitForView(c, () => Date.now() - cutAt >= Math.max(25_000, 3 * replacedMs) ? true : undefined, 'the rest of the cut', { timeoutMs: 120_000 })
      fleet.heal()
      const healAt = Date.now()
      const deadline = healAt + 30_000
      let agreedMs: number | undefined
      while (Date.now() < deadline) {
        const d = digests
        if (d.length === 5 && d[0] !== undefined && d.every(x => x === d[0])) { agreedMs = Date.now() - healAt; break }
        await new Promise(resolve => setTimeout(resolve, 250))
      }
      calling = false
      await caller
      process.stdout.write(`partition-heal: minority nodes ${minority.map(i => i + 1).join(', ')}; the majority had 2 ready replicas ${replacedMs} ms after the cut; views agreed ${agreedMs ?? '>30000'} ms after the heal; most ready replicas any node saw: ${maxSeen} (${maxSeenBy}, ${((maxSeenAt - healAt) / 1000).toFixed(1)} s from the heal); majority calls ${calls.ok} ok, ${calls.failed} failed ${JSON.stringify(Object.fromEntries(calls.errors))}\n`)
      expect(agreedMs, `digests ${digests.join(', ')}\n${fleetLogs(nodes, 1500)}`).toBeDefined()
      expect(maxSeen, `${maxSeenBy} saw ${maxSeen} ready ${maxSeenAt - healAt} ms from the heal\n${fleetLogs(nodes, 8000)}`).toBeLessThanOrEqual(MAX)
      expect(calls.ok).toBeGreaterThan(0)
      expect(calls.failed / (calls.ok + calls.failed)).toBeLessThanOrEqual(0.01)
    } finally {
      calling = false
      sampling = false
      await caller
      await sampler
    }
  }, 300_000)
})
