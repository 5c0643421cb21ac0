// The two manifests of one snapshot (DESIGN §6), written into an OciLayout:
//  (a) a plain image: one tar+gzip layer of the volume's files and a config whose rootfs.diff_ids
//      names the uncompressed tar, so skopeo and umoci read it and any driver restores it;
//  (b) a ZFS artifact (artifactType application/vnd.cell.zfs-send.v1, config = the empty JSON
//      blob, subject = the plain image): the `zfs send` stream cut into fixed-size chunks, one
//      blob each, so a broken transfer resumes per blob (zfs-fuse has no resume tokens).
import { createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { createGunzip, createGzip } from 'node:zlib'
import { MEDIA, EMPTY_JSON } from './oci-layout.ts'
import type { Descriptor, OciLayout } from './oci-layout.ts'
import { SnapshotCorruptError, SnapshotLimitError } from './errors.ts'
import { extractTar, listTree, tarStream } from './tar-layer.ts'
import type { TarLimits } from './tar-layer.ts'

export interface PlainImage {
  manifest: Descriptor
  config: Descriptor
  layer: Descriptor
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids[0]). */
  diffId: string
  /** Bytes of file data in the volume. */
  fileBytes: number
  entries: number
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }

/**
 * Write the plain image of the files under `dir`. `annotations(fileBytes)` go on the manifest and
 * (as labels, which `skopeo inspect` shows) on the config.
 */
export async function writePlainImage (layout: OciLayout, dir: string, options: {
  annotations: (fileBytes: number) => Record<string, string>
  createdIso: string
  limits: TarLimits
  gzipLevel: number
  signal?: AbortSignal
}): Promise<PlainImage> {
  const listing = await listTree(dir, options.limits)
  const annotations = options.annotations(listing.fileBytes)
  const diff = createHash('sha256')
  let blobs: Array<{ digest: string, size: number }> = []
  await pipeline(
    tarStream(dir, listing),
    async function * (source: AsyncIterable<Uint8Array>) { for await (const c of source) { diff.update(c); yield c } },
    createGzip({ level: options.gzipLevel }),
    async (source: AsyncIterable<Uint8Array>) => { blobs = await layout.putBlobStream(source, { maxBytes: Number.MAX_SAFE_INTEGER, signal: options.signal }) },
    { signal: options.signal }
  )
  const diffId = `sha256:${diff.digest('hex')}`
  const layer: Descriptor = { mediaType: MEDIA.layerGzip, digest: blobs[0].digest, size: blobs[0].size }
  const config = await layout.putJson({
    created: options.createdIso,
    architecture: ARCH[process.arch] ?? process.arch,
    os: 'linux',
    config: { Labels: annotations },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: options.createdIso, created_by: 'cell snapshot', comment: 'the files of one volume claim' }]
  }, MEDIA.config)
  const manifest = await layout.putJson({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config,
    layers: [layer],
    annotations
  }, MEDIA.manifest)
  return { manifest, config, layer, diffId, fileBytes: listing.fileBytes, entries: listing.paths.length }
}

export interface ZfsArtifact {
  manifest: Descriptor
  chunks: Descriptor[]
  streamBytes: number
}

/**
 * Store a `zfs send` stream as chunk blobs and write the artifact manifest pointing at them.
 * `subject` may still be being written (the plain image, made at the same time): it is awaited
 * once the stream is stored.
 */
export async function writeZfsArtifact (layout: OciLayout, stream: AsyncIterable<Uint8Array>, options: {
  subject: Promise<Descriptor>
  annotations: Record<string, string>
  chunkBytes: number
  maxChunks: number
  signal?: AbortSignal
}): Promise<ZfsArtifact> {
  const pieces = await layout.putBlobStream(stream, { maxBytes: options.chunkBytes * options.maxChunks, chunkBytes: options.chunkBytes, maxChunks: options.maxChunks, signal: options.signal })
  const streamBytes = pieces.reduce((n, p) => n + p.size, 0)
  const chunks = pieces.map(p => ({ mediaType: MEDIA.zfsChunk, digest: p.digest, size: p.size }))
  const empty = await layout.putBlob(EMPTY_JSON, MEDIA.empty)
  const manifest = await layout.putJson({
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    artifactType: MEDIA.zfsArtifact,
    config: empty,
    layers: chunks,
    subject: await options.subject,
    annotations: { ...options.annotations, 'cell.zfs.stream-bytes': String(streamBytes) }
  }, MEDIA.manifest)
  return { manifest: { ...manifest, artifactType: MEDIA.zfsArtifact }, chunks, streamBytes }
}

/** The chunks of one artifact, read back in order, each checked against its digest as it streams. */
export async function * chunkStream (layout: OciLayout, chunks: readonly Descriptor[], signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield * layout.readBlob(c.digest, c.size, signal)
}

/**
 * Extract a plain image layer into `dest`: the gzip blob is hashed as it is read (its digest was
 * verified whole before), the tar is hashed against `diffId`, and the archive is bounded by
 * `limits` (file data) plus room for headers.
 */
export async function extractPlainLayer (layout: OciLayout, layer: Descriptor, diffId: string, dest: string, limits: TarLimits, signal?: AbortSignal): Promise<void> {
  const diff = createHash('sha256')
  const maxTarBytes = limits.maxBytes + limits.maxEntries * 1536 + 1024 * 1024
  let tarBytes = 0
  await pipeline(
    layout.readBlob(layer.digest, layer.size, signal),
    createGunzip(),
    async (source: AsyncIterable<Uint8Array>) => {
      const counted = (async function * () {
        for await (const c of source) {
          tarBytes += c.byteLength
          if (tarBytes > maxTarBytes) throw new SnapshotLimitError(`the layer unpacks to more than ${maxTarBytes} bytes`)
          diff.update(c)
          yield c
        }
      })()
      await extractTar(counted, dest, limits)
    },
    { signal }
  )
  const actual = `sha256:${diff.digest('hex')}`
  if (actual !== diffId) throw new SnapshotCorruptError(`layer ${layer.digest} unpacks to ${actual}, not its diff_id ${diffId}`, layer.digest)
}
