import { describe, expect, it } from 'vitest'
import { Key } from 'interface-datastore'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CompactMemoryDatastore } from './compact-datastore.ts'

describe('the mesh datastore', () => {
  it('keeps its own compact copy of a value handed in as a view of a larger buffer', async () => {
    const store = new CompactMemoryDatastore()
    const slab = new Uint8Array(64 * 1024)
    const view = slab.subarray(100, 106)
    view.set([1, 2, 3, 4, 5, 6])
    await store.put(new Key('/dht/provider/a/b'), view)
    slab.fill(9)
    const stored = await store.get(new Key('/dht/provider/a/b'))
    expect([...stored]).toEqual([1, 2, 3, 4, 5, 6])
    expect(stored.buffer.byteLength).toBe(6)
    // Batches and putMany go through put.
    const batch = store.batch()
    batch.put(new Key('/b'), slab.subarray(0, 3))
    await batch.commit()
    expect((await store.get(new Key('/b'))).buffer.byteLength).toBe(3)
  })
})

describe('the mesh datastore bounds what other peers store in it', () => {
  const t = new Uint8Array([1])
  const provider = (cid: string, peer: string): Key => new Key(`/dht/provider/${cid}/${peer}`)
  const keys = async (store: CompactMemoryDatastore, prefix: string): Promise<string[]> => {
    const out: string[] = []
    for await (const k of store.queryKeys({ prefix })) out.push(k.toString())
    return out
  }
  const bounded = (members: string[] = []): CompactMemoryDatastore => new CompactMemoryDatastore({
    selfId: 'self', isMember: (p) => members.includes(p), maxProviders: 10, maxOutsiderProviders: 6, maxProvidersPerOutsider: 3, maxRecords: 4
  })

  it('refuses an outsider\'s records past its own share, and counts them', async () => {
    const store = bounded()
    for (let i = 0; i < 10; i++) await store.put(provider(`c${i}`, 'x'), t)
    expect(await keys(store, '/dht/provider/')).toEqual(['c0', 'c1', 'c2'].map(c => `/dht/provider/${c}/x`))
    expect(store.stats()).toMatchObject({ providers: 3, outsiderProviders: 3, providersRefused: 7, providersEvicted: 0 })
    // A refresh of a kept record is no new record; a removed one makes room again.
    await store.put(provider('c0', 'x'), t)
    expect(store.stats().providersRefused).toBe(7)
    await store.delete(provider('c1', 'x'))
    await store.put(provider('c9', 'x'), t)
    expect(await store.has(provider('c9', 'x'))).toBe(true)
    expect(store.stats()).toMatchObject({ providers: 3, outsiderProviders: 3 })
  })

  it('keeps the outsiders to their share, their oldest record going first', async () => {
    const store = bounded()
    for (const peer of ['x', 'y', 'z']) for (let i = 0; i < 3; i++) await store.put(provider(`${peer}${i}`, peer), t)
    expect(store.stats()).toMatchObject({ providers: 6, outsiderProviders: 6, providersEvicted: 3 })
    expect(await keys(store, '/dht/provider/')).toEqual(['y0', 'y1', 'y2', 'z0', 'z1', 'z2'].map(c => `/dht/provider/${c}/${c[0]}`))
    // x's records went: x has room again.
    await store.put(provider('x9', 'x'), t)
    expect(await store.has(provider('x9', 'x'))).toBe(true)
  })

  it('makes room for fleet members by dropping outsiders\' records, then older members\', never its own', async () => {
    const store = bounded(['m'])
    for (let i = 0; i < 4; i++) await store.put(provider(`s${i}`, 'self'), t)
    for (let i = 0; i < 3; i++) await store.put(provider(`o${i}`, 'o'), t)
    for (let i = 0; i < 6; i++) await store.put(provider(`m${i}`, 'm'), t)
    // 10 in all: the member's last three each pushed an outsider's record out.
    expect(store.stats()).toMatchObject({ providers: 10, outsiderProviders: 0, providersEvicted: 3 })
    await store.put(provider('m6', 'm'), t)
    expect(await store.has(provider('m0', 'm'))).toBe(false)
    expect(await store.has(provider('m6', 'm'))).toBe(true)
    // This node's own records always go in (here a member's oldest makes room).
    await store.put(provider('s4', 'self'), t)
    expect(await store.has(provider('m1', 'm'))).toBe(false)
    for (let i = 0; i < 5; i++) expect(await store.has(provider(`s${i}`, 'self'))).toBe(true)
    // An outsider finds no room: nothing of the fleet's goes for it.
    await store.put(provider('o9', 'o'), t)
    expect(await store.has(provider('o9', 'o'))).toBe(false)
    expect(store.stats()).toMatchObject({ outsiderProviders: 0 })
  })

  it('counts a peer that joined the fleet once, under its new standing', async () => {
    const members: string[] = []
    const store = bounded(members)
    await store.put(provider('c0', 'p'), t)
    members.push('p')
    await store.put(provider('c0', 'p'), t)
    expect(store.stats()).toMatchObject({ providers: 1, outsiderProviders: 0 })
    for (let i = 1; i < 9; i++) await store.put(provider(`c${i}`, 'p'), t)
    expect(store.stats()).toMatchObject({ providers: 9, providersRefused: 0 })
  })

  it('keeps the newest value records', async () => {
    const store = bounded()
    for (let i = 0; i < 7; i++) await store.put(new Key(`/dht/record/k${i}`), t)
    expect(await keys(store, '/dht/record/')).toEqual(['k3', 'k4', 'k5', 'k6'].map(k => `/dht/record/${k}`))
    expect(store.stats()).toMatchObject({ records: 4, recordsEvicted: 3 })
    // Other keys (the peer store's) are not the DHT's to bound.
    for (let i = 0; i < 20; i++) await store.put(new Key(`/peers/p${i}`), t)
    expect(await keys(store, '/peers/')).toHaveLength(20)
  })

  it('keeps the peer store to its bound, dropping the least recently written entry of a peer outside the fleet', async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const key = (i: number): Key => new Key(`/peers/${ids[i].toCID().toString()}`)
    const [self, member] = ids.map(id => id.toString())
    const store = new CompactMemoryDatastore({ selfId: self, isMember: (p) => p === member, maxPeers: 4 })
    for (let i = 0; i < 4; i++) await store.put(key(i), t)
    // Full: the oldest outsider's entry (2) goes for a new one; self (0) and the member (1) are older but stay.
    await store.put(key(4), t)
    expect(await store.has(key(0))).toBe(true)
    expect(await store.has(key(1))).toBe(true)
    expect(await store.has(key(2))).toBe(false)
    // Written again: no longer the oldest.
    await store.put(key(3), t)
    await store.put(key(5), t)
    expect(await store.has(key(3))).toBe(true)
    expect(await store.has(key(4))).toBe(false)
    expect(store.stats()).toMatchObject({ peers: 4, peersEvicted: 2 })
    // libp2p's own delete (a peer it prunes) frees its place.
    await store.delete(key(5))
    await store.put(key(6), t)
    expect(store.stats()).toMatchObject({ peers: 4, peersEvicted: 2 })
  })
})
