// A snapshot's plain image is a real OCI image: Debian's skopeo reads its tag, digest and
// annotations, and umoci unpacks it to the volume's files byte for byte. The ZFS artifact sits
// beside it in the same index (tag `<tag>.zfs`, subject = the plain image) without disturbing them.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile, lstat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openZfsDriver } from '../../node-host/storage/zfs.ts'
import type { ZfsDriver } from '../../node-host/storage/zfs.ts'
import { ANNOTATION, takeSnapshot } from '../../node-host/storage/snapshots.ts'
import { MEDIA, OciLayout } from '../../node-host/storage/oci-layout.ts'
import { createTestPool } from './zfs-pool.ts'
import type { TestPool } from './zfs-pool.ts'

const exec = promisify(execFile)
const MiB = 1024 * 1024

let pool: TestPool
let zfs: ZfsDriver
let work: string

beforeAll(async () => {
  pool = await createTestPool({ sizeBytes: 512 * MiB })
  zfs = await openZfsDriver(pool.name)
  work = await mkdtemp(join(tmpdir(), 'cell-oci-'))
}, 150_000)
afterAll(async () => {
  await pool?.destroy()
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

/** Every entry under `dir`: path → file bytes (hex), `dir`, or `-> target` for a symlink. */
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

describe('snapshot images read by skopeo and umoci', () => {
  it('skopeo inspects tag and annotations; umoci unpacks the files byte for byte', async () => {
    const claim = { cell: 'ledger', ordinal: 0 }
    const mount = await zfs.create(claim, 64 * MiB)
    await writeFile(join(mount, 'entries.log'), 'append 5\nappend 7\n')
    await writeFile(join(mount, 'random.bin'), randomBytes(3 * MiB + 17))
    await writeFile(join(mount, 'empty'), '')
    await mkdir(join(mount, 'nested', 'deeper'), { recursive: true })
    await writeFile(join(mount, 'nested', 'deeper', 'ünïcode name.txt'), 'ok')
    await symlink('entries.log', join(mount, 'latest'))
    const source = await tree(mount)

    const layoutDir = join(work, 'layout')
    const takenMs = Date.UTC(2026, 10, 30, 11, 22, 33, 456)
    const info = await takeSnapshot({ driver: zfs, claim, epoch: 3, layoutDir, nowMs: takenMs })
    expect(info.tag).toBe('snapshot-e3-20261130T112233Z')
    expect(info.epoch).toBe(3)
    expect(info.claim).toBe('ledger/0')
    expect(info.sizeBytes).toBe(18 + 3 * MiB + 17 + 2)
    expect(info.zfs?.baseTag).toBeUndefined()
    expect(info.zfs?.chunkDigests.length).toBeGreaterThan(0)

    const { stdout } = await exec('skopeo', ['inspect', `oci:${layoutDir}:${info.tag}`])
    const inspected = JSON.parse(stdout) as { Digest: string, Labels: Record<string, string>, Layers: string[], Os: string, Created: string }
    expect(inspected.Digest).toBe(info.plain.manifestDigest)
    expect(inspected.Layers).toEqual([info.plain.layerDigest])
    expect(inspected.Os).toBe('linux')
    expect(inspected.Labels[ANNOTATION.epoch]).toBe('3')
    expect(inspected.Labels[ANNOTATION.claim]).toBe('ledger/0')
    expect(inspected.Labels[ANNOTATION.takenMs]).toBe(String(takenMs))
    expect(inspected.Labels[ANNOTATION.sizeBytes]).toBe(String(info.sizeBytes))
    expect(new Date(inspected.Created).getTime()).toBe(takenMs)
    const { stdout: raw } = await exec('skopeo', ['inspect', '--raw', `oci:${layoutDir}:${info.tag}`])
    const manifest = JSON.parse(raw) as { annotations: Record<string, string>, layers: Array<{ mediaType: string }> }
    expect(manifest.annotations[ANNOTATION.tag]).toBe(info.tag)
    expect(manifest.annotations['org.opencontainers.image.created']).toBe('2026-11-30T11:22:33.456Z')
    expect(manifest.layers.map(l => l.mediaType)).toEqual([MEDIA.layerGzip])

    // The ZFS artifact: in the same index, an artifact of the plain image.
    const { stdout: zraw } = await exec('skopeo', ['inspect', '--raw', `oci:${layoutDir}:${info.tag}.zfs`])
    const artifact = JSON.parse(zraw) as { artifactType: string, subject: { digest: string }, layers: Array<{ mediaType: string, digest: string }>, config: { mediaType: string } }
    expect(artifact.artifactType).toBe('application/vnd.cell.zfs-send.v1')
    expect(artifact.subject.digest).toBe(info.plain.manifestDigest)
    expect(artifact.config.mediaType).toBe(MEDIA.empty)
    expect(artifact.layers.map(l => l.digest)).toEqual(info.zfs?.chunkDigests)

    const bundle = join(work, 'bundle')
    await exec('umoci', ['unpack', '--image', `${layoutDir}:${info.tag}`, bundle], { timeout: 60_000 })
    expect(await tree(join(bundle, 'rootfs'))).toEqual(source)

    // Every blob the layout holds is named by the snapshot, and each hashes to its name.
    const layout = OciLayout.open(layoutDir)
    const onDisk = (await readdir(join(layoutDir, 'blobs', 'sha256'))).map(h => `sha256:${h}`).sort()
    expect([...new Set(info.blobs)].sort()).toEqual(onDisk)
    for (const digest of onDisk) await layout.verifyBlob(digest)
  })

  it('an empty volume is an image too', async () => {
    const claim = { cell: 'ledger', ordinal: 1 }
    await zfs.create(claim, 8 * MiB)
    const layoutDir = join(work, 'empty-layout')
    const info = await takeSnapshot({ driver: zfs, claim, epoch: 0, layoutDir, nowMs: Date.UTC(2026, 10, 30) })
    expect(info.sizeBytes).toBe(0)
    const { stdout } = await exec('skopeo', ['inspect', `oci:${layoutDir}:${info.tag}`])
    expect((JSON.parse(stdout) as { Digest: string }).Digest).toBe(info.plain.manifestDigest)
    const bundle = join(work, 'empty-bundle')
    await exec('umoci', ['unpack', '--image', `${layoutDir}:${info.tag}`, bundle], { timeout: 60_000 })
    expect(await readdir(join(bundle, 'rootfs'))).toEqual([])
  })
})
