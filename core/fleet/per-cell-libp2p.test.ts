// Integration: per-cell dissemination on real libp2p nodes (TCP + noise + yamux + identify +
// gossipsub with the mesh's scoring) on 127.0.0.1 in one process. The fleet layer runs on a shared
// ManualClock that the test moves only by 0 (to run a heartbeat now): nothing here waits for a
// refresh, so what a node learns came from a send on a change, or from a filtered fleet-sync pull.
import { describe, it, expect, afterAll } from 'vitest'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { encodeEnvelope } from './codec.ts'
import { FleetGossip } from './gossip.ts'
import type { LocalInstanceState } from './gossip.ts'
import { FLEET_SCORE_THRESHOLDS, fleetScoreParams } from './gossip-score.ts'
import { FLEET_TOPIC, MEMBERS_TOPIC, cellTopic } from './records.ts'
import { signRecord } from './sign.ts'
import { fleetSync } from './sync.ts'
import type { FleetSync, FleetSyncResult } from './sync.ts'
import { FleetView } from './view.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord, until } from './testing.ts'

const clock = new ManualClock(Date.now())

/** gossipsub's score of a peer (the implementation has it; its interface type does not). */
interface ScoredPubsub { getScore: (peer: string) => number }

interface Member {
  name: string
  libp2p: Libp2p<{ identify: Identify, pubsub: GossipSub, fleetSync: FleetSync }>
  view: FleetView
  gossip: FleetGossip
  id: string
  instances: LocalInstanceState[]
  pulls: FleetSyncResult[]
}

const members: Member[] = []

function instance (id: string, instanceId: string, cell: string): LocalInstanceState {
  const { nodeId: _n, seq: _s, sentMs: _t, ...inst } = makeInstanceRecord(id, { instanceId, cell, startedMs: clock.now() })
  return inst
}

async function member (name: string, cells: string[], own: ManualClock = clock): Promise<Member> {
  const privateKey = await generateKeyPair('Ed25519')
  // Per-cell liveness: nodes live by node/member records and down verdicts, instances by refreshMs.
  const view = new FleetView({ clock: own, liveness: 'members' })
  const libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, scoreParams: fleetScoreParams({ appScore: (peer) => view.node(peer) !== undefined ? 1 : 0 }), scoreThresholds: FLEET_SCORE_THRESHOLDS }),
      // No automatic whole-view pulls: every pull here is a filtered one.
      fleetSync: fleetSync({ view, autoPull: 0 })
    }
  })
  const id = libp2p.peerId.toString()
  const { nodeId: _n, seq: _s, sentMs: _t, ...node } = makeNodeRecord(id, { startedMs: own.now(), roles: ['full', 'host'] })
  const instances = cells.map((cell, i) => instance(id, `${name}-${cell}-${i}`, cell))
  const pulls: FleetSyncResult[] = []
  const gossip = new FleetGossip({
    pubsub: libp2p.services.pubsub,
    view,
    clock: own,
    privateKey,
    heartbeatMs: 1000,
    dissemination: 'per-cell',
    localNode: () => node,
    localInstances: () => instances,
    // What the lead wires: one cell's records from one connected full node.
    pullCell: async (cell, options) => {
      for (const peer of libp2p.getPeers()) {
        pulls.push(await libp2p.services.fleetSync.pull(peer, { ...options, cells: [cell] }))
        return
      }
    },
    // And: a node's full record (with the cells of its dropped instances) from the peer that sent its records.
    pullNode: async (nodeId, from, options) => {
      pulls.push(await libp2p.services.fleetSync.pull(peerIdFromString(from), { ...options, nodes: [nodeId] }))
    }
  })
  const m = { name, libp2p, view, gossip, id, instances, pulls }
  members.push(m)
  return m
}

/** Polls `check` every 20 ms of real time (for state with no event, e.g. gossipsub scores). */
async function poll (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/** Runs one heartbeat of each of `running` now (the clock does not move) and waits for all of them. */
async function heartbeatNow (running: Member[]): Promise<void> {
  const before = running.map(m => m.gossip.stats().ticks)
  const ticked = Promise.all(running.map(async (m, i) => {
    await until(`${m.name} heartbeat`, () => m.gossip.stats().ticks > before[i], [m.gossip], 'heartbeat')
  }))
  for (const m of running) m.gossip.soon()
  clock.advance(0)
  await ticked
}

const subscribers = (m: Member, topic: string): string[] => m.libp2p.services.pubsub.getSubscribers(topic).map(p => p.toString())
const cellsIn = (m: Member): string[] => m.view.instances().map(i => `${i.cell}:${i.instanceId}`).sort()

afterAll(async () => {
  for (const m of members) {
    m.gossip.stop()
    await m.libp2p.stop()
  }
})

describe('per-cell dissemination over real libp2p nodes', () => {
  it('a follower of one cell gets its replicas at once and none of another cell\'s; a filtered pull brings only the asked cell', async () => {
    // a hosts alpha and beta, b hosts beta, c follows alpha only (hosts nothing).
    const [a, b, c] = [await member('a', ['alpha', 'beta']), await member('b', ['beta']), await member('c', [])]
    await b.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await c.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await c.libp2p.dial(b.libp2p.getMultiaddrs()[0])
    for (const m of [a, b, c]) m.gossip.start()
    c.gossip.follow('alpha')
    expect(c.gossip.followed()).toEqual(['alpha'])
    const pubsubs = [a, b, c].map(m => m.libp2p.services.pubsub as unknown as EventTarget)
    await until('members topic subscribers', () => [a, b, c].every(m => subscribers(m, MEMBERS_TOPIC).length === 2), pubsubs, 'subscription-change')
    await until('a sees c on alpha', () => subscribers(a, cellTopic('alpha')).includes(c.id), pubsubs, 'subscription-change')
    await until('b sees a on beta', () => subscribers(b, cellTopic('beta')).includes(a.id), pubsubs, 'subscription-change')

    // First heartbeats: node and member records to everyone, each instance to its cell's followers.
    const sentAt = clock.now()
    await heartbeatNow([a, b, c])
    for (const m of [a, b, c]) await until(`${m.name} knows every node`, () => m.view.nodes().length === 3, [m.view], 'change')
    await until('c has alpha', () => cellsIn(c).length === 1, [c.view], 'change')
    await until('a has b\'s beta', () => cellsIn(a).includes('beta:b-beta-0'), [a.view], 'change')
    expect(cellsIn(c)).toEqual(['alpha:a-alpha-0'])
    expect(c.view.instances('alpha')[0].refreshMs).toBe(5000)
    expect(cellsIn(b)).toEqual(['beta:a-beta-1', 'beta:b-beta-0'])
    expect(a.gossip.followed()).toEqual(['alpha', 'beta'])

    // A replica starts on a: announced on alpha's topic at once, without the clock moving.
    a.instances.push(instance(a.id, 'a-alpha-2', 'alpha'))
    const aliveBefore = a.gossip.stats().sent.instance
    await heartbeatNow([a])
    await until('c has the new replica', () => cellsIn(c).includes('alpha:a-alpha-2'), [c.view], 'change')
    expect(clock.now()).toBe(sentAt)
    // Only the new replica was signed and sent: the others had not changed.
    expect(a.gossip.stats().sent.instance - aliveBefore).toBe(1)
    // And b's beta replicas never reached c, nor its view.
    expect(cellsIn(c)).toEqual(['alpha:a-alpha-0', 'alpha:a-alpha-2'])
    expect(c.gossip.stats().bytes.in.cells).toBeGreaterThan(0)
    expect(c.gossip.stats().bytes.in.fleet).toBe(0)

    // d joins connected to a only and follows alpha: it pulls alpha's records from a, which holds beta's too.
    const d = await member('d', [])
    d.gossip.start()
    await d.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    expect(cellsIn(a)).toEqual(['alpha:a-alpha-0', 'alpha:a-alpha-2', 'beta:a-beta-1', 'beta:b-beta-0'])
    d.gossip.follow('alpha')
    // The pull resolves after fleet-sync's 'pulled' event; the test's pullCell records it then.
    await poll('d pulled alpha', () => d.pulls.length === 1)
    expect(cellsIn(d)).toEqual(['alpha:a-alpha-0', 'alpha:a-alpha-2'])
    // The two replicas and their host's node and member records; nothing of b or c.
    expect(d.pulls[0]).toMatchObject({ accepted: 4, dropped: 0 })
    expect(d.view.stats().accepted).toMatchObject({ node: 1, member: 1, instance: 2 })
    expect(d.view.nodes().map(n => n.nodeId)).toEqual([a.id])
    expect(d.libp2p.services.fleetSync.stats().pulls).toBe(1)
    // c reports a down (as its failure detector would); a hears it and refutes with a newer member record.
    const seqOfA = c.view.downReportsAbout(a.id)!.subjectSeq
    await c.gossip.reportDown(a.id, seqOfA)
    await until('a holds the report about itself', () => a.view.downReportsAbout(a.id)?.reporters.includes(c.id) === true, [a.view], 'down-report')
    const refuting = until('a refuted', () => a.gossip.stats().refuted === 1, [a.gossip], 'heartbeat')
    clock.advance(0)
    await refuting
    await until('c sees the refutation', () => (c.view.downReportsAbout(a.id)?.subjectSeq ?? 0) > seqOfA, [c.view], 'change')
    expect(c.view.downReportsAbout(a.id)).toMatchObject({ reporters: [], down: false })
    expect(c.view.node(a.id)).toBeDefined()
    for (const m of [a, b, c, d]) {
      const { bytes } = m.gossip.stats()
      // Per-node gossip bytes of this mode (the fleet-mode test prints its own).
      console.log(`per-cell ${m.name}: out ${JSON.stringify(bytes.out)} in ${JSON.stringify(bytes.in)}`)
    }
  })

  it('a record on a cell topic it does not belong to is dropped and its sender loses score (attack)', async () => {
    const [a, c] = [members[0], members[2]]
    const attackerKey: PrivateKey = await generateKeyPair('Ed25519')
    const attacker: Libp2p<{ pubsub: GossipSub }> = await createLibp2p({
      privateKey: attackerKey,
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true }) }
    })
    try {
      const attackerId = attacker.peerId.toString()
      attacker.services.pubsub.subscribe(cellTopic('alpha'))
      await attacker.dial(c.libp2p.getMultiaddrs()[0])
      await poll('c sees the attacker on alpha', () => subscribers(c, cellTopic('alpha')).includes(attackerId))
      await poll('the attacker sees c on alpha', () => attacker.services.pubsub.getSubscribers(cellTopic('alpha')).some(p => p.toString() === c.id))
      const scores = c.libp2p.services.pubsub as unknown as ScoredPubsub
      const score = (): number => scores.getScore(attackerId)
      expect(score()).toBe(0)
      const rejectedBefore = c.gossip.stats().received.reject

      // A correctly signed instance record of cell beta, on alpha's topic.
      const beta = encodeEnvelope(await signRecord(attackerKey, 'instance', makeInstanceRecord(attackerId, { instanceId: 'x-beta', cell: 'beta', sentMs: clock.now(), refreshMs: 5000 })))
      await attacker.services.pubsub.publish(cellTopic('alpha'), beta)
      await poll('c rejects the beta record', () => c.gossip.stats().received.reject === rejectedBefore + 1)
      expect(c.view.instances('beta')).toEqual([])
      await poll('the attacker\'s score falls', () => score() < 0)

      // A member record on a cell topic, then plain junk: refused too, the score keeps falling.
      const member = encodeEnvelope(await signRecord(attackerKey, 'member', { nodeId: attackerId, seq: 2, sentMs: clock.now(), nodeSeq: 1, slots: 4, freeSlots: 4, cpuPercent: 0, memoryPercent: 0, leaving: false, cells: ['alpha'] }))
      const after1 = score()
      await attacker.services.pubsub.publish(cellTopic('alpha'), member)
      await attacker.services.pubsub.publish(cellTopic('alpha'), new Uint8Array([1, 2, 250, 7]))
      await poll('c rejects both', () => c.gossip.stats().received.reject === rejectedBefore + 3)
      await poll('the score falls further', () => score() < after1)
      expect(c.gossip.stats().wrongTopic).toBeGreaterThanOrEqual(2)
      // Honest peers keep their standing.
      expect(scores.getScore(a.id)).toBeGreaterThanOrEqual(0)
    } finally {
      await attacker.stop()
    }
  })
})

describe('gossip bytes: fleet vs per-cell on the same workload', () => {
  /** Four nodes with their own clock; node i hosts one replica of cell ci and (per-cell) follows c(i+1). */
  async function fleetOf (dissemination: 'fleet' | 'per-cell', own: ManualClock): Promise<Member[]> {
    const out: Member[] = []
    for (let i = 0; i < 4; i++) {
      const privateKey = await generateKeyPair('Ed25519')
      const view = new FleetView({ clock: own, liveness: dissemination === 'per-cell' ? 'members' : 'heartbeat' })
      const libp2p = await createLibp2p({
        privateKey,
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        services: {
          identify: identify(),
          pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, scoreParams: fleetScoreParams({ appScore: (peer) => view.node(peer) !== undefined ? 1 : 0 }), scoreThresholds: FLEET_SCORE_THRESHOLDS }),
          fleetSync: fleetSync({ view, autoPull: 0 })
        }
      })
      const id = libp2p.peerId.toString()
      const { nodeId: _n, seq: _s, sentMs: _t, ...node } = makeNodeRecord(id, { startedMs: own.now(), roles: ['full', 'host'] })
      const instances = [instance(id, `n${i}-c${i}`, `c${i}`)]
      const gossip = new FleetGossip({ pubsub: libp2p.services.pubsub, view, clock: own, privateKey, heartbeatMs: 1000, dissemination, localNode: () => node, localInstances: () => instances })
      const m = { name: `${dissemination}-${i}`, libp2p, view, gossip, id, instances, pulls: [] }
      members.push(m)
      out.push(m)
    }
    for (const [i, m] of out.entries()) for (const o of out.slice(i + 1)) await m.libp2p.dial(o.libp2p.getMultiaddrs()[0])
    for (const [i, m] of out.entries()) {
      m.gossip.start()
      if (dissemination === 'per-cell') m.gossip.follow(`c${(i + 1) % 4}`)
    }
    const topics = dissemination === 'fleet' ? [FLEET_TOPIC] : [MEMBERS_TOPIC]
    for (const m of out) {
      await poll(`${m.name} sees its peers on its topics`, () => topics.every(t => subscribers(m, t).length === 3) &&
        (dissemination === 'fleet' || [0, 1, 2, 3].every(k => subscribers(m, cellTopic(`c${k}`)).length >= 1)))
    }
    return out
  }

  const sum = (ms: Member[], f: (m: Member) => number): number => ms.reduce((n, m) => n + f(m), 0)

  it('prints per-node bytes of 10 heartbeats; per-cell receives far fewer', async () => {
    const results: Record<string, number> = {}
    for (const mode of ['fleet', 'per-cell'] as const) {
      const own = new ManualClock(Date.now())
      const nodes = await fleetOf(mode, own)
      for (let s = 0; s < 10; s++) {
        const before = nodes.map(m => m.gossip.stats().ticks)
        const ticked = Promise.all(nodes.map(async (m, i) => { await until(`${m.name} tick`, () => m.gossip.stats().ticks > before[i], [m.gossip], 'heartbeat') }))
        own.advance(s === 0 ? 0 : 1000)
        await ticked
      }
      // Every message reaches every other subscriber once: 3 per fleet or members message, 1 per cell message.
      const inBytes = (m: Member): number => Object.values(m.gossip.stats().bytes.in).reduce((a, b) => a + b, 0)
      await poll(`${mode}: every message delivered`, () =>
        sum(nodes, m => m.gossip.stats().bytes.in.fleet) === 3 * sum(nodes, m => m.gossip.stats().bytes.out.fleet) &&
        sum(nodes, m => m.gossip.stats().bytes.in.members) === 3 * sum(nodes, m => m.gossip.stats().bytes.out.members) &&
        sum(nodes, m => m.gossip.stats().bytes.in.cells) === sum(nodes, m => m.gossip.stats().bytes.out.cells))
      for (const m of nodes) {
        const { bytes } = m.gossip.stats()
        console.log(`${m.name}: in ${inBytes(m)} B ${JSON.stringify(bytes.in)}, out ${JSON.stringify(bytes.out)}`)
      }
      results[mode] = sum(nodes, inBytes) / nodes.length
    }
    console.log(`mean inbound gossip bytes per node over 10 heartbeats (4 nodes, 1 replica each): fleet ${results.fleet.toFixed(0)}, per-cell ${results['per-cell'].toFixed(0)}`)
    expect(results['per-cell']).toBeLessThan(results.fleet / 3)
  })
})

describe('announcements that reached nobody', () => {
  it('a node whose first node and member records reached no peer is learned by its peers once it connects, by gossip alone', async () => {
    // Own clock; fleet-sync never pulls by itself here (autoPull 0, no anti-entropy): only gossip can tell p and q about e.
    const own = new ManualClock(Date.now())
    const [p, q] = [await member('late-p', [], own), await member('late-q', [], own)]
    await q.libp2p.dial(p.libp2p.getMultiaddrs()[0])
    for (const m of [p, q]) m.gossip.start()
    await poll('p and q see each other on the members topic', () => subscribers(p, MEMBERS_TOPIC).length === 1 && subscribers(q, MEMBERS_TOPIC).length === 1)
    const tickOf = async (ms: Member[], advanceMs: number): Promise<void> => {
      const before = ms.map(m => m.gossip.stats().ticks)
      const ticked = Promise.all(ms.map(async (m, i) => { await until(`${m.name} tick`, () => m.gossip.stats().ticks > before[i], [m.gossip], 'heartbeat') }))
      own.advance(advanceMs)
      await ticked
    }
    await tickOf([p, q], 0)
    await until('p and q know each other', () => p.view.nodes().length === 2 && q.view.nodes().length === 2, [p.view, q.view], 'change')

    // e starts with no connection at all: its start-time node and member records reach nobody.
    const e = await member('late-e', ['gamma'], own)
    e.gossip.start()
    await tickOf([e], 0)
    expect(e.gossip.stats().sent).toMatchObject({ node: 1, member: 1 })
    expect(e.libp2p.getPeers()).toHaveLength(0)
    // Without a subscriber nothing is even tried again.
    await tickOf([p, q, e], 1000)
    expect(e.gossip.stats().republished).toBe(0)

    // e connects to p only. Its next heartbeats send the same records again until one reaches a peer;
    // q hears of e through p (gossipsub forwards, or gossips the id and q asks).
    await e.libp2p.dial(p.libp2p.getMultiaddrs()[0])
    await poll('e sees p on the members topic', () => subscribers(e, MEMBERS_TOPIC).includes(p.id))
    for (let i = 0; i < 20 && p.view.node(e.id) === undefined; i++) await tickOf([p, q, e], 1000)
    await until('p knows e', () => p.view.node(e.id) !== undefined, [p.view], 'change')
    await until('q knows e', () => q.view.node(e.id) !== undefined, [q.view], 'change')
    expect(e.gossip.stats().sent).toMatchObject({ node: 1, member: 1 })
    expect(e.gossip.stats().republished).toBeGreaterThanOrEqual(2)
    for (const m of [p, q, e]) {
      expect(m.libp2p.services.fleetSync.stats()).toMatchObject({ pulls: 0, served: 0 })
      expect(m.pulls).toEqual([])
    }
    // Reached: nothing more is sent again.
    const republished = e.gossip.stats().republished
    await tickOf([p, q, e], 1000)
    expect(e.gossip.stats().republished).toBe(republished)
  })
})
