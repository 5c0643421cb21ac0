// Issue #3 §5: a release whose replicas keep crashing is halted by every node on its own, with the
// reason and metric, and the fleet returns to the previous release — no operator involved.
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { CELL, onlyRunning, stageVersion } from './versioned.ts'
import { TestFleet } from './test-fleet.ts'

describe('a crashing release', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('is halted by every node and the cell returns to the previous release', async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-halt-', 3, { authorityKeys: [key] })
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    const publisher = new Publisher(operator)
    const authority = authorityIdOf(key.publicKey)
    const good = await publisher.publish(await stageVersion(root, 'v1', authority), '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })

    // 1.1.0 throws while its module loads: every replica of it dies at start.
    const badDir = await stageVersion(root, 'v2', authority)
    const file = join(badDir, 'cell.ts')
    await writeFile(file, (await readFile(file, 'utf8')).replace("const VERSION = 'v2'", "const VERSION: string = (() => { throw new Error('1.1.0 cannot start') })()"))
    const bad = await publisher.publish(badDir, '1.1.0', key, { setAuthority: true, waitReplicas: 0 })
    expect(bad.digest).not.toBe(good.digest)

    // Every node halts 1.1.0 on its own, saying why under the halt metric.
    const deadline = Date.now() + 90_000
    await waitForView(operator, () => nodes.every(n => n.loop.halted.has(`${CELL}@1.1.0`)) ? true : undefined, 'every node to halt 1.1.0', { timeoutMs: 90_000 })
      .catch((err) => {
        const state = nodes.map(n => ({ ...n.status(), view: n.mesh.view.instances(CELL).map(i => `${i.version}:${i.state}`) }))
        throw new Error(`${(err as Error).message}: ${JSON.stringify(state, null, 1)}`)
      })
    for (const n of nodes) {
      const halt = n.loop.halted.get(`${CELL}@1.1.0`)!
      expect(halt.metric).toBe('cell_biology_release_halted_total')
      expect(halt.digest).toBe(bad.digest)
      expect(halt.reason).toMatch(/crash/i)
    }
    // …and the fleet runs the previous release again, with nothing of 1.1.0 left running.
    await waitForView(operator, () => onlyRunning(operator, good.digest, 2), 'only 1.0.0 running again', { timeoutMs: Math.max(1, deadline - Date.now()) })
    for (const n of nodes) expect(n.replicas.list(CELL).filter(r => r.state === 'ready' || r.state === 'starting').every(r => r.digest === good.digest)).toBe(true)

    // A node that joins afterwards learns the halt from the others' heartbeats: it never runs 1.1.0.
    // (Its own crash threshold is out of reach, so only the gossiped halt can stop it.)
    const late = await FullNode.create({ dataDir: join(root, 'late'), bootstrap: [nodes[1].addresses()[0]], authorityKeys: [key], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false }, biology: { haltThreshold: 1000 } })
    nodes.push(late)
    await late.start()
    await waitForView(operator, () => late.loop.halted.has(`${CELL}@1.1.0`) ? true : undefined, 'the late node to adopt the halt', { timeoutMs: 60_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(late.status(), null, 1)}`) })
    expect(late.loop.halted.get(`${CELL}@1.1.0`)!.reason).toMatch(/halted by node …\w{8}: \d+ crashes/)
    expect(late.replicas.list(CELL).some(r => r.digest === bad.digest)).toBe(false)
    expect(late.loop.counters.failures).toBe(0)

    // …and it can host the previous release, which it never saw published: the view keeps the last
    // releases of each cell and relays them in snapshots, so the late node learns 1.0.0 and prepares
    // it as the fallback. (Before, the view kept only the newest release, 1.1.0, halted: the late
    // node knew no earlier release and hosted nothing.) With the two nodes other than its bootstrap
    // gone, it must host a replica of 1.0.0 itself.
    expect(late.mesh.view.releases(CELL).map(r => r.version)).toEqual(['1.1.0', '1.0.0'])
    await waitForView(late.mesh, () => late.releases.byDigest(CELL, good.digest) != null ? true : undefined, 'the late node to prepare 1.0.0', { timeoutMs: 30_000 })
    await Promise.all([nodes[0].stop(), nodes[2].stop()])
    await waitForView(late.mesh, () => late.replicas.list(CELL).some(r => r.digest === good.digest && r.state === 'ready') ? true : undefined, 'a ready 1.0.0 replica on the late node', { timeoutMs: 60_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(late.status(), null, 1)}`) })
    expect(late.replicas.list(CELL).some(r => r.digest === bad.digest)).toBe(false)
  }, 300_000)
})
