// Issue 8 §6 attack test: retire records stop a cell everywhere, so only the cell's own authority may
// sign one that counts. Two real full nodes trust the owner O and a second authority R (which never
// signed the cell's name). R signs a retire record of O's cell; a stranger S nobody trusts signs one
// too; both are sent raw on the release topic. Then O retires and re-publishes, and O's old retire
// record is replayed. None of the three may stop the cell. On the old code there was no retire
// record at all (envelope kind 5 was malformed and `retireCell` did not exist). Against a naive
// implementation this test fails where: a retire record that claimed the name (R's) would put the
// cell in CellNameConflictError and stop it; one read without the claim check would drain it; a
// replay compared with the retire map only (not with the newer release) would drain it again.
import { describe, it, expect, afterAll } from 'vitest'
import { generateAuthority, authorityIdOf, signRetire, encodeRetire } from '../../core/identity/index.ts'
import { encodeEnvelope, FLEET_RELEASE_TOPIC } from '../../core/fleet/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { retireCell } from '../../node-host/retire.ts'
import { CELL, stageVersion } from '../integration/versioned.ts'
import { TestFleet, ticks } from '../integration/test-fleet.ts'

function running (nodes: FullNode[]): number {
  return nodes.reduce((n, x) => n + x.replicas.list(CELL).filter(r => r.state === 'starting' || r.state === 'ready').length, 0)
}


describe('retire records only count from the cell\'s own authority', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('a rival\'s, a stranger\'s and a replayed retire record have no effect', async () => {
    const [owner, rival, stranger] = [await generateAuthority(), await generateAuthority(), await generateAuthority()]
    const [idO, idR] = [authorityIdOf(owner.publicKey), authorityIdOf(rival.publicKey)]
    const root = await fleet.start('cell-retire-attack-', 2, { authorityKeys: [owner], trust: [idR], drainGraceMs: 2_000 })
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: owner, listen: true })
    clients.push(operator)
    const publisher = new Publisher(operator)
    const dir = await stageVersion(root, 'v1', idO)
    const v1 = await publisher.publish(dir, '1.0.0', owner, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })

    // R (trusted, not the owner) and S (untrusted) sign retire records of O's cell above its seq.
    const attacker = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: rival, trust: [idO] })
    clients.push(attacker)
    await waitForView(attacker, () => attacker.libp2p.services.pubsub.getSubscribers(FLEET_RELEASE_TOPIC).length > 0 ? true : undefined, 'a node subscribed to releases', { timeoutMs: 20_000 })
    const before = nodes.map(n => n.mesh.view.stats().dropped)
    for (const key of [rival, stranger]) {
      const signed = encodeRetire(await signRetire({ cell: CELL, seq: v1.seq + 1_000, createdMs: Date.now(), reason: 'takeover' }, key))
      await attacker.libp2p.services.pubsub.publish(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'retire', signed }))
    }
    // The attacker's neighbour refused both by name (R: no claim on the name; S: untrusted signer).
    await waitForView(nodes[1].mesh, () => {
      const d = nodes[1].mesh.view.stats().dropped
      return d.untrusted > before[1].untrusted && d['bad-signature'] > before[1]['bad-signature'] ? true : undefined
    }, 'node 1 to refuse both retire records', { timeoutMs: 20_000, seen: () => JSON.stringify(nodes[1].mesh.view.stats().dropped) })
    await ticks(operator, nodes, 12)
    for (const n of nodes) {
      expect(n.mesh.view.retiredOf(idR, CELL)).toBeUndefined()
      expect(n.mesh.view.retired(CELL)).toBeUndefined()
      expect(n.mesh.view.claimants(CELL)).toEqual([idO])
      expect(n.status().retired).toEqual([])
    }
    expect(running(nodes)).toBe(2)
    expect(await operator.call<string>(CELL, 'version', null, { timeoutMs: 10_000 })).toBe('v1')

    // O retires, then publishes again: the cell is back. Replaying O's retire record must not stop it.
    const retired = await retireCell(operator, CELL, owner, { timeoutMs: 60_000 })
    expect(running(nodes)).toBe(0)
    const again = await publisher.publish(dir, '1.0.0', owner, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    expect(again.seq).toBeGreaterThan(retired.seq)
    await waitForView(operator, () => running(nodes) === 2 ? true : undefined, 'two replicas again', { timeoutMs: 30_000 })
    const dupBefore = nodes[1].mesh.view.stats().dropped.duplicate
    await attacker.libp2p.services.pubsub.publish(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'retire', signed: retired.bytes }))
    await waitForView(nodes[1].mesh, () => nodes[1].mesh.view.stats().dropped.duplicate > dupBefore ? true : undefined, 'node 1 to see the replay', { timeoutMs: 20_000 })
    const drains = nodes.map(n => n.loop.counters.drains)
    await ticks(operator, nodes, 12)
    expect(nodes.map(n => n.loop.counters.drains)).toEqual(drains)
    expect(running(nodes)).toBe(2)
    for (const n of nodes) expect(n.status().retired).toEqual([])
  }, 240_000)
})
