// A ZFS claim's snapshot chain travels between nodes (issue 10 points 4 and 6): the owner takes a
// full and an incremental snapshot on its zfs-fuse pool; a node taking the claim over fetches the
// incremental one over /cell/snapshot-blob/1 (SnapshotPinner.fetchSnapshot brings the base it
// names too), and restores it from the ZFS stream onto its own pool, equal to the source.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FleetView, signRecord } from '../../core/fleet/index.ts'
import { systemClock } from '../../core/ports.ts'
import { openZfsDriver, type ZfsDriver } from '../../node-host/storage/zfs.ts'
import { layoutDirFor, listSnapshots, restoreSnapshot, takeSnapshot, type SnapshotInfo } from '../../node-host/storage/snapshots.ts'
import { serveSnapshotBlobs } from '../../node-host/storage/blob-exchange.ts'
import { SnapshotAnnouncer, snapshotRecordOf } from '../../node-host/storage/snapshot-records.ts'
import { SnapshotPinner } from '../../node-host/storage/pins.ts'
import { authority, grantPeer, type GrantPeer } from '../security/grant-peers.ts'
import { createTestPools, type TestPool } from './zfs-pool.ts'

const MiB = 1024 * 1024
const claim = { cell: 'ledger', ordinal: 0 }

let pools: TestPool[] = []
let peers: GrantPeer[] = []
let work = ''

afterAll(async () => {
  await Promise.all(peers.map(async p => await p.node.stop()))
  for (const p of pools) await p.destroy()
  if (work !== '') await rm(work, { recursive: true, force: true })
})

describe('a ZFS snapshot chain fetched from its owner', () => {
  let zfsA: ZfsDriver
  let zfsB: ZfsDriver
  beforeAll(async () => {
    pools = await createTestPools(2, { sizeBytes: 256 * MiB })
    zfsA = await openZfsDriver(pools[0].name)
    zfsB = await openZfsDriver(pools[1].name)
    work = await mkdtemp(join(tmpdir(), 'cell-zfs-fetch-'))
  }, 150_000)

  it('restores the incremental from the ZFS stream on the new owner\'s pool', async () => {
    const fleet = await authority()
    const owner = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    const heir = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    peers = [owner, heir]
    const ownerDir = join(work, 'owner')
    const heirDir = join(work, 'heir')
    await serveSnapshotBlobs(owner.node, { view: { claimants: () => [fleet.id] }, trusted: new Set([fleet.id]), dataDir: ownerDir })

    const mount = await zfsA.create(claim, 64 * MiB)
    await writeFile(join(mount, 'entries.log'), 'append 1\n')
    await writeFile(join(mount, 'blob.bin'), randomBytes(MiB))
    const T0 = Date.UTC(2026, 10, 30, 12, 0, 0)
    const snaps: SnapshotInfo[] = []
    snaps.push(await takeSnapshot({ driver: zfsA, claim, epoch: 1, layoutDir: layoutDirFor(ownerDir, claim), nowMs: T0, limits: { chunkBytes: 256 * 1024 } }))
    await writeFile(join(mount, 'entries.log'), 'append 1\nappend 2\n')
    snaps.push(await takeSnapshot({ driver: zfsA, claim, epoch: 1, layoutDir: layoutDirFor(ownerDir, claim), nowMs: T0 + 60_000, limits: { chunkBytes: 256 * 1024 } }))
    expect(snaps[1].zfs?.baseTag).toBe(snaps[0].tag)

    // The heir's view holds the owner's records (gossip's part, done by hand here).
    const view = new FleetView({ clock: systemClock })
    const ownerId = owner.credentials.peerId
    for (const [i, info] of snaps.entries()) {
      const record = { ...snapshotRecordOf(info, ownerId, []), seq: i + 1, sentMs: Date.now() }
      expect((await view.apply(await signRecord(owner.key, 'snapshot', record), { from: ownerId })).accepted).toBe(true)
    }
    await heir.node.dial(owner.node.getMultiaddrs()[0])
    const announcer = new SnapshotAnnouncer({ view, pubsub: { publish: async () => undefined }, privateKey: heir.key, grantsFor: () => [] })
    const chain = await heir.credentials.chainFor(fleet.id)
    const pinner = new SnapshotPinner({ libp2p: heir.node, view, announcer, dataDir: heirDir, chainFor: () => chain, eligible: async () => true, provide: false })
    const newest = view.snapshots('ledger/0')[0]
    expect(newest.tag).toBe(snaps[1].tag)
    const layoutDir = await pinner.fetchSnapshot(newest)
    expect((await listSnapshots(layoutDir)).map(s => [s.tag, s.zfs?.baseTag])).toEqual([[snaps[0].tag, undefined], [snaps[1].tag, snaps[0].tag]])

    const restored = await restoreSnapshot({ driver: zfsB, claim, layoutDir, tag: newest.tag, quotaBytes: 64 * MiB, prefer: 'zfs' })
    expect(restored.via).toBe('zfs')
    expect(await readFile(join(restored.mountpoint, 'entries.log'), 'utf8')).toBe('append 1\nappend 2\n')
    expect(Buffer.compare(await readFile(join(restored.mountpoint, 'blob.bin')), await readFile(join(mount, 'blob.bin')))).toBe(0)
  }, 180_000)
})
