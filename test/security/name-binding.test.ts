// Issue 7.4: a cell name is bound to its authority. Two real full nodes trust authorities A and B and
// run B's cell. A (trusted, but not the cell's author) signs a release of B's cell name with a far
// higher seq and a desired record with seq Number.MAX_SAFE_INTEGER. Before the fix the nodes took
// A's release as the cell's newest and A's desired record locked B out of every later publish and
// rollback. Now: A's records are held apart, the MAX_SAFE_INTEGER seq is refused as 'future', B still
// publishes and rolls back, callers trusting both are told CellNameConflictError by name, B's
// replica keeps serving callers that trust B only, and after a restart a replayed older release of B
// is refused (the replay floors persisted in the node's data dir).
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, signRelease, signDesiredVersion, encodeRelease, encodeDesiredVersion } from '../../core/identity/index.ts'
import { encodeEnvelope } from '../../core/fleet/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { rollback } from '../../node-host/rollback.ts'
import { CELL, onlyRunning, stageVersion } from '../integration/versioned.ts'
import { TestFleet } from '../integration/test-fleet.ts'

describe('cell names bound to their authority (issue 7.4)', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('another trusted authority can neither take over nor lock a cell, and replays stay refused after a restart', async () => {
    const [a, b] = [await generateAuthority(), await generateAuthority()]
    const [idA, idB] = [authorityIdOf(a.publicKey), authorityIdOf(b.publicKey)]
    const root = await fleet.start('cell-names-', 2, { authorityKeys: [b], trust: [idA] })
    const ownerB = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: b, listen: true })
    clients.push(ownerB)
    const publisher = new Publisher(ownerB)
    const v1 = await publisher.publish(await stageVersion(root, 'v1', idB), '1.0.0', b, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    const v2 = await publisher.publish(await stageVersion(root, 'v2', idB), '1.1.0', b, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    await waitForView(ownerB, () => onlyRunning(ownerB, v2.digest, 2), 'only 1.1.0 running', { timeoutMs: 60_000 })
    const oldRelease = encodeRelease(await signRelease({ cell: CELL, version: '1.0.0', digest: v1.digest, seq: v1.seq, createdMs: Date.now() }, b))

    // A, trusted by the nodes, signs B's cell name: a release far above B's seq and a desired record at 2^53 - 1.
    const rival = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: a, trust: [idB] })
    clients.push(rival)
    await waitForView(rival, () => rival.view.releaseOf(idB, CELL), 'B\'s release in the rival\'s view', { timeoutMs: 20_000 })
    const futureBefore = nodes.map(n => n.mesh.view.stats().dropped.future)
    await rival.gossip.publishRelease(encodeRelease(await signRelease({ cell: CELL, version: '9.9.9', digest: 'f'.repeat(64), seq: v2.seq + 1_000_000, createdMs: Date.now() }, a)))
    // The rival's own view refuses the far-future seq before it is gossiped, so send it raw.
    await rival.libp2p.services.pubsub.publish('/cell/fleet-releases/1', encodeEnvelope({ kind: 'desired', signed: encodeDesiredVersion(await signDesiredVersion({ cell: CELL, version: '9.9.9', digest: 'f'.repeat(64), seq: Number.MAX_SAFE_INTEGER, reason: 'takeover', createdMs: Date.now() }, a)) }))
    // Node 1 is the rival's only neighbour: it refuses the desired record, so gossip never forwards it.
    // The rival's release reaches node 0 by gossip, or at the latest by anti-entropy (every 30 s): the
    // deadline covers one pull (two full runs of the suite on a loaded machine missed 20 s).
    for (const [k, n] of nodes.entries()) {
      await waitForView(n.mesh, () => n.mesh.view.claimants(CELL).length === 2 && (k === 0 || n.mesh.view.stats().dropped.future > futureBefore[k]) ? true : undefined, `node ${k} to hold both claims (and the rival's neighbour to refuse the 2^53 seq)`, { timeoutMs: 45_000, seen: () => JSON.stringify({ claims: n.mesh.view.claimants(CELL), dropped: n.mesh.view.stats().dropped }) })
      expect(n.mesh.view.releaseOf(idB, CELL)?.digest).toBe(v2.digest)
      expect(n.mesh.view.desiredOf(idA, CELL)).toBeUndefined()
      expect(n.mesh.view.release(CELL)).toBeUndefined()
    }

    // A caller trusting both authorities is told by name; one trusting B only still reaches B's replica.
    const both = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: b, trust: [idA] })
    clients.push(both)
    await waitForView(both, () => both.view.claimants(CELL).length === 2 ? true : undefined, 'both claims in the caller\'s view', { timeoutMs: 20_000 })
    await expect(both.call(CELL, 'version', null, { timeoutMs: 5_000 })).rejects.toMatchObject({ name: 'CellNameConflictError' })
    expect(await ownerB.call(CELL, 'version', null, { timeoutMs: 10_000 })).toBe('v2')
    // The nodes start nothing of A's (they say why) and never treated 9.9.9 as the cell's release.
    for (const n of nodes) {
      expect(n.releases.releases(CELL).every(r => r.authority === idB)).toBe(true)
      await waitForView(n.mesh, () => /CellNameConflictError/.test(n.loop.lastReasons.get(CELL)?.join(' ') ?? '') ? true : undefined, 'the loop to name the conflict', { timeoutMs: 10_000 })
    }

    // B is not locked out: its next release and a rollback are accepted above its own seqs, not A's.
    const v3 = await publisher.publish(await stageVersion(root, 'v3', idB), '1.2.0', b, { setAuthority: true, waitReplicas: 0 })
    expect(v3.seq).toBeLessThan(v2.seq + 1_000_000)
    const back = await rollback(ownerB, CELL, '1.1.0', b, { waitReplicas: 0 })
    for (const n of nodes) {
      await waitForView(n.mesh, () => n.mesh.view.releaseOf(idB, CELL)?.digest === v3.digest && n.mesh.view.desiredOf(idB, CELL)?.seq === back.seq ? true : undefined, 'B\'s 1.2.0 and rollback on every node', { timeoutMs: 20_000 })
    }

    // Restart node 1 alone (no bootstrap): its view is empty, but the floors it persisted refuse a
    // replay of B's 1.0.0 release that a peer gossips to it first. (A node restores the signed records
    // it kept too, which would refuse the replay on their own; they are taken out of its fleet-intent
    // file here so the floors alone are tested, as for a node whose records were lost.)
    const n1 = nodes[1]
    await n1.stop()
    nodes.splice(1, 1)
    const intentFile = join(root, 'n1', 'fleet-intent.json')
    const intent = JSON.parse(await readFile(intentFile, 'utf8')) as { records: Record<string, unknown[]>, floors: { release: unknown[] } }
    expect(intent.records.release.length).toBeGreaterThan(0)
    expect(intent.floors.release.length).toBeGreaterThan(0)
    await writeFile(intentFile, JSON.stringify({ ...intent, records: {} }))
    const again = await FullNode.create({ dataDir: join(root, 'n1'), bootstrap: [], authorityKeys: [b], trust: [idA], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
    await again.start()
    nodes.push(again)
    expect(again.mesh.view.releaseOf(idB, CELL)).toBeUndefined()
    const replayer = await createClient({ bootstrap: [again.addresses()[0]], authorityKey: b })
    clients.push(replayer)
    await waitForView(replayer, () => replayer.libp2p.services.pubsub.getSubscribers('/cell/fleet-releases/1').length > 0 ? true : undefined, 'the restarted node subscribed', { timeoutMs: 20_000 })
    const staleBefore = again.mesh.view.stats().dropped.stale
    await replayer.gossip.publishRelease(oldRelease)
    await waitForView(again.mesh, () => again.mesh.view.stats().dropped.stale > staleBefore ? true : undefined, 'the replay refused as stale', { timeoutMs: 20_000 })
    expect(again.mesh.view.releaseOf(idB, CELL)).toBeUndefined()
  }, 240_000)
})

