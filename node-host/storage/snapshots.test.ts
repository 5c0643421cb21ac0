// Snapshots on the dir driver (no ZFS needed; the zfs side is test/storage/*): tags, listing,
// restore, pruning with blob collection, limits, and the hostile or damaged layouts a peer could
// hand over (flipped byte, wrong digest, corrupt manifest, an archive escaping the volume).
import { createHash } from 'node:crypto'
import { mkdtemp, open, readFile, readdir, rm, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { Header } from 'tar'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DirDriver } from './dir.ts'
import { InvalidStorageNameError, SnapshotCorruptError, SnapshotLimitError, SnapshotNotFoundError } from './errors.ts'
import { MEDIA, OciLayout, REF_NAME } from './oci-layout.ts'
import { ANNOTATION, listSnapshots, pruneSnapshots, restoreSnapshot, snapshotTag, takeSnapshot } from './snapshots.ts'
import { claimId, parseClaimId } from './driver.ts'

const MiB = 1024 * 1024
const claim = { cell: 'ledger', ordinal: 0 }
const T0 = Date.UTC(2026, 10, 30, 9, 8, 7)
let work: string
let dir: DirDriver
let layoutDir: string

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'cell-snap-'))
  dir = new DirDriver(join(work, 'volumes'))
  layoutDir = join(work, 'layout')
})
afterEach(async () => { await rm(work, { recursive: true, force: true }) })

async function files (root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[join(e.parentPath, e.name).slice(root.length + 1)] = await readFile(join(e.parentPath, e.name), 'utf8')
  }
  return out
}

/** A hand-made plain image whose only layer is `tar`, tagged in the layout as a snapshot of ledger/0. */
async function plantImage (layout: OciLayout, tar: Uint8Array, tag: string): Promise<void> {
  const gz = gzipSync(tar)
  const layer = await layout.putBlob(gz, MEDIA.layerGzip)
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`
  const config = await layout.putJson({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } }, MEDIA.config)
  const annotations = { [ANNOTATION.tag]: tag, [ANNOTATION.epoch]: '1', [ANNOTATION.claim]: 'ledger/0', [ANNOTATION.takenMs]: String(T0), [ANNOTATION.sizeBytes]: '4' }
  const manifest = await layout.putJson({ schemaVersion: 2, mediaType: MEDIA.manifest, config, layers: [layer], annotations }, MEDIA.manifest)
  layout.setTags([{ tag, descriptor: manifest }])
}

function tarOf (entries: Array<{ path: string, type: string, body?: string, linkpath?: string }>): Uint8Array {
  const blocks: Buffer[] = []
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '')
    const h = new Header({ path: e.path, type: e.type as 'File', size: body.length, mode: 0o644, mtime: new Date(T0), ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}) })
    const block = Buffer.alloc(512)
    h.encode(block, 0)
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

describe('claims and tags', () => {
  it('claim ids and registry-valid tags', () => {
    expect(claimId(claim)).toBe('ledger/0')
    expect(parseClaimId('ledger/12')).toEqual({ cell: 'ledger', ordinal: 12 })
    for (const bad of ['ledger', 'Ledger/0', 'ledger/01', 'ledger/-1', '../x/0', 'ledger/0/1']) expect(() => parseClaimId(bad)).toThrow(InvalidStorageNameError)
    expect(snapshotTag(7, T0)).toBe('snapshot-e7-20261130T090807Z')
    expect(() => snapshotTag(-1, T0)).toThrow(InvalidStorageNameError)
  })
})

describe('snapshots on the dir driver', () => {
  it('take, list, restore over changed data, prune with blob collection', async () => {
    const mount = await dir.create(claim, 64 * MiB)
    await writeFile(join(mount, 'entries.log'), 'one\n')
    const s1 = await takeSnapshot({ driver: dir, claim, epoch: 1, layoutDir, nowMs: T0 })
    await writeFile(join(mount, 'entries.log'), 'one\ntwo\n')
    const s2 = await takeSnapshot({ driver: dir, claim, epoch: 1, layoutDir, nowMs: T0 })
    await mkdir(join(mount, 'sub'))
    await writeFile(join(mount, 'sub', 'x'), 'x')
    const s3 = await takeSnapshot({ driver: dir, claim, epoch: 2, layoutDir, nowMs: T0 - 1000 })
    // Same second, same epoch: a suffix; a higher epoch sorts later whatever its time.
    expect([s1.tag, s2.tag, s3.tag]).toEqual(['snapshot-e1-20261130T090807Z', 'snapshot-e1-20261130T090807Z-2', 'snapshot-e2-20261130T090806Z'])
    expect(s1.zfs).toBeUndefined()
    expect(s2.sizeBytes).toBe(8)
    expect((await listSnapshots(layoutDir)).map(s => s.tag)).toEqual([s1.tag, s2.tag, s3.tag])
    // The dir driver keeps no snapshot copies once the image is written.
    expect(await dir.listSnapshots(claim)).toEqual([])

    const r = await restoreSnapshot({ driver: dir, claim, layoutDir, tag: s2.tag, quotaBytes: 64 * MiB })
    expect(r.via).toBe('plain')
    expect(await files(r.mountpoint)).toEqual({ 'entries.log': 'one\ntwo\n' })

    const pruned = await pruneSnapshots({ layoutDir, keep: 1 })
    expect(pruned.removedTags).toEqual([s1.tag, s2.tag])
    expect(pruned.removedBlobs).toBeGreaterThan(0)
    const onDisk = (await readdir(join(layoutDir, 'blobs', 'sha256'))).map(h => `sha256:${h}`).sort()
    expect(onDisk).toEqual([...new Set(s3.blobs)].sort())
    await expect(restoreSnapshot({ driver: dir, claim, layoutDir, tag: s1.tag, quotaBytes: 64 * MiB })).rejects.toBeInstanceOf(SnapshotNotFoundError)
  })

  it('a flipped byte in the layer or a corrupt manifest is refused; the volume is untouched', async () => {
    const mount = await dir.create(claim, 64 * MiB)
    await writeFile(join(mount, 'entries.log'), 'data that matters\n')
    const s = await takeSnapshot({ driver: dir, claim, epoch: 1, layoutDir, nowMs: T0 })
    await writeFile(join(mount, 'entries.log'), 'newer data\n')
    const layout = OciLayout.open(layoutDir)
    const fh = await open(layout.blobPath(s.plain.layerDigest), 'r+')
    await fh.write(Buffer.from([0xff]), 0, 1, 20)
    await fh.close()
    await expect(restoreSnapshot({ driver: dir, claim, layoutDir, tag: s.tag, quotaBytes: 64 * MiB })).rejects.toSatisfy(e => e instanceof SnapshotCorruptError && e.digest === s.plain.layerDigest)
    expect(await files(mount)).toEqual({ 'entries.log': 'newer data\n' })

    await writeFile(layout.blobPath(s.plain.manifestDigest), '{"schemaVersion":2}')
    await expect(restoreSnapshot({ driver: dir, claim, layoutDir, tag: s.tag, quotaBytes: 64 * MiB })).rejects.toBeInstanceOf(SnapshotCorruptError)
    expect(await listSnapshots(layoutDir)).toEqual([])
  })

  it('an empty volume snapshots and restores; temporaries a crash left are removed', async () => {
    await dir.create(claim, MiB)
    const s = await takeSnapshot({ driver: dir, claim, epoch: 0, layoutDir, nowMs: T0 })
    expect(s.sizeBytes).toBe(0)
    const r = await restoreSnapshot({ driver: dir, claim, layoutDir, tag: s.tag, quotaBytes: MiB })
    expect(await readdir(r.mountpoint)).toEqual([])
    await writeFile(join(layoutDir, '.zfs-send-0123'), 'x')
    await writeFile(join(layoutDir, '.index.json.tmp-0123'), 'x')
    await writeFile(join(layoutDir, 'blobs', '.tmp-0123'), 'x')
    await OciLayout.open(layoutDir).removeTemporaryFiles()
    expect((await readdir(layoutDir)).sort()).toEqual(['blobs', 'index.json', 'oci-layout'])
    expect(await readdir(join(layoutDir, 'blobs'))).toEqual(['sha256'])
  })

  it('a blob received under the wrong digest is refused and not stored', async () => {
    const layout = OciLayout.open(layoutDir)
    const claimed = `sha256:${'0'.repeat(64)}`
    await expect(layout.importBlob(claimed, (async function * () { yield new Uint8Array([1, 2, 3]) })(), { maxBytes: 10 })).rejects.toBeInstanceOf(SnapshotCorruptError)
    expect(await layout.hasBlob(claimed)).toBe(false)
    await expect(layout.importBlob(claimed, (async function * () { yield new Uint8Array(11) })(), { maxBytes: 10 })).rejects.toBeInstanceOf(SnapshotLimitError)
    expect(await readdir(join(layoutDir, 'blobs'))).toEqual(['sha256'])
    const good = new Uint8Array([9, 9])
    const digest = `sha256:${createHash('sha256').update(good).digest('hex')}`
    await layout.importBlob(digest, (async function * () { yield good })(), { maxBytes: 10 })
    await layout.verifyBlob(digest, 2)
  })

  it('limits: too many entries to snapshot, more data than the claim to restore', async () => {
    const mount = await dir.create(claim, 64 * MiB)
    for (let i = 0; i < 5; i++) await writeFile(join(mount, `f${i}`), 'x'.repeat(1000))
    await expect(takeSnapshot({ driver: dir, claim, epoch: 1, layoutDir, nowMs: T0, limits: { maxEntries: 4 } })).rejects.toBeInstanceOf(SnapshotLimitError)
    expect(OciLayout.open(layoutDir).readIndex().manifests).toEqual([])
    expect(await dir.listSnapshots(claim)).toEqual([])
    const s = await takeSnapshot({ driver: dir, claim, epoch: 1, layoutDir, nowMs: T0 })
    await expect(restoreSnapshot({ driver: dir, claim, layoutDir, tag: s.tag, quotaBytes: 4000 })).rejects.toBeInstanceOf(SnapshotLimitError)
    expect(Object.keys(await files(mount))).toHaveLength(5)
  })

  it('an archive reaching outside the volume, or holding a device, is refused', async () => {
    const layout = OciLayout.open(layoutDir)
    await dir.create(claim, 64 * MiB)
    const cases: Array<[Uint8Array, RegExp]> = [
      [tarOf([{ path: '../escape', type: 'File', body: 'evil' }]), /outside the volume/],
      [tarOf([{ path: '/etc/escape', type: 'File', body: 'evil' }]), /outside the volume/],
      [tarOf([{ path: 'ok', type: 'File', body: 'fine' }, { path: 'hard', type: 'Link', linkpath: '../../outside' }]), /outside the volume/],
      [tarOf([{ path: 'dev', type: 'CharacterDevice' }]), /CharacterDevice entry/]
    ]
    for (const [i, [tar, reason]] of cases.entries()) {
      const tag = `bad-${i}`
      await plantImage(layout, tar, tag)
      const err = await restoreSnapshot({ driver: dir, claim, layoutDir, tag, quotaBytes: 64 * MiB }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(SnapshotLimitError)
      expect((err as Error).message).toMatch(reason)
    }
    expect(await readdir(join(work, 'volumes', 'cell', 'ledger'))).toEqual(['0'])
    expect(await readdir(work)).toEqual(['layout', 'volumes'])
    // A sound hand-made image restores: the checks above refused content, not the format.
    await plantImage(layout, tarOf([{ path: 'ok', type: 'File', body: 'fine' }]), 'good')
    const r = await restoreSnapshot({ driver: dir, claim, layoutDir, tag: 'good', quotaBytes: 64 * MiB })
    expect(await files(r.mountpoint)).toEqual({ ok: 'fine' })
    expect(layout.resolve('good')?.annotations?.[REF_NAME]).toBe('good')
  })
})
