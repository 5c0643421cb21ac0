// Storage bench: `npm run bench:storage [-- --sizes 64,512] [--json]`.
// For each claim size (MiB of random data in 16 MiB files): a full snapshot, a snapshot after ~10 %
// of the data changed, and a restore of the newest on a second node's storage; on the zfs driver
// (two file-backed zfs-fuse pools made and destroyed here) and on the dir driver, one run each,
// with the zfs figures as ratios of the dir ones. A zfs snapshot writes both manifests (plain
// image + ZFS stream); its restore uses the ZFS stream chain (full + incremental). The last row
// restores the plain image onto zfs: the path when the source had no ZFS.
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DirDriver } from '../../node-host/storage/dir.ts'
import type { StorageDriver } from '../../node-host/storage/driver.ts'
import { openZfsDriver } from '../../node-host/storage/zfs.ts'
import { restoreSnapshot, takeSnapshot } from '../../node-host/storage/snapshots.ts'
import type { SnapshotInfo } from '../../node-host/storage/snapshots.ts'
import { createTestPools } from '../storage/zfs-pool.ts'
import type { TestPool } from '../storage/zfs-pool.ts'

const MiB = 1024 * 1024
const FILE_BYTES = 16 * MiB
const args = process.argv.slice(2)
const json = args.includes('--json')
const sizesArg = args.indexOf('--sizes')
const sizes = (sizesArg >= 0 ? args[sizesArg + 1] : '64,512').split(',').map(s => Number(s) * MiB)
if (sizes.some(s => !Number.isSafeInteger(s) || s < FILE_BYTES)) throw new Error('--sizes takes MiB counts of at least 16, e.g. 64,512')

interface Figure { ms: number, bytes: number, detail: string }
interface Row { sizeBytes: number, op: string, zfs: Figure, dir?: Figure }

const claim = { cell: 'bench', ordinal: 0 }

async function fill (dir: string, sizeBytes: number): Promise<void> {
  for (let i = 0; i * FILE_BYTES < sizeBytes; i++) {
    const fh = await open(join(dir, `data-${String(i).padStart(3, '0')}.bin`), 'w')
    try {
      for (let off = 0; off < FILE_BYTES; off += 4 * MiB) await fh.write(randomBytes(4 * MiB))
    } finally { await fh.close() }
  }
}

/** Overwrite a tenth of every file in place (contiguous, so ZFS sees ~10 % of its blocks change). */
async function change (dir: string, sizeBytes: number): Promise<void> {
  for (let i = 0; i * FILE_BYTES < sizeBytes; i++) {
    const fh = await open(join(dir, `data-${String(i).padStart(3, '0')}.bin`), 'r+')
    const part = Math.floor(FILE_BYTES / 10)
    try {
      await fh.write(randomBytes(part), 0, part, FILE_BYTES / 4)
    } finally { await fh.close() }
  }
}

async function timed<T> (fn: () => Promise<T>): Promise<{ ms: number, value: T }> {
  const t = performance.now()
  const value = await fn()
  return { ms: performance.now() - t, value }
}

/** Progress on stderr (the table goes to stdout at the end). */
function progress (text: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`)
}

const snapBytes = (s: SnapshotInfo): number => s.plain.bytes + (s.zfs?.bytes ?? 0)
const snapDetail = (s: SnapshotInfo): string => s.zfs === undefined ? `plain ${mib(s.plain.bytes)}` : `plain ${mib(s.plain.bytes)} + zfs ${mib(s.zfs.bytes)}${s.zfs.baseTag !== undefined ? ' (incr.)' : ' (full)'}`
function mib (n: number): string { return `${(n / MiB).toFixed(1)} MiB` }

/** Snapshot full, change 10 %, snapshot again, restore the newest on `target`. */
async function run (driver: StorageDriver, target: StorageDriver, layoutDir: string, sizeBytes: number): Promise<Figure[]> {
  const quota = Math.ceil(sizeBytes * 1.5)
  const mount = await driver.create(claim, quota)
  progress(`${driver.kind} ${mib(sizeBytes)}: writing random data`)
  await fill(mount, sizeBytes)
  progress(`${driver.kind} ${mib(sizeBytes)}: snapshots and restores`)
  const t0 = Date.UTC(2026, 0, 1)
  const full = await timed(async () => await takeSnapshot({ driver, claim, epoch: 1, layoutDir, nowMs: t0 }))
  await change(mount, sizeBytes)
  const incr = await timed(async () => await takeSnapshot({ driver, claim, epoch: 1, layoutDir, nowMs: t0 + 60_000 }))
  const restore = await timed(async () => await restoreSnapshot({ driver: target, claim, layoutDir, tag: incr.value.tag, quotaBytes: quota }))
  const figures: Figure[] = [
    { ms: full.ms, bytes: snapBytes(full.value), detail: snapDetail(full.value) },
    { ms: incr.ms, bytes: snapBytes(incr.value), detail: snapDetail(incr.value) },
    { ms: restore.ms, bytes: restore.value.snapshot.sizeBytes, detail: `via ${restore.value.via}${restore.value.via === 'zfs' ? ', full + incr.' : ''}` }
  ]
  if (target.kind === 'zfs') {
    // The same snapshot again from its plain image (replacing the volume just received).
    const plain = await timed(async () => await restoreSnapshot({ driver: target, claim, layoutDir, tag: incr.value.tag, quotaBytes: quota, prefer: 'plain' }))
    figures.push({ ms: plain.ms, bytes: plain.value.snapshot.sizeBytes, detail: `via ${plain.value.via}` })
  }
  await driver.destroy(claim)
  await target.destroy(claim)
  await rm(layoutDir, { recursive: true, force: true })
  return figures
}

const pools: TestPool[] = []
const work = await mkdtemp(join(tmpdir(), 'cell-storage-bench-'))
const rows: Row[] = []
let failed: unknown
try {
  for (const sizeBytes of sizes) {
    const poolBytes = Math.max(1024 ** 3, sizeBytes * 3)
    const [a, b] = await createTestPools(2, { sizeBytes: poolBytes, prefix: 'cellbench' })
    pools.push(a, b)
    const zfs = await run(await openZfsDriver(a.name), await openZfsDriver(b.name), join(work, `zfs-${sizeBytes}`), sizeBytes)
    await Promise.all([a.destroy(), b.destroy()])
    const dir = await run(new DirDriver(join(work, `dir-a-${sizeBytes}`)), new DirDriver(join(work, `dir-b-${sizeBytes}`)), join(work, `dir-${sizeBytes}`), sizeBytes)
    rows.push(
      { sizeBytes, op: 'snapshot, full', zfs: zfs[0], dir: dir[0] },
      { sizeBytes, op: 'snapshot, 10 % changed', zfs: zfs[1], dir: dir[1] },
      { sizeBytes, op: 'restore newest', zfs: zfs[2], dir: dir[2] },
      { sizeBytes, op: 'restore plain image onto zfs', zfs: zfs[3] }
    )
  }
} catch (err) {
  failed = err
} finally {
  for (const p of pools) await p.destroy().catch(() => {})
  await rm(work, { recursive: true, force: true })
}
if (failed !== undefined) throw failed

if (json) {
  console.log(JSON.stringify(rows))
} else {
  console.log('storage bench: one run per figure, random data in 16 MiB files; zfs = zfs-fuse on file-backed pools, dir = plain directories under the temp dir')
  console.log(`${'claim'.padEnd(8)} ${'operation'.padEnd(30)} ${'zfs ms'.padStart(8)} ${'zfs bytes written / restored'.padEnd(40)} ${'dir ms'.padStart(8)} ${'dir bytes'.padEnd(22)} ${'zfs/dir time'.padStart(12)} ${'zfs/dir bytes'.padStart(13)}`)
  for (const r of rows) {
    const ratio = (a: number, b: number | undefined): string => b === undefined || b === 0 ? '' : `${(a / b).toFixed(2)}×`
    console.log(`${mib(r.sizeBytes).replace('.0 ', ' ').padEnd(8)} ${r.op.padEnd(30)} ${r.zfs.ms.toFixed(0).padStart(8)} ${`${mib(r.zfs.bytes)} (${r.zfs.detail})`.padEnd(40)} ${(r.dir?.ms.toFixed(0) ?? '-').padStart(8)} ${(r.dir !== undefined ? `${mib(r.dir.bytes)} (${r.dir.detail})` : '-').padEnd(22)} ${ratio(r.zfs.ms, r.dir?.ms).padStart(12)} ${ratio(r.zfs.bytes, r.dir?.bytes).padStart(13)}`)
  }
}
