// Attack: a full node runs kad-dht as a server, so any peer that completes a Noise handshake — no
// grant, no record in the view — may send ADD_PROVIDER for made-up content ids. kad-dht stores each
// record for 48 h, and the mesh's datastore kept them all: a stranger grew every node's memory
// without end. Now (core/mesh/compact-datastore.ts) one peer outside the fleet keeps at most 1,024
// records on a node, outsiders together 16,384, and a fleet node's records are never pushed out for
// theirs. Checked with the per-peer bound lifted: the stranger's 3,000 records were all kept
// (expected 3000 to be 1024). The peer store, which kept an entry for every peer id that ever
// connected, is bounded too (with its bound lifted: "expected 42 to be 16").
import { describe, it, expect, afterAll } from 'vitest'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { KAD_PROTOCOL, type Mesh } from '../../core/mesh/index.ts'
import { generateAuthority } from '../../core/identity/index.ts'
import { artifactCid } from '../../node-host/artifacts/artifact-exchange.ts'
import { startHostMesh } from '../integration/host-mesh.ts'
import { CompactMemoryDatastore } from '../../core/mesh/compact-datastore.ts'
import { identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { grantPeer, type GrantPeer } from './grant-peers.ts'

const meshes: Mesh[] = []
const strangers: GrantPeer[] = []
afterAll(async () => {
  await Promise.all(strangers.map(async s => await s.node.stop()))
  await Promise.all(meshes.map(async m => await m.stop()))
}, 30_000)

// Protobuf by hand (kad-dht's dht.proto): Message { type = 1 (varint), key = 2, providerPeers = 9 },
// Peer { id = 1, addrs = 2 }; each message length-prefixed on the stream.
function varint (n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}
const field = (tag: number, bytes: Uint8Array): number[] => [tag, ...varint(bytes.byteLength), ...bytes]
function addProvider (cid: Uint8Array, peerId: Uint8Array, addr: Uint8Array): Uint8Array {
  const peer = Uint8Array.from([...field(10, peerId), ...field(18, addr)])
  const message = [8, 2, ...field(18, cid), ...field(74, peer)]
  return Uint8Array.from([...varint(message.length), ...message])
}

async function waitUntil (what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('kad-dht provider records from peers outside the fleet', () => {
  it('are kept up to 1,024 per peer and never push out a fleet node\'s, whatever a stranger sends', async () => {
    const authority = await generateAuthority()
    const { mesh: a } = await startHostMesh(authority, [])
    meshes.push(a)
    const { mesh: b } = await startHostMesh(authority, [a.libp2p.getMultiaddrs()[0].toString()])
    meshes.push(b)
    // b is a fleet node in a's view (its signed node record, host grant) before it provides.
    await waitUntil('b in a\'s view', () => a.view.node(b.peerId.toString()) !== undefined, 20_000)
    const tableSize = (m: Mesh): number => (m.libp2p.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
    await waitUntil('b in a\'s routing table', () => tableSize(b) > 0, 20_000)
    const fleetCids = Array.from({ length: 4 }, (_, i) => artifactCid(i.toString(16).padStart(64, 'f')))
    for (const cid of fleetCids) await b.libp2p.contentRouting.provide(cid, { signal: AbortSignal.timeout(10_000) })
    await waitUntil('b\'s records at a', () => (a.dhtStoreStats()?.providers ?? 0) >= fleetCids.length, 20_000)
    expect(a.dhtStoreStats()).toMatchObject({ providers: 4, outsiderProviders: 0 })

    const stranger = await grantPeer({ trusted: [] })
    strangers.push(stranger)
    await stranger.node.dial(a.libp2p.getMultiaddrs()[0])
    const stream = await stranger.node.dialProtocol(a.peerId, KAD_PROTOCOL)
    const id = stranger.node.peerId.toMultihash().bytes
    const addr = stranger.node.getMultiaddrs()[0].bytes
    const sent = 3000
    for (let i = 0; i < sent; i++) {
      const cid = CID.create(1, raw.code, await sha256.digest(new TextEncoder().encode(`made up ${i}`))).bytes
      if (!stream.send(addProvider(cid, id, addr))) await stream.onDrain()
    }
    // Every message handled: kept or refused.
    await waitUntil('the flood handled', () => { const s = a.dhtStoreStats()!; return s.outsiderProviders + s.providersRefused >= sent }, 30_000)
    stream.abort(new Error('done'))
    const stats = a.dhtStoreStats()!
    expect(stats.outsiderProviders).toBe(1024)
    expect(stats.providersRefused).toBe(sent - 1024)
    expect(stats.providers).toBe(1024 + fleetCids.length)
    // The fleet node's records are all still there and still served.
    for (const cid of fleetCids) {
      const found: string[] = []
      for await (const p of a.libp2p.contentRouting.findProviders(cid, { signal: AbortSignal.timeout(5_000) })) {
        found.push(p.id.toString())
        if (p.id.equals(b.peerId)) break
      }
      expect(found).toContain(b.peerId.toString())
    }
  }, 90_000)


  it('peers dialling in under ever new ids leave a bounded peer store; a fleet node\'s entry stays and libp2p works on', async () => {
    // libp2p's peer store keeps an entry for every peer id that ever connected and prunes one only
    // when it reads it 6 h later. Here the mesh's datastore has a bound of 16 entries (a full node's
    // is 8,192) and meets 40 throwaway ids, each dialling in and identifying itself.
    const authority = await generateAuthority()
    let a: Mesh | undefined
    const store = new CompactMemoryDatastore({ maxPeers: 16, isMember: (peer) => a?.view.node(peer) !== undefined })
    a = (await startHostMesh(authority, [], { libp2p: { datastore: store, connectionManager: { inboundConnectionThreshold: 1000 } } })).mesh
    meshes.push(a)
    const { mesh: b } = await startHostMesh(authority, [a.libp2p.getMultiaddrs()[0].toString()])
    meshes.push(b)
    await waitUntil('b in a\'s view', () => a.view.node(b.peerId.toString()) !== undefined, 20_000)
    // Entries written so far, kept or since dropped: each stranger's identify adds one.
    const written = (): number => { const d = store.stats(); return d.peers + d.peersEvicted }
    let last: GrantPeer | undefined
    for (let i = 0; i < 40; i++) {
      const stranger = await grantPeer({ trusted: [], services: () => ({ identify: identify(), ping: ping() }) })
      const before = written()
      await stranger.node.dial(a.libp2p.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
      await waitUntil(`stranger ${i} in a's peer store`, () => written() > before, 10_000)
      if (last !== undefined) await last.node.stop()
      last = stranger
    }
    strangers.push(last!)
    const stats = store.stats()
    expect(stats.peers).toBe(16)
    expect(stats.peersEvicted).toBeGreaterThanOrEqual(40 + 1 - 16)
    let stored = 0
    for await (const _ of a.datastore.queryKeys({ prefix: '/peers/' })) stored++
    expect(stored).toBe(16)
    // The fleet node's entry stayed, and the node still works with it and with the newest stranger.
    expect(await a.libp2p.peerStore.has(b.peerId)).toBe(true)
    const pinger = a.libp2p.services.ping as Ping
    expect(await pinger.ping(b.peerId, { signal: AbortSignal.timeout(5_000) })).toBeGreaterThanOrEqual(0)
    expect(await pinger.ping(last!.node.peerId, { signal: AbortSignal.timeout(5_000) })).toBeGreaterThanOrEqual(0)
  }, 90_000)
})
