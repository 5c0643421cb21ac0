// Anti-entropy: a node that missed a record (a gossiped release or heartbeat it never received)
// gets it from the periodic fleet-sync pull of a random connected peer, over real libp2p streams.
// On the code before this test (no periodic pull; fleet-sync pulled only on the first identify),
// the client's view never learns the record added after it connected: the 'pulled' wait times out.
import { describe, it, expect, afterEach } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signRecord } from './sign.ts'
import { fleetSync, type FleetSync } from './sync.ts'
import { ManualClock, makeInstanceRecord } from './testing.ts'
import { FleetView } from './view.ts'

const nodes: Libp2p[] = []
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop()
})

async function peer (view: FleetView, clock: ManualClock, init: { antiEntropyMs?: number, antiEntropyPeer?: (id: string) => boolean } = {}): Promise<Libp2p<{ fleetSync: FleetSync }>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), fleetSync: fleetSync({ view, clock, autoPull: 0, random: { next: () => 0.5, bytes: (l) => new Uint8Array(l) }, ...init }) }
  })
  nodes.push(n)
  return n
}

function once (target: EventTarget, type: string, timeoutMs: number): Promise<Event> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ${type} within ${timeoutMs} ms`)) }, timeoutMs)
    target.addEventListener(type, (evt) => { clearTimeout(timer); resolve(evt) }, { once: true })
  })
}

describe('fleet-sync anti-entropy', () => {
  it('pulls a record the node missed from a connected peer on its next round', async () => {
    const clock = new ManualClock()
    const serverView = new FleetView({ clock, heartbeatMs: 60_000 })
    const server = await peer(serverView, clock)
    const view = new FleetView({ clock, heartbeatMs: 60_000 })
    const client = await peer(view, clock, { antiEntropyMs: 30_000 })
    const identified = once(client, 'peer:identify', 10_000)
    await client.dial(server.getMultiaddrs()[0])
    await identified

    // A heartbeat the client never heard (gossip lost it): only anti-entropy can bring it.
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    await serverView.apply(await signRecord(key, 'instance', makeInstanceRecord(id, { instanceId: 'missed', sentMs: clock.now() })), { from: id })
    expect(view.instances()).toHaveLength(0)

    const pulled = once(client.services.fleetSync, 'pulled', 10_000)
    clock.advance(30_000) // random 0.5 → exactly the period
    await pulled
    expect(view.instances().map(i => i.instanceId)).toEqual(['missed'])
  }, 30_000)

  it('pulls only from peers the filter admits, and not at all when disabled', async () => {
    const clock = new ManualClock()
    const serverView = new FleetView({ clock, heartbeatMs: 60_000 })
    const server = await peer(serverView, clock)
    const view = new FleetView({ clock, heartbeatMs: 60_000 })
    const client = await peer(view, clock, { antiEntropyMs: 30_000, antiEntropyPeer: () => false })
    const identified = once(client, 'peer:identify', 10_000)
    await client.dial(server.getMultiaddrs()[0])
    await identified
    expect(await client.services.fleetSync.antiEntropyRound()).toBeUndefined()
    expect(client.services.fleetSync.stats().pulls).toBe(0)
  }, 30_000)
})
