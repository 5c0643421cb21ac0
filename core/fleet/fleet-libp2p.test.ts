// Integration: real libp2p nodes (TCP + noise + yamux + identify + gossipsub) on 127.0.0.1 in one
// process. The fleet layer runs on a shared ManualClock with a 60 s heartbeat, so heartbeats
// happen only when the test advances the clock: anything a node learns otherwise came from sync.
import { describe, it, expect, afterAll } from 'vitest'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Identify } from '@libp2p/identify'
import type { ReleaseFields } from './records.ts'
import { FLEET_TOPIC } from './records.ts'
import { FleetGossip } from './gossip.ts'
import type { LocalInstanceState } from './gossip.ts'
import { fleetSync } from './sync.ts'
import type { FleetSync } from './sync.ts'
import { FleetView } from './view.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord, until } from './testing.ts'

const HEARTBEAT_MS = 60_000
const clock = new ManualClock(Date.now())

const verify = async (signed: Uint8Array): Promise<ReleaseFields> => {
  const text = new TextDecoder().decode(signed)
  if (!text.startsWith('ok:')) throw new Error('bad signature')
  return JSON.parse(text.slice(3))
}

interface Member {
  name: string
  libp2p: Libp2p<{ identify: Identify, pubsub: GossipSub, fleetSync: FleetSync }>
  view: FleetView
  gossip: FleetGossip
  id: string
}

const members: Member[] = []

async function member (name: string): Promise<Member> {
  const privateKey = await generateKeyPair('Ed25519')
  const view = new FleetView({ clock, heartbeatMs: HEARTBEAT_MS, verifyRelease: verify, verifyDesired: verify })
  const libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign' }),
      fleetSync: fleetSync({ view, autoPull: 1 })
    }
  })
  const id = libp2p.peerId.toString()
  const { nodeId: _n, seq: _s, sentMs: _t, ...node } = makeNodeRecord(id, { startedMs: clock.now() })
  const { nodeId: _n2, seq: _s2, sentMs: _t2, ...inst } = makeInstanceRecord(id, { instanceId: `${name}-1`, cell: 'billing', startedMs: clock.now() })
  const gossip = new FleetGossip({
    pubsub: libp2p.services.pubsub,
    view,
    clock,
    privateKey,
    heartbeatMs: HEARTBEAT_MS,
    localNode: () => node,
    localInstances: (): LocalInstanceState[] => [inst]
  })
  const m = { name, libp2p, view, gossip, id }
  members.push(m)
  return m
}

/**
 * Advances the shared clock by `advanceMs`, waits until every running gossip finished its tick
 * and every running view received every running node's new record (received at the new time).
 */
async function heartbeat (running: Member[], advanceMs: number): Promise<void> {
  const before = running.map(m => m.gossip.stats().ticks)
  const ticked = Promise.all(running.map(async (m, i) => {
    await until(`${m.name} heartbeat`, () => m.gossip.stats().ticks > before[i], [m.gossip], 'heartbeat')
  }))
  clock.advance(advanceMs)
  await ticked
  for (const m of running) {
    await until(`${m.name} receives this heartbeat`, () => running.every(o => m.view.lastSeenMs('node', o.id) === clock.now()), [m.view], 'change')
  }
}

afterAll(async () => {
  for (const m of members) {
    m.gossip.stop()
    await m.libp2p.stop()
  }
})

describe('fleet over real libp2p nodes', () => {
  it('propagates heartbeats, expires a stopped node and syncs a late joiner at once', async () => {
    const [a, b, c] = [await member('a'), await member('b'), await member('c')]
    await b.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await c.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await c.libp2p.dial(b.libp2p.getMultiaddrs()[0])
    for (const m of [a, b, c]) m.gossip.start()
    for (const m of [a, b, c]) {
      await until(`${m.name} sees fleet subscribers`, () => m.libp2p.services.pubsub.getSubscribers(FLEET_TOPIC).length === 2,
        [m.libp2p.services.pubsub as unknown as EventTarget], 'subscription-change')
    }

    // First heartbeat: every node learns every node and instance.
    await heartbeat([a, b, c], 0)
    for (const m of [a, b, c]) {
      await until(`${m.name} sees 3 instances`, () => m.view.liveInstances('billing').length === 3, [m.view], 'change')
      expect(m.view.nodes()).toHaveLength(3)
    }
    expect(a.view.node(c.id)?.capacity.slots).toBe(8)
    expect(b.view.liveInstances('billing').map(i => i.instanceId).sort()).toEqual(['a-1', 'b-1', 'c-1'])
    expect(a.gossip.stats().received.accept).toBeGreaterThanOrEqual(2)

    // A release gossiped on the release topic reaches everyone.
    const signed = new TextEncoder().encode('ok:' + JSON.stringify({ cell: 'billing', version: '2.0.0', digest: 'sha256:' + '0'.repeat(64), authority: 'auth', seq: 5 }))
    await a.gossip.publishRelease(signed)
    for (const m of [b, c]) await until(`${m.name} sees the release`, () => m.view.release('billing')?.seq === 5, [m.view], 'change')

    // C stops; A and B keep heartbeating; C's records expire after 3 × heartbeat.
    c.gossip.stop()
    await c.libp2p.stop()
    for (let i = 0; i < 3; i++) await heartbeat([a, b], HEARTBEAT_MS)
    for (const m of [a, b]) {
      expect(m.view.node(c.id)).toBeUndefined()
      expect(m.view.nodes().map(n => n.nodeId).sort()).toEqual([a.id, b.id].sort())
      expect(m.view.liveInstances('billing').map(i => i.instanceId).sort()).toEqual(['a-1', 'b-1'])
      expect(m.view.stats().expired).toEqual({ node: 1, instance: 1 })
    }

    // D joins late and connects only to A. The clock does not move, so no heartbeat can fire:
    // only fleet-sync can give D the view.
    const d = await member('d')
    d.gossip.start()
    const servedBefore = a.libp2p.services.fleetSync.stats().served
    const joinedAt = clock.now()
    const started = Date.now()
    await d.libp2p.dial(a.libp2p.getMultiaddrs()[0])
    await until('d has the view', () =>
      d.view.nodes().length === 2 && d.view.liveInstances('billing').length === 2 && d.view.release('billing')?.seq === 5,
    [d.view], 'change')
    expect(clock.now()).toBe(joinedAt)
    expect(Date.now() - started).toBeLessThan(HEARTBEAT_MS)
    expect(d.gossip.stats().ticks).toBe(0)
    expect(d.gossip.stats().received.accept).toBe(0)
    await until('d finished its pull', () => d.libp2p.services.fleetSync.stats().pulls === 1, [d.libp2p.services.fleetSync], 'pulled')
    await until('a finished serving', () => a.libp2p.services.fleetSync.stats().served === servedBefore + 1, [a.libp2p.services.fleetSync], 'served')
    expect(d.libp2p.services.fleetSync.stats().pullFailures).toBe(0)
    // Merged records keep the origin's age: they expire on the same schedule as in A's view.
    expect(d.view.lastSeenMs('node', b.id)).toBe(a.view.lastSeenMs('node', b.id))
    for (const m of [a, b, d]) {
      const { bytes } = m.gossip.stats()
      // Fleet mode uses the fleet and release topics only (per-cell-libp2p.test.ts prints that mode's bytes).
      expect(bytes.out.members + bytes.out.cells + bytes.in.members + bytes.in.cells).toBe(0)
      console.log(`fleet ${m.name}: out ${JSON.stringify(bytes.out)} in ${JSON.stringify(bytes.in)}`)
    }
    expect(a.gossip.stats().bytes.out.fleet).toBeGreaterThan(0)
    expect(a.gossip.stats().bytes.out.releases).toBeGreaterThan(0)
  })
})
