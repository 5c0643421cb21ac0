// An OCI image layout (image-spec v1.1: `oci-layout`, `index.json`, `blobs/sha256/<hex>`) holding
// a claim's snapshots. Written by this file from the spec, read by skopeo and umoci.
//
// Blobs are content addressed: written to a temporary file in blobs/, hashed while written,
// fsynced, then renamed to their digest; whatever reads one (restore, a peer's transfer) hashes it
// again and refuses a mismatch with SnapshotCorruptError. index.json is replaced atomically (temp +
// rename) by a synchronous read-modify-write, so two updates in one process never interleave.
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { createReadStream } from 'node:fs'
import { open, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidStorageNameError, SnapshotCorruptError, SnapshotLimitError, SnapshotNotFoundError } from './errors.ts'

export const MEDIA = {
  layout: '1.0.0',
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  empty: 'application/vnd.oci.empty.v1+json',
  zfsArtifact: 'application/vnd.cell.zfs-send.v1',
  zfsChunk: 'application/vnd.cell.zfs-send.chunk.v1'
} as const

export const REF_NAME = 'org.opencontainers.image.ref.name'
/** The empty JSON object `{}`: the config of an artifact manifest (image-spec 1.1). */
export const EMPTY_JSON = new TextEncoder().encode('{}')

const DIGEST = /^sha256:([a-f0-9]{64})$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
/** index.json and manifests are small JSON documents; a larger one is refused, not parsed. */
export const MAX_JSON_BYTES = 4 * 1024 * 1024
const READ_CHUNK = 1024 * 1024

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

export interface ImageIndex {
  schemaVersion: 2
  mediaType: typeof MEDIA.index
  manifests: Descriptor[]
}

export interface ImageManifest {
  schemaVersion: 2
  mediaType: typeof MEDIA.manifest
  artifactType?: string
  config: Descriptor
  layers: Descriptor[]
  subject?: Descriptor
  annotations?: Record<string, string>
}

export function checkDigest (digest: string): string {
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw new InvalidStorageNameError(`${JSON.stringify(digest)} is not a sha256 digest`)
  return digest
}

export function checkTag (tag: string): string {
  if (typeof tag !== 'string' || !TAG.test(tag)) throw new InvalidStorageNameError(`${JSON.stringify(tag)} is not a registry tag`)
  return tag
}

export function sha256Digest (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

function isRecordOfStrings (v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every(x => typeof x === 'string')
}

/** A descriptor from untrusted JSON, checked field by field. */
export function parseDescriptor (v: unknown, where: string): Descriptor {
  const d = v as Partial<Descriptor> | null
  if (typeof d !== 'object' || d === null || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || !DIGEST.test(d.digest) ||
    typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0 ||
    (d.annotations !== undefined && !isRecordOfStrings(d.annotations)) || (d.artifactType !== undefined && typeof d.artifactType !== 'string')) {
    throw new SnapshotCorruptError(`malformed descriptor in ${where}`)
  }
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.artifactType !== undefined ? { artifactType: d.artifactType } : {}), ...(d.annotations !== undefined ? { annotations: d.annotations } : {}) }
}

export function parseManifest (bytes: Uint8Array, digest: string, maxLayers: number): ImageManifest {
  let m: Partial<ImageManifest>
  try { m = JSON.parse(new TextDecoder().decode(bytes)) as Partial<ImageManifest> } catch (err) { throw new SnapshotCorruptError(`manifest ${digest} is not JSON`, digest, { cause: err }) }
  if (typeof m !== 'object' || m === null || m.schemaVersion !== 2 || m.mediaType !== MEDIA.manifest || !Array.isArray(m.layers)) throw new SnapshotCorruptError(`manifest ${digest} is not an OCI image manifest`, digest)
  if (m.layers.length > maxLayers) throw new SnapshotLimitError(`manifest ${digest} has ${m.layers.length} layers, more than ${maxLayers}`)
  if (m.annotations !== undefined && !isRecordOfStrings(m.annotations)) throw new SnapshotCorruptError(`manifest ${digest} has malformed annotations`, digest)
  return {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    ...(typeof m.artifactType === 'string' ? { artifactType: m.artifactType } : {}),
    config: parseDescriptor(m.config, `manifest ${digest}`),
    layers: m.layers.map(l => parseDescriptor(l, `manifest ${digest}`)),
    ...(m.subject !== undefined ? { subject: parseDescriptor(m.subject, `manifest ${digest}`) } : {}),
    ...(m.annotations !== undefined ? { annotations: m.annotations } : {})
  }
}

export class OciLayout {
  readonly dir: string

  private constructor (dir: string) {
    this.dir = dir
  }

  /** Open the layout at `dir`, creating `oci-layout`, an empty `index.json` and `blobs/sha256` when absent. */
  static open (dir: string): OciLayout {
    const layout = new OciLayout(dir)
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true })
    let marker: string | undefined
    try { marker = readFileSync(join(dir, 'oci-layout'), 'utf8') } catch {}
    if (marker === undefined) layout.writeAtomic('oci-layout', JSON.stringify({ imageLayoutVersion: MEDIA.layout }))
    else if ((JSON.parse(marker) as { imageLayoutVersion?: unknown }).imageLayoutVersion !== MEDIA.layout) throw new SnapshotCorruptError(`${dir}/oci-layout is not image layout ${MEDIA.layout}`)
    let index: string | undefined
    try { index = readFileSync(join(dir, 'index.json'), 'utf8') } catch {}
    if (index === undefined) layout.writeIndex({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [] })
    return layout
  }

  blobPath (digest: string): string {
    return join(this.dir, 'blobs', 'sha256', DIGEST.exec(checkDigest(digest))?.[1] ?? '')
  }

  private tmpPath (): string {
    return join(this.dir, 'blobs', `.tmp-${randomBytes(8).toString('hex')}`)
  }

  private writeAtomic (name: string, text: string): void {
    const tmp = join(this.dir, `.${name}.tmp-${randomBytes(4).toString('hex')}`)
    const fd = openSync(tmp, 'wx')
    try {
      writeSync(fd, text)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, join(this.dir, name))
  }

  async hasBlob (digest: string): Promise<boolean> {
    try { return (await stat(this.blobPath(digest))).isFile() } catch { return false }
  }

  /** Store `bytes` under their digest. */
  async putBlob (bytes: Uint8Array, mediaType: string): Promise<Descriptor> {
    const [d] = await this.putBlobStream((async function * () { yield bytes })(), { maxBytes: bytes.byteLength })
    return { mediaType, digest: d.digest, size: d.size }
  }

  async putJson (value: unknown, mediaType: string): Promise<Descriptor> {
    return await this.putBlob(new TextEncoder().encode(JSON.stringify(value)), mediaType)
  }

  /**
   * Store a stream as blobs: one blob, or with `chunkBytes` one blob per `chunkBytes` (the last
   * one shorter), at most `maxChunks` of them and `maxBytes` in all. Returns digest and size of each.
   */
  async putBlobStream (source: AsyncIterable<Uint8Array>, options: { maxBytes: number, chunkBytes?: number, maxChunks?: number, signal?: AbortSignal }): Promise<Array<{ digest: string, size: number }>> {
    const chunkBytes = options.chunkBytes ?? Number.MAX_SAFE_INTEGER
    const maxChunks = options.maxChunks ?? 1
    const out: Array<{ digest: string, size: number }> = []
    let total = 0
    let tmp: string | undefined
    let fh: Awaited<ReturnType<typeof open>> | undefined
    let hash = createHash('sha256')
    let size = 0
    const finish = async (): Promise<void> => {
      if (fh === undefined || tmp === undefined) return
      await fh.sync()
      await fh.close()
      fh = undefined
      const digest = `sha256:${hash.digest('hex')}`
      await rename(tmp, this.blobPath(digest))
      tmp = undefined
      out.push({ digest, size })
    }
    const start = async (): Promise<void> => {
      if (out.length >= maxChunks) throw new SnapshotLimitError(`the stream needs more than ${maxChunks} blobs of ${chunkBytes} bytes`)
      tmp = this.tmpPath()
      fh = await open(tmp, 'wx')
      hash = createHash('sha256')
      size = 0
    }
    try {
      await start()
      for await (const piece of source) {
        options.signal?.throwIfAborted()
        total += piece.byteLength
        if (total > options.maxBytes) throw new SnapshotLimitError(`the stream is longer than ${options.maxBytes} bytes`)
        let rest = piece
        while (rest.byteLength > 0) {
          if (size === chunkBytes) { await finish(); await start() }
          const take = rest.subarray(0, chunkBytes - size)
          hash.update(take)
          await fh?.write(take)
          size += take.byteLength
          rest = rest.subarray(take.byteLength)
        }
      }
      await finish()
      return out
    } catch (err) {
      await fh?.close().catch(() => {})
      if (tmp !== undefined) await rm(tmp, { force: true })
      throw err
    }
  }

  /** Store bytes received for a known digest (a peer's transfer): refused with SnapshotCorruptError unless they hash to it. */
  async importBlob (digest: string, source: AsyncIterable<Uint8Array>, options: { maxBytes: number, signal?: AbortSignal }): Promise<void> {
    checkDigest(digest)
    const tmp = this.tmpPath()
    const fh = await open(tmp, 'wx')
    const hash = createHash('sha256')
    let size = 0
    try {
      for await (const piece of source) {
        options.signal?.throwIfAborted()
        size += piece.byteLength
        if (size > options.maxBytes) throw new SnapshotLimitError(`blob ${digest} is longer than ${options.maxBytes} bytes`)
        hash.update(piece)
        await fh.write(piece)
      }
      const actual = `sha256:${hash.digest('hex')}`
      if (actual !== digest) throw new SnapshotCorruptError(`blob received for ${digest} hashes to ${actual}`, digest)
      await fh.sync()
      await fh.close()
      await rename(tmp, this.blobPath(digest))
    } catch (err) {
      await fh.close().catch(() => {})
      await rm(tmp, { force: true })
      throw err
    }
  }

  /**
   * The blob's bytes as a stream, hashed as read: the last step throws SnapshotCorruptError when
   * they do not match the digest (or `size`), so a consumer never completes on bad bytes.
   */
  async * readBlob (digest: string, size?: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const path = this.blobPath(digest)
    const hash = createHash('sha256')
    let read = 0
    let stream
    try {
      await stat(path)
      stream = createReadStream(path, { highWaterMark: READ_CHUNK })
    } catch (err) {
      throw new SnapshotNotFoundError(`blob ${digest} is not in ${this.dir}`, { cause: err })
    }
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      signal?.throwIfAborted()
      read += chunk.byteLength
      if (size !== undefined && read > size) throw new SnapshotCorruptError(`blob ${digest} is longer than its ${size} bytes`, digest)
      hash.update(chunk)
      yield chunk
    }
    if (size !== undefined && read !== size) throw new SnapshotCorruptError(`blob ${digest} is truncated: ${read} of ${size} bytes`, digest)
    const actual = `sha256:${hash.digest('hex')}`
    if (actual !== digest) throw new SnapshotCorruptError(`blob ${digest} hashes to ${actual}`, digest)
  }

  /** Read the whole blob and check it; SnapshotCorruptError / SnapshotNotFoundError otherwise. */
  async verifyBlob (digest: string, size?: number, signal?: AbortSignal): Promise<void> {
    for await (const _ of this.readBlob(digest, size, signal)) { /* hashed by readBlob */ }
  }

  /** A small blob (JSON) read whole, checked against its digest and `maxBytes`. */
  async readSmallBlob (digest: string, maxBytes = MAX_JSON_BYTES): Promise<Uint8Array> {
    const st = await stat(this.blobPath(digest)).catch((err: unknown) => { throw new SnapshotNotFoundError(`blob ${digest} is not in ${this.dir}`, { cause: err }) })
    if (st.size > maxBytes) throw new SnapshotLimitError(`blob ${digest} is ${st.size} bytes, more than ${maxBytes}`)
    const parts: Uint8Array[] = []
    for await (const chunk of this.readBlob(digest)) parts.push(chunk)
    return Buffer.concat(parts)
  }

  async readManifest (digest: string, maxLayers: number): Promise<ImageManifest> {
    return parseManifest(await this.readSmallBlob(digest), digest, maxLayers)
  }

  readIndex (): ImageIndex {
    let text: string
    try { text = readFileSync(join(this.dir, 'index.json'), 'utf8') } catch (err) { throw new SnapshotNotFoundError(`${this.dir} has no index.json`, { cause: err }) }
    if (text.length > MAX_JSON_BYTES) throw new SnapshotLimitError(`${this.dir}/index.json is larger than ${MAX_JSON_BYTES} bytes`)
    let v: Partial<ImageIndex>
    try { v = JSON.parse(text) as Partial<ImageIndex> } catch (err) { throw new SnapshotCorruptError(`${this.dir}/index.json is not JSON`, undefined, { cause: err }) }
    if (v.schemaVersion !== 2 || !Array.isArray(v.manifests)) throw new SnapshotCorruptError(`${this.dir}/index.json is not an OCI image index`)
    return { schemaVersion: 2, mediaType: MEDIA.index, manifests: v.manifests.map(d => parseDescriptor(d, `${this.dir}/index.json`)) }
  }

  private writeIndex (index: ImageIndex): void {
    this.writeAtomic('index.json', JSON.stringify(index))
  }

  /** Replace index.json with `change(index)` in one synchronous step. */
  updateIndex (change: (manifests: Descriptor[]) => Descriptor[]): void {
    const index = this.readIndex()
    this.writeIndex({ ...index, manifests: change(index.manifests) })
  }

  /** Point `tag` at `descriptor` (replacing an entry with the same tag). */
  setTags (entries: Array<{ tag: string, descriptor: Descriptor }>): void {
    const tags = new Set(entries.map(e => checkTag(e.tag)))
    this.updateIndex(ms => [
      ...ms.filter(d => !tags.has(d.annotations?.[REF_NAME] ?? '')),
      ...entries.map(e => ({ ...e.descriptor, annotations: { ...e.descriptor.annotations, [REF_NAME]: e.tag } }))
    ])
  }

  removeTags (tags: readonly string[]): void {
    const drop = new Set(tags)
    this.updateIndex(ms => ms.filter(d => !drop.has(d.annotations?.[REF_NAME] ?? '')))
  }

  resolve (tag: string): Descriptor | undefined {
    return this.readIndex().manifests.find(d => d.annotations?.[REF_NAME] === tag)
  }

  /**
   * Delete blobs no manifest in the index reaches; manifests that cannot be read keep only
   * themselves. The caller serialises this with snapshot writes of the same layout (a blob written
   * but not yet indexed would go). Returns the digests removed.
   */
  async collectGarbage (maxLayers: number): Promise<string[]> {
    const keep = new Set<string>()
    for (const d of this.readIndex().manifests) {
      keep.add(d.digest)
      if (d.mediaType !== MEDIA.manifest) continue
      try {
        const m = await this.readManifest(d.digest, maxLayers)
        keep.add(m.config.digest)
        for (const l of m.layers) keep.add(l.digest)
      } catch {}
    }
    const removed: string[] = []
    for (const name of await readdir(join(this.dir, 'blobs', 'sha256'))) {
      const digest = `sha256:${name}`
      if (keep.has(digest)) continue
      await rm(join(this.dir, 'blobs', 'sha256', name), { force: true })
      removed.push(digest)
    }
    return removed
  }

  /** Remove temporary files a crash left behind (call when nothing writes to the layout, e.g. at node start). */
  async removeTemporaryFiles (): Promise<void> {
    for (const name of await readdir(join(this.dir, 'blobs'))) {
      if (name.startsWith('.tmp-')) await rm(join(this.dir, 'blobs', name), { force: true })
    }
    for (const name of await readdir(this.dir)) {
      // index.json temporaries, and the zfs send/receive spools (zfs.ts) written beside the blobs.
      if (name.startsWith('.') && (name.includes('.tmp-') || name.startsWith('.zfs-send-') || name.startsWith('.zfs-recv-'))) await rm(join(this.dir, name), { force: true })
    }
  }
}
