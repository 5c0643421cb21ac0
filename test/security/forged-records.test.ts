// Issue 7.1: fleet records from peers without a host grant must not change what nodes run. Two real
// full nodes run one replica of a cell (min = max = 1) at its second release; an attacker peer
// joins over libp2p and gossips, signed with its own key, what a node would: a node record posing
// as an eligible host (trust tags, free slots, a halt of the release), three "ready" heartbeats of
// the cell and three "crashed" ones, plus crashed records with all-zero signatures. On the code
// before this test the ready records made a node drain its only real replica as surplus, the
// crashed ones halted 1.1.0 (the fleet walked back to 1.0.0) and the fake node counted as an
// eligible volunteer. Run twice: a grant-less key, and a key holding a caller grant from the
// fleet's own authority (a caller may call, never host).
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, authorityIdOf, issueGrant, encodeCertificate, Credentials, type AuthorityKey } from '../../core/identity/index.ts'
import { Mesh } from '../../core/mesh/index.ts'
import { FLEET_TOPIC, encodeEnvelope, signRecord, type InstanceRecord, type LocalInstanceState, type LocalNodeState } from '../../core/fleet/index.ts'
import { clientTransports } from '../../node-host/client-transports.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher, packageCell } from '../../node-host/publisher.ts'
import { rollback } from '../../node-host/rollback.ts'
import { CRASH_LOOPING_PREFIX } from '../../core/biology/index.ts'
import { trustRoles } from '../../node-host/autonomic-loop.ts'
import { CELL, stageVersion } from '../integration/versioned.ts'
import { TestFleet } from '../integration/test-fleet.ts'

/** Resolve once `test` holds, checked every 50 ms, or fail with `what` at the deadline. */
async function until (test: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('forged fleet records (issue 7.1)', () => {
  const fleet = new TestFleet()
  const { nodes, clients: meshes } = fleet
  afterAll(async () => { await fleet.stop() })

  /**
   * `records`: 'instances' gossips heartbeats only and never a node record (as in the issue);
   * 'node' gossips a node record posing as an eligible host that halted the release, and no heartbeats.
   */
  async function attacker (key: AuthorityKey, grant: 'none' | 'caller' | 'host-of-another-cell', records: 'instances' | 'node', target: { digest: string, version: string }, halts: Array<{ digest: string, version: string, reason: string }> = [{ ...target, reason: 'forged halt' }]): Promise<{ mesh: Mesh, id: string, privateKey: Awaited<ReturnType<typeof generateKeyPair>> }> {
    const privateKey = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(privateKey).toString()
    const credentials = new Credentials({ peerKey: privateKey })
    const now = Date.now()
    if (grant === 'caller') credentials.addGrant(await issueGrant(key, { subject: id, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    if (grant === 'host-of-another-cell') credentials.addGrant(await issueGrant(key, { subject: id, roles: ['host'], cells: ['another-cell'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    const authority = authorityIdOf(key.publicKey)
    const localNode = (): LocalNodeState => ({
      addrs: [],
      capacity: { slots: 64, freeSlots: 64, cpuCores: 64, memoryBytes: 2 ** 40, freeMemoryBytes: 2 ** 40 },
      load: { cpuPercent: 0, memoryPercent: 0 },
      // Claims to trust the fleet's authority, as real nodes' tags say, and carries whatever grant it has.
      roles: ['full', ...trustRoles([authority])],
      grants: credentials.authorities().map(a => encodeCertificate(credentials.grantFor(a)!)),
      halts: halts.map(h => ({ cell: CELL, version: h.version, digest: h.digest, atMs: Date.now(), reason: h.reason })),
      startedMs: now
    })
    const fake = (i: number, state: 'ready' | 'crashed'): LocalInstanceState => ({
      instanceId: `fake-${state}-${i}`, cell: CELL, version: target.version, digest: target.digest,
      // Newer than the real replica, so the real one is the oldest and drains first as surplus.
      startedMs: Date.now(), state, cpuPercent: 0, memoryBytes: 1, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0,
      ...(state === 'ready' ? { readyMs: Date.now() } : { endedMs: Date.now() })
    })
    const mesh = await Mesh.create({
      privateKey,
      transports: clientTransports(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [nodes[0].addresses()[0]],
      credentials,
      trusted: new Set([authority]),
      heartbeatMs: 300,
      localNode: () => records === 'node' ? localNode() : undefined,
      localInstances: () => records === 'node' ? [] : [0, 1, 2].map(i => fake(i, 'ready')).concat([0, 1, 2].map(i => fake(i, 'crashed')))
    })
    meshes.push(mesh)
    await mesh.start()
    return { mesh, id, privateKey }
  }

  it('records of a grant-less peer and of a caller-only peer change no replica, halt or volunteer; halts of a host granted another cell end no publish or rollback', async () => {
    const key = await generateAuthority()
    const authority = authorityIdOf(key.publicKey)
    const root = await fleet.start('cell-forged-', 2, { authorityKeys: [key] })
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true })
    meshes.push(operator)
    const publisher = new Publisher(operator)
    const stage = async (tag: string): Promise<string> => {
      const dir = await stageVersion(root, tag, authority)
      const toml = join(dir, 'Cell.toml')
      await writeFile(toml, (await readFile(toml, 'utf8')).replace('min_replicas = 2', 'min_replicas = 1').replace('max_replicas = 2', 'max_replicas = 1'))
      return dir
    }
    await publisher.publish(await stage('v1'), '1.0.0', key, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    const v2 = await publisher.publish(await stage('v2'), '1.1.0', key, { setAuthority: true, waitReplicas: 0, timeoutMs: 60_000 })
    // The fleet settles on exactly one ready 1.1.0 replica.
    await until(() => {
      const live = nodes.flatMap(n => n.replicas.list(CELL)).filter(r => r.state === 'ready' || r.state === 'starting')
      return live.length === 1 && live[0].digest === v2.digest && live[0].state === 'ready'
    }, 'one ready 1.1.0 replica and nothing else', 60_000)
    const real = nodes.flatMap(n => n.replicas.list(CELL)).find(r => r.state === 'ready')!
    await waitForReplicas(operator, CELL, { digest: v2.digest, timeoutMs: 20_000 })
    const realNodes = new Set(nodes.map(n => n.peerId))

    for (const kind of ['none', 'caller'] as const) {
      const before = nodes.map(n => ({ untrusted: n.mesh.view.stats().dropped.untrusted, badSig: n.mesh.view.stats().dropped['bad-signature'], drains: n.loop.counters.drains, halts: n.loop.counters.halts }))
      const target = { digest: v2.digest, version: '1.1.0' }
      const { mesh: evil, id: evilId, privateKey: evilKey } = await attacker(key, kind, 'instances', target)
      const { mesh: poser, id: poserId } = await attacker(key, kind, 'node', target)
      // All-zero signatures on crash records from the attacker's own key (gossip sender == record node).
      const forgedCrash = async (i: number): Promise<void> => {
        const record: InstanceRecord = {
          instanceId: `zero-${i}`, cell: CELL, version: '1.1.0', digest: v2.digest, nodeId: evilId, startedMs: Date.now() - 1000, state: 'crashed',
          cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0, sentMs: Date.now(), seq: Date.now() + i, endedMs: Date.now()
        }
        const signed = await signRecord(evilKey, 'instance', record)
        await evil.libp2p.services.pubsub.publish(FLEET_TOPIC, encodeEnvelope({ ...signed, signature: new Uint8Array(64) })).catch(() => {})
      }
      // The attack runs until both attackers have gossiped a dozen heartbeats to the fleet (and the
      // zero-signature records went out), then the nodes' loops tick over it a dozen times more:
      // drain, halt and volunteer decisions are made per tick.
      let i = 0
      await until(() => {
        if (i < 40) void forgedCrash(i++)
        return i >= 40 && evil.gossip.stats().published >= 12 && poser.gossip.stats().published >= 12
      }, `the ${kind} attackers to gossip`, 30_000)
      const ticks = nodes.map(n => n.loop.counters.ticks)
      await until(() => nodes.every((n, k) => n.loop.counters.ticks - ticks[k] >= 12), 'a dozen more ticks on every node', 30_000)

      for (const [k, n] of nodes.entries()) {
        const view = n.mesh.view
        // Nothing of the attackers is in the view: no node record, no heartbeat; all of it was
        // refused as untrusted (signed by their keys) or as bad signatures (the zeroed ones).
        expect(view.stats().dropped.untrusted - before[k].untrusted).toBeGreaterThanOrEqual(20)
        expect(view.stats().dropped['bad-signature'] - before[k].badSig).toBeGreaterThan(0)
        expect(view.node(evilId)).toBeUndefined()
        expect(view.node(poserId)).toBeUndefined()
        expect(view.instances(CELL).every(r => realNodes.has(r.nodeId))).toBe(true)
        // No halt (own or adopted) and no drain happened.
        expect(n.loop.counters.halts - before[k].halts).toBe(0)
        expect(n.loop.halted.size).toBe(0)
        expect(n.loop.counters.drains - before[k].drains).toBe(0)
        // The fake node is not an eligible host: only real, granted nodes are.
        const eligible = n.loop.biologyView(CELL).nodes.filter(x => x.trustsAuthorities.length > 0).map(x => x.id)
        expect(eligible.every(id => realNodes.has(id))).toBe(true)
        expect(eligible).not.toContain(poserId)
      }
      // The one real replica still runs and answers.
      const still = nodes.flatMap(n => n.replicas.list(CELL)).filter(r => r.state === 'ready' || r.state === 'starting')
      expect(still.map(r => r.instanceId)).toEqual([real.instanceId])
      expect(await operator.call(CELL, 'version', null, { timeoutMs: 10_000 })).toBe('v2')
      await evil.stop()
      await poser.stop()
    }

    // A host the authority granted another cell only is in every view (its host grant is valid), so
    // its node record and halts reach the operator too: they must count for this cell nowhere. It
    // marks the next release and the running one crash-looping; the nodes adopt neither, `cell
    // publish` waits for the release's replicas as usual, and a rollback to the running one is not
    // refused (both end at once on a halt from a host granted this cell: test/integration/crash-loop).
    const v3Dir = await stage('v3')
    const v3Digest = (await packageCell(v3Dir, { authority })).digest
    const forged = [{ digest: v2.digest, version: '1.1.0' }, { digest: v3Digest, version: '1.2.0' }].map(h => ({ ...h, reason: `${CRASH_LOOPING_PREFIX}forged` }))
    const { mesh: scoped, id: scopedId } = await attacker(key, 'host-of-another-cell', 'node', forged[1], forged)
    await until(() => operator.view.node(scopedId)?.halts?.length === 2, "the operator's view to hold the scoped host's record and its two halts", 20_000)
    const v3 = await publisher.publish(v3Dir, '1.2.0', key, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    expect(v3.digest).toBe(v3Digest)
    expect(v3.ready).toBe(1)
    const back = await rollback(operator, CELL, '1.1.0', key, { digest: v2.digest, timeoutMs: 60_000 })
    expect(back.ready).toBe(1)
    expect(operator.view.node(scopedId)?.halts?.length, 'the forged halts were there throughout').toBe(2)
    for (const n of nodes) expect(n.loop.halted.size).toBe(0)
    expect(await operator.call(CELL, 'version', null, { timeoutMs: 10_000 })).toBe('v2')
    await scoped.stop()
  }, 240_000)
})
