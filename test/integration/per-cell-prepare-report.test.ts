// `cell publish`'s per-node prepare report on a per-cell fleet (three in-process full nodes of real
// libp2p and real capsids, `dissemination: 'per-cell'`). In per-cell mode a node publishes no node
// record when only its `prepared` list changes; it re-signs the record into its own view, and the
// publisher pulls each node's record from the node itself (fleet-sync, `nodes` filter). Before this,
// the report said "prepared on 0 of 3 nodes" with every node "has not reported it".
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { makeNodeRecord } from '../../core/fleet/testing.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { formatPrepareReport, meshNodePull, waitForPulledPrepareReport } from '../../node-host/prepare-report.ts'
import { trustRoles } from '../../node-host/autonomic-loop.ts'
import { TestFleet } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'

const sleepyDir = join(import.meta.dirname, 'fixtures', 'sleepy')

describe('per-cell prepare report', () => {
  const fleet = new TestFleet()
  afterAll(async () => { await fleet.stop() }, 60_000)

  it('publish reports prepared on 3 of 3 nodes (records pulled from each node, nothing more gossiped); a node that cannot be reached is named unreachable', async () => {
    const authority = await generateAuthority()
    const root = await fleet.start('cell-per-cell-report-', 3, { authorityKeys: [authority], dissemination: 'per-cell' })
    const ids = fleet.nodes.map(n => n.peerId)
    for (const n of fleet.nodes) {
      await waitForView(n.mesh, () => ids.every(id => n.mesh.view.node(id) !== undefined) ? true : undefined, 'all three nodes in view', { timeoutMs: 30_000 })
    }
    const client = await createClient({ bootstrap: [fleet.nodes[0].addresses()[0]], authorityKey: authority, listen: true, dissemination: 'per-cell' })
    fleet.clients.push(client)
    await waitForView(client, () => ids.every(id => client.view.node(id) !== undefined) ? true : undefined, 'the three nodes in the publisher\'s view', { timeoutMs: 30_000 })
    const nodesSent = fleet.nodes.map(n => n.mesh.gossip.stats().sent.node)

    const dir = await stageCell(sleepyDir, join(root, 'sleepy'), authorityIdOf(authority.publicKey))
    const published = await new Publisher(client).publish(dir, '1.0.0', authority, { waitReplicas: 2, timeoutMs: 60_000, reportMs: 20_000 })
    const text = formatPrepareReport(published.nodes)
    console.log(text)
    expect(published.ready).toBe(2)
    expect(published.nodes.map(s => s.nodeId)).toEqual([...ids].sort())
    expect(published.nodes.map(s => s.state), text).toEqual(['prepared', 'prepared', 'prepared'])
    expect(text).toMatch(/^prepared on 3 of 3 nodes\n/)
    // The lists came by pulls of the nodes' re-signed records, not by extra node records on the members topic.
    expect(fleet.nodes.some(n => n.mesh.gossip.stats().resignedLocal > 0)).toBe(true)
    for (const [i, n] of fleet.nodes.entries()) {
      const sent = n.mesh.gossip.stats().sent.node - nodesSent[i]
      // A node may send one for another reason (its slots, roles…); never one per prepared change.
      expect(sent, `node records sent by …${n.peerId.slice(-6)} during the publish`).toBeLessThanOrEqual(1)
    }

    // A full node in the view that cannot be reached: named unreachable, with the pull's error; the others stay prepared.
    const ghost = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const ghostRecord = makeNodeRecord(ghost, { roles: ['full', ...trustRoles([authority.id])], addrs: ['/ip4/127.0.0.1/tcp/9'] })
    const view = { nodes: () => [...client.view.nodes(), ghostRecord] }
    const started = Date.now()
    const report = await waitForPulledPrepareReport(view, meshNodePull(client), 'sleepy', published.digest, { timeoutMs: 3_000, pullMs: 1_000, authority: authority.id })
    expect(Date.now() - started).toBeLessThan(10_000)
    const ghostStatus = report.find(s => s.nodeId === ghost)
    expect(ghostStatus?.state).toBe('unreachable')
    expect(ghostStatus?.reason).toBeTruthy()
    expect(report.filter(s => s.state === 'prepared')).toHaveLength(3)
    expect(formatPrepareReport(report)).toContain(`node …${ghost.slice(-6)} is unreachable: its record could not be pulled from it (`)
  }, 180_000)
})
