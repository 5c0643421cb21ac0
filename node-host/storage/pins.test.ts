// Pinning decisions without a network (the real fetch, verify, provide and pin across four libp2p
// nodes is test/integration/snapshot-pins.test.ts): the rendezvous choice of holders, and a node
// short of disk refusing to pin (logged and counted, retried later) without fetching a byte.
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { FleetView, signRecord } from '../../core/fleet/index.ts'
import { ManualClock, makeNodeRecord, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { SnapshotAnnouncer } from './snapshot-records.ts'
import { SnapshotPinner, chooseHolders, rendezvousScore } from './pins.ts'

const ids = Array.from({ length: 12 }, (_, i) => `12D3KooWnode${i}`)

describe('chooseHolders', () => {
  it('picks the top scores, never the owner, and moves little when nodes come and go', () => {
    const top = chooseHolders('ledger/0', ids[0], ids, 2)
    expect(top).toHaveLength(2)
    expect(top).not.toContain(ids[0])
    const scores = ids.filter(id => id !== ids[0]).map(id => rendezvousScore('ledger/0', id)).sort((a, b) => b - a)
    expect(top.map(id => rendezvousScore('ledger/0', id))).toEqual(scores.slice(0, 2))
    // Removing a node that is not chosen changes nothing; removing a chosen one replaces only it.
    const other = ids.find(id => !top.includes(id) && id !== ids[0])!
    expect(chooseHolders('ledger/0', ids[0], ids.filter(id => id !== other), 2)).toEqual(top)
    const without = chooseHolders('ledger/0', ids[0], ids.filter(id => id !== top[0]), 2)
    expect(without[0]).toBe(top[1])
    // Other claims spread over other nodes.
    const spread = new Set(Array.from({ length: 20 }, (_, i) => chooseHolders(`ledger/${i}`, ids[0], ids, 2)).flat())
    expect(spread.size).toBeGreaterThan(4)
  })
})

describe('SnapshotPinner', () => {
  let root = ''
  afterEach(async () => { if (root !== '') await rm(root, { recursive: true, force: true }) })

  it('refuses to pin when the disk is short: counted, nothing fetched, tried again later', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-pins-'))
    const clock = new ManualClock(Date.now())
    const view = new FleetView({ clock, heartbeatMs: 3_600_000 })
    const selfKey = await generateKeyPair('Ed25519')
    const ownerKey = await generateKeyPair('Ed25519')
    const self = peerIdFromPrivateKey(selfKey).toString()
    const owner = peerIdFromPrivateKey(ownerKey).toString()
    for (const [key, id] of [[selfKey, self], [ownerKey, owner]] as const) await view.apply(await signRecord(key, 'node', makeNodeRecord(id, { sentMs: clock.now(), roles: ['full'] })), { from: id })
    const snapshot = makeSnapshotRecord(owner, { sentMs: clock.now(), sizeBytes: 10 * 1024 ** 2 })
    expect((await view.apply(await signRecord(ownerKey, 'snapshot', snapshot), { from: owner })).accepted).toBe(true)
    // No network: any use of libp2p would throw.
    const libp2p = new Proxy({}, { get: () => { throw new Error('the pinner must not touch the network when the disk is short') } }) as unknown as Libp2p
    const announcer = new SnapshotAnnouncer({ view, pubsub: { publish: async () => undefined }, privateKey: selfKey, grantsFor: () => [], clock })
    let free = 5 * 1024 ** 2
    const pinner = new SnapshotPinner({
      libp2p, view, announcer, dataDir: root, clock, retryMs: 60_000, minFreeBytes: 1024 ** 2,
      chainFor: () => new Uint8Array(0), eligible: async () => true, diskFree: async () => free
    })
    expect(await pinner.chosenHolders('ledger/0', owner)).toEqual([self])
    await pinner.pass()
    expect(pinner.stats()).toMatchObject({ refusedDisk: 1, pinned: 0, failures: 0, blobsFetched: 0 })
    expect(announcer.pins(snapshot)).toBe(false)
    expect(existsSync(join(root, 'snapshots', 'ledger', '0', 'blobs', 'sha256', snapshot.blobs[1].slice(7)))).toBe(false)
    // Backed off: the next pass does not ask again before retryMs.
    free = 0
    await pinner.pass()
    expect(pinner.stats().refusedDisk).toBe(1)
    clock.advance(60_001)
    await pinner.pass()
    expect(pinner.stats().refusedDisk).toBe(2)
  })
})
