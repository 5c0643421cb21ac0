// Issue 8 §6: `cell retire` signs a retire record; every replica across the fleet drains, nodes stop
// hosting the cell and say so (status `retired`), and a later publish brings it back. On the old
// code there was no retire record (retireCell / publishRetire did not exist), so this fails at once.
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { retireCell } from '../../node-host/retire.ts'
import { CELL, stageVersion } from './versioned.ts'
import { TestFleet, ticks } from './test-fleet.ts'


function running (nodes: FullNode[]): number {
  return nodes.reduce((n, x) => n + x.replicas.list(CELL).filter(r => r.state === 'starting' || r.state === 'ready').length, 0)
}

describe('cell retire', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('drains every replica on every node, nothing restarts it, and a later publish brings it back', async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-retire-', 3, { authorityKeys: [key], drainGraceMs: 2_000 })
    // Through node 1: node 0 is restarted alone below.
    const operator = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    const publisher = new Publisher(operator)
    const authority = authorityIdOf(key.publicKey)
    const dir = await stageVersion(root, 'v1', authority)
    const first = await publisher.publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    expect(first.ready).toBe(2)
    const hosts = new Set(operator.view.liveInstances(CELL).map(i => i.nodeId))
    expect(hosts.size).toBeGreaterThanOrEqual(1)

    const r = await retireCell(operator, CELL, key, { timeoutMs: 60_000 })
    // (the 2 ready ones, plus any surplus replica still draining when it was retired)
    expect(r.replicas).toBeGreaterThanOrEqual(2)
    for (const h of hosts) expect(r.nodes).toContain(h)
    expect(r.seq).toBeGreaterThan(first.seq)
    // The fleet view is empty of it; so is every node's own replica set, and each says it is retired.
    await waitForView(operator, () => running(nodes) === 0 && nodes.every(n => n.status().retired.some(x => x.cell === CELL && x.authority === authority)) ? true : undefined, 'every node to retire it', { timeoutMs: 30_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(nodes.map(n => n.status()), null, 1)}`) })
    for (const n of nodes) expect(n.loop.lastReasons.get(CELL)?.join(' ')).toMatch(/retired by/)
    // Nothing volunteers for it again (min_replicas 2 would otherwise refill it at once).
    const spawns = nodes.map(n => n.loop.counters.spawns)
    await ticks(operator, nodes, 12)
    expect(nodes.map(n => n.loop.counters.spawns)).toEqual(spawns)
    expect(running(nodes)).toBe(0)

    // The retire record is kept across a restart (fleet intent): node 0, restarted alone (no peer to
    // hear it from), restores the release and still hosts nothing. Without the stored retire record
    // it would start min_replicas 2 at once.
    await nodes[0].stop()
    const alone = await FullNode.create({ dataDir: join(root, 'n0'), bootstrap: [], authorityKeys: [key], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
    await alone.start()
    try {
      await waitForView(alone.mesh, () => alone.releases.releases(CELL).length > 0 && alone.status().retired.some(x => x.cell === CELL) ? true : undefined, 'the restarted node to restore the release and the retire record', { timeoutMs: 30_000 })
        .catch((err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(alone.status(), null, 1)}`) })
      await ticks(alone.mesh, [alone], 12)
      expect(alone.loop.counters.spawns).toBe(0)
      expect(alone.replicas.list(CELL)).toEqual([])
    } finally {
      await alone.stop()
    }
    nodes.shift()

    // A later publish (same artifact, a higher seq) brings it back.
    const again = await publisher.publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    expect(again.seq).toBeGreaterThan(r.seq)
    expect(again.ready).toBe(2)
    await waitForView(operator, () => nodes.every(n => n.status().retired.length === 0) ? true : undefined, 'no node to call it retired', { timeoutMs: 10_000 })
    expect(await operator.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })).toBe('v1')
  }, 180_000)
})
