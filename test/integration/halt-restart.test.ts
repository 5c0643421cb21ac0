// Issue 8.3: a halted release stays halted after every node restarted. Two full nodes halt a 1.1.0
// that crashes at start and return to 1.0.0; both stop and start again on the same data directories
// with a crash threshold out of reach, so only the halts they kept can stop 1.1.0 from running again.
// On the old code the restarted nodes held neither releases nor halts (nothing ran: the wait for
// 1.0.0 times out); with releases kept but not halts they target the newest release, 1.1.0, and its
// replicas crash-loop (the "no 1.1.0 replica" expectation fails).
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { CELL, onlyRunning, stageVersion } from './versioned.ts'
import { TestFleet } from './test-fleet.ts'

describe('a halted release after a restart of every node', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('stays halted, and the cell runs the previous release', async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-halt-restart-', 2, { authorityKeys: [key] })
    const start = async (i: number, biology?: { haltThreshold: number }): Promise<FullNode> =>
      await fleet.node(`n${i}`, i === 0 ? [] : [nodes[0].addresses()[0]], { authorityKeys: [key], ...(biology !== undefined ? { biology } : {}) })
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    const publisher = new Publisher(operator)
    const authority = authorityIdOf(key.publicKey)
    const good = await publisher.publish(await stageVersion(root, 'v1', authority), '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    const badDir = await stageVersion(root, 'v2', authority)
    const file = join(badDir, 'cell.ts')
    await writeFile(file, (await readFile(file, 'utf8')).replace("const VERSION = 'v2'", "const VERSION: string = (() => { throw new Error('1.1.0 cannot start') })()"))
    const bad = await publisher.publish(badDir, '1.1.0', key, { setAuthority: true, waitReplicas: 0 })
    await waitForView(operator, () => nodes.every(n => n.loop.heldHalts().some(h => h.digest === bad.digest)) ? true : undefined, 'both nodes to halt 1.1.0', { timeoutMs: 90_000 })
    await waitForView(operator, () => onlyRunning(operator, good.digest, 2), 'only 1.0.0 running', { timeoutMs: 60_000 })

    // Every node stops; nothing of the fleet is left to gossip the halt.
    await operator.stop()
    clients.length = 0
    await Promise.all(nodes.splice(0).map(async n => await n.stop()))
    for (let i = 0; i < 2; i++) await start(i, { haltThreshold: 1000 })
    for (const n of nodes) expect(n.loop.heldHalts().map(h => h.digest)).toContain(bad.digest)
    const after = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key })
    clients.push(after)
    // Held for 3 s: a 1.1.0 replica starting (and crashing) meanwhile would be seen.
    await waitForView(after, () => onlyRunning(after, good.digest, 2), 'only 1.0.0 running after the restart', { timeoutMs: 60_000, holdMs: 3_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(nodes.map(n => n.status()), null, 1)}`) })
    for (const n of nodes) expect(n.replicas.list(CELL).some(r => r.digest === bad.digest)).toBe(false)
    expect(await after.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })).toBe('v1')
  }, 240_000)
})
