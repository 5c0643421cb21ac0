// Snapshots restored elsewhere: a full stream and two incrementals taken on one pool restore on a
// second pool equal to the source; the plain image restores onto the dir driver; a flipped byte
// or a truncated chunk is refused by digest (never received), and the volume it would have
// replaced is untouched.
import { randomBytes } from 'node:crypto'
import { cp, lstat, mkdtemp, open, readFile, readdir, readlink, rm, symlink, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DirDriver } from '../../node-host/storage/dir.ts'
import { openZfsDriver } from '../../node-host/storage/zfs.ts'
import type { ZfsDriver } from '../../node-host/storage/zfs.ts'
import { listSnapshots, pruneSnapshots, restoreSnapshot, takeAndPrune, takeSnapshot } from '../../node-host/storage/snapshots.ts'
import type { SnapshotInfo } from '../../node-host/storage/snapshots.ts'
import { OciLayout } from '../../node-host/storage/oci-layout.ts'
import { SnapshotCorruptError, StaleSnapshotError } from '../../node-host/storage/errors.ts'
import { createTestPools } from './zfs-pool.ts'
import type { TestPool } from './zfs-pool.ts'

const MiB = 1024 * 1024
const claim = { cell: 'ledger', ordinal: 0 }
const T0 = Date.UTC(2026, 10, 30, 12, 0, 0)

let source: TestPool
let target: TestPool
let zfsA: ZfsDriver
let zfsB: ZfsDriver
let work: string
let layoutDir: string
const snaps: SnapshotInfo[] = []
const trees: Array<Record<string, string>> = []

async function tree (dir: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const path = rel === '' ? name : `${rel}/${name}`
    const st = await lstat(join(dir, path))
    if (st.isSymbolicLink()) out[path] = `-> ${await readlink(join(dir, path))}`
    else if (st.isDirectory()) { out[path] = 'dir'; Object.assign(out, await tree(dir, path)) } else out[path] = (await readFile(join(dir, path))).toString('hex')
  }
  return out
}

beforeAll(async () => {
  [source, target] = await createTestPools(2, { sizeBytes: 512 * MiB })
  zfsA = await openZfsDriver(source.name)
  zfsB = await openZfsDriver(target.name)
  work = await mkdtemp(join(tmpdir(), 'cell-restore-'))
  layoutDir = join(work, 'layout')

  // Full, then two incrementals, each after a change (append, new file, removed file, symlink).
  const mount = await zfsA.create(claim, 64 * MiB)
  await writeFile(join(mount, 'entries.log'), 'append 1\n')
  await writeFile(join(mount, 'blob.bin'), randomBytes(2 * MiB))
  trees.push(await tree(mount))
  snaps.push(await takeSnapshot({ driver: zfsA, claim, epoch: 1, layoutDir, nowMs: T0, limits: { chunkBytes: 256 * 1024 } }))
  await writeFile(join(mount, 'entries.log'), 'append 1\nappend 2\n')
  await writeFile(join(mount, 'second.bin'), randomBytes(300 * 1024))
  await symlink('entries.log', join(mount, 'latest'))
  trees.push(await tree(mount))
  snaps.push(await takeSnapshot({ driver: zfsA, claim, epoch: 1, layoutDir, nowMs: T0 + 60_000, limits: { chunkBytes: 256 * 1024 } }))
  await rm(join(mount, 'blob.bin'))
  await writeFile(join(mount, 'entries.log'), 'append 1\nappend 2\nappend 3\n')
  trees.push(await tree(mount))
  snaps.push(await takeSnapshot({ driver: zfsA, claim, epoch: 2, layoutDir, nowMs: T0 + 120_000, limits: { chunkBytes: 256 * 1024 } }))
}, 150_000)
afterAll(async () => {
  await Promise.all([source?.destroy(), target?.destroy()])
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

describe('restore', () => {
  it('a full stream then incrementals, each based on the one before', async () => {
    expect(snaps.map(s => s.tag)).toEqual(['snapshot-e1-20261130T120000Z', 'snapshot-e1-20261130T120100Z', 'snapshot-e2-20261130T120200Z'])
    expect(snaps.map(s => s.zfs?.baseTag)).toEqual([undefined, snaps[0].tag, snaps[1].tag])
    // The first stream holds 2 MiB of random data in 256 KiB chunks; the last increment is small.
    expect(snaps[0].zfs?.chunkDigests.length).toBeGreaterThanOrEqual(8)
    expect(snaps[2].zfs?.bytes).toBeLessThan(snaps[0].zfs?.bytes ?? 0)
    expect((await listSnapshots(layoutDir)).map(s => s.tag)).toEqual(snaps.map(s => s.tag))
  })

  it('full + 2 incrementals received on a second pool equal the source, and the chain continues there', async () => {
    const result = await restoreSnapshot({ driver: zfsB, claim, layoutDir, tag: snaps[2].tag, quotaBytes: 64 * MiB })
    expect(result.via).toBe('zfs')
    expect(result.mountpoint).toBe(`${target.mountpoint}/cell/ledger/0`)
    expect(await tree(result.mountpoint)).toEqual(trees[2])
    // Only the newest of the chain stays on the dataset: the others would hold blocks in its quota.
    expect(await zfsB.listSnapshots(claim)).toEqual([snaps[2].tag])
    // The restored dataset is a base for the next incremental.
    await writeFile(join(result.mountpoint, 'entries.log'), 'append 1\nappend 2\nappend 3\nappend 4\n')
    const next = await takeSnapshot({ driver: zfsB, claim, epoch: 3, layoutDir, nowMs: T0 + 180_000 })
    expect(next.zfs?.baseTag).toBe(snaps[2].tag)
    // An older snapshot of the chain restores too, replacing what is there.
    const older = await restoreSnapshot({ driver: zfsB, claim, layoutDir, tag: snaps[1].tag, quotaBytes: 64 * MiB })
    expect(older.via).toBe('zfs')
    expect(await tree(older.mountpoint)).toEqual(trees[1])
    await expect(restoreSnapshot({ driver: zfsB, claim, layoutDir, tag: snaps[1].tag, quotaBytes: 64 * MiB, minEpoch: 3 })).rejects.toBeInstanceOf(StaleSnapshotError)
  })

  it('the plain image restores onto the dir driver', async () => {
    const dir = new DirDriver(join(work, 'dir-node'))
    const result = await restoreSnapshot({ driver: dir, claim, layoutDir, tag: snaps[2].tag, quotaBytes: 64 * MiB })
    expect(result.via).toBe('plain')
    expect(await tree(result.mountpoint)).toEqual(trees[2])
  })

  it('a flipped byte or a truncated chunk is refused by digest; nothing of the target is lost', async () => {
    const bad = join(work, 'bad-layout')
    await cp(layoutDir, bad, { recursive: true })
    const layout = OciLayout.open(bad)
    // Flip one byte in the middle chunk of the second snapshot's stream.
    const flipped = snaps[1].zfs?.chunkDigests[0] ?? ''
    const fh = await open(layout.blobPath(flipped), 'r+')
    const byte = Buffer.alloc(1)
    await fh.read(byte, 0, 1, 100)
    byte[0] ^= 0x01
    await fh.write(byte, 0, 1, 100)
    await fh.close()

    const other = { cell: 'ledger', ordinal: 1 }
    const mount = await zfsB.create(other, 64 * MiB)
    await writeFile(join(mount, 'precious'), 'keep me')
    const err = await restoreSnapshot({ driver: zfsB, claim: { ...other }, layoutDir: bad, tag: snaps[2].tag, quotaBytes: 64 * MiB, prefer: 'zfs' }).catch((e: unknown) => e)
    // The claim check comes first: the snapshot is of ledger/0.
    expect((err as Error).name).toBe('InvalidStorageNameError')

    await writeFile(join(zfsB.mountpoint(claim), 'precious'), 'keep me')
    const before = await tree(zfsB.mountpoint(claim))
    const refused = await restoreSnapshot({ driver: zfsB, claim, layoutDir: bad, tag: snaps[2].tag, quotaBytes: 64 * MiB, prefer: 'zfs' }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(SnapshotCorruptError)
    expect((refused as SnapshotCorruptError).digest).toBe(flipped)
    expect(await tree(zfsB.mountpoint(claim))).toEqual(before)

    // Auto: the corrupt chain is skipped, the sound plain image restores.
    const fallback = await restoreSnapshot({ driver: zfsB, claim, layoutDir: bad, tag: snaps[2].tag, quotaBytes: 64 * MiB })
    expect(fallback.via).toBe('plain')
    expect(fallback.zfsSkipped).toBeInstanceOf(SnapshotCorruptError)
    expect(await tree(fallback.mountpoint)).toEqual(trees[2])

    // A truncated chunk (a broken transfer) and a truncated plain layer: both refused.
    const cut = snaps[0].zfs?.chunkDigests.at(-1) ?? ''
    await truncate(layout.blobPath(cut), 1000)
    await expect(restoreSnapshot({ driver: zfsB, claim, layoutDir: bad, tag: snaps[0].tag, quotaBytes: 64 * MiB, prefer: 'zfs' })).rejects.toSatisfy(e => e instanceof SnapshotCorruptError && e.digest === cut)
    await truncate(layout.blobPath(snaps[0].plain.layerDigest), 4096)
    const kept = await tree(zfsB.mountpoint(claim))
    await expect(restoreSnapshot({ driver: zfsB, claim, layoutDir: bad, tag: snaps[0].tag, quotaBytes: 64 * MiB })).rejects.toSatisfy(e => e instanceof SnapshotCorruptError && e.digest === snaps[0].plain.layerDigest)
    expect(await tree(zfsB.mountpoint(claim))).toEqual(kept)
  })

  it('pruning keeps the newest and the ZFS bases they need', async () => {
    const pruned = join(work, 'pruned-layout')
    await cp(layoutDir, pruned, { recursive: true })
    const all = await listSnapshots(pruned)
    expect(all).toHaveLength(4)
    // The newest is an incremental on the chain from the first full stream: all of it stays.
    expect((await pruneSnapshots({ layoutDir: pruned, keep: 1 })).removedTags).toEqual([])
    const result = await restoreSnapshot({ driver: zfsB, claim, layoutDir: pruned, tag: all[3].tag, quotaBytes: 64 * MiB })
    expect(result.via).toBe('zfs')

    // With at most one incremental per full stream, the third snapshot is full again: pruning to
    // one drops the first two from the layout (blobs too) and from the dataset.
    const short = { cell: 'ledger', ordinal: 2 }
    const shortDir = join(work, 'short-layout')
    const mount = await zfsA.create(short, 16 * MiB)
    const taken: SnapshotInfo[] = []
    for (let i = 0; i < 3; i++) {
      await writeFile(join(mount, `f${i}`), randomBytes(64 * 1024))
      taken.push(await takeSnapshot({ driver: zfsA, claim: short, epoch: 1, layoutDir: shortDir, nowMs: T0 + i * 1000, limits: { fullEvery: 1 } }))
    }
    expect(taken.map(s => s.zfs?.baseTag)).toEqual([undefined, taken[0].tag, undefined])
    const done = await pruneSnapshots({ layoutDir: shortDir, keep: 1, driver: zfsA, claim: short })
    expect(done.removedTags).toEqual([taken[0].tag, taken[1].tag])
    expect(await zfsA.listSnapshots(short)).toEqual([taken[2].tag])
    const onDisk = (await readdir(join(shortDir, 'blobs', 'sha256'))).map(h => `sha256:${h}`).sort()
    expect(onDisk).toEqual([...new Set(taken[2].blobs)].sort())
    const again = await restoreSnapshot({ driver: zfsB, claim: short, layoutDir: shortDir, tag: taken[2].tag, quotaBytes: 16 * MiB })
    expect(again.via).toBe('zfs')
    expect(await tree(again.mountpoint)).toEqual(await tree(mount))
  })
  it('an owner\'s volume keeps its newest `keep` snapshots: a claim rewritten between snapshots stays within its quota', async () => {
    // On the old code the node pruned the layout only: every snapshot stayed on the dataset holding
    // the blocks rewritten since, counted in the claim's quota, until the cell's own writes failed
    // with EDQUOT (at the fifth 2 MiB rewrite of this 10 MiB claim): six rewrites fit only if the
    // dataset keeps its newest two.
    const churn = { cell: 'ledger', ordinal: 3 }
    const dir = join(work, 'churn-layout')
    const mount = await zfsA.create(churn, 10 * MiB)
    const taken: SnapshotInfo[] = []
    // Two snapshots the old way (layout pruned, dataset not): both stay on the dataset.
    for (let i = 0; i < 2; i++) {
      await writeFile(join(mount, 'state.bin'), randomBytes(2 * MiB))
      taken.push(await takeSnapshot({ driver: zfsA, claim: churn, epoch: 1, layoutDir: dir, nowMs: T0 + i * 1000 }))
      await pruneSnapshots({ layoutDir: dir, keep: 1 })
    }
    expect(await zfsA.listSnapshots(churn)).toEqual(taken.map(s => s.tag))
    // Then as an owner does now, four times: the dataset keeps the newest two, the older ones
    // (those the old way left too) are destroyed.
    for (let i = 2; i < 6; i++) {
      await writeFile(join(mount, 'state.bin'), randomBytes(2 * MiB))
      taken.push(await takeAndPrune({ driver: zfsA, claim: churn, epoch: 1, layoutDir: dir, nowMs: T0 + i * 1000, keep: 2, onPruneError: (err) => { throw err } }))
      expect(await zfsA.listSnapshots(churn)).toEqual(taken.slice(-2).map(s => s.tag))
    }
    expect((await zfsA.usage(churn)).usedBytes).toBeLessThan(8 * MiB)
    // The newest restores, from the layout's ZFS chain, equal to the volume.
    const restored = await restoreSnapshot({ driver: zfsB, claim: churn, layoutDir: dir, tag: taken[5].tag, quotaBytes: 10 * MiB })
    expect(restored.via, String(restored.zfsSkipped)).toBe('zfs')
    expect(await tree(restored.mountpoint)).toEqual(await tree(mount))
  }, 120_000)
})
