// Snapshots of a claim as OCI (DESIGN §6): the API the node calls.
//
//   takeSnapshot    driver snapshot → plain image (+ ZFS artifact on zfs) → tags in index.json
//   listSnapshots   every complete snapshot in a layout, oldest first (epoch, then time)
//   restoreSnapshot every blob verified first; the ZFS stream chain when the target driver is zfs
//                   and the whole chain is present and sound, else the plain image; restored into
//                   a fresh volume that is swapped in, so a failed restore loses nothing
//   pruneSnapshots  keep the newest N (and the ZFS bases they need), drop the rest, collect blobs;
//                   with the claim's driver, its volume keeps only the newest N snapshots
//   takeAndPrune    an owner's snapshot: take, then prune layout and volume
//
// One layout per claim (layoutDirFor). Callers serialise calls on one claim (a snapshot and a
// prune of the same layout must not overlap: garbage collection would take unindexed blobs).
// Tags are `snapshot-e<epoch>-<UTC yyyymmddThhmmssZ>` (registry-valid), with `-2`, `-3`… when two
// snapshots fall in one second; the ZFS artifact of tag T is tagged `T.zfs`.
import { join } from 'node:path'
import { claimId, checkClaim, isZfsDriver, parseClaimId } from './driver.ts'
import type { Claim, StorageDriver } from './driver.ts'
import { InvalidStorageNameError, SnapshotCorruptError, SnapshotLimitError, SnapshotNotFoundError, StaleSnapshotError, ZfsUnavailableError } from './errors.ts'
import { MEDIA, OciLayout, REF_NAME, checkTag } from './oci-layout.ts'
import type { Descriptor, ImageManifest } from './oci-layout.ts'
import { chunkStream, extractPlainLayer, writePlainImage, writeZfsArtifact } from './snapshot-image.ts'
import type { ZfsArtifact } from './snapshot-image.ts'

export interface SnapshotLimits {
  /** Entries (files, directories, links) in one volume. */
  maxEntries: number
  /** Bytes per ZFS stream chunk (one blob each). */
  chunkBytes: number
  /** Chunks in one ZFS artifact. */
  maxChunks: number
  /** Incrementals after a full stream before the next snapshot sends a full one again. */
  fullEvery: number
  /** Index entries read by listSnapshots. */
  maxSnapshots: number
}

export const DEFAULT_SNAPSHOT_LIMITS: SnapshotLimits = {
  maxEntries: 1_000_000,
  chunkBytes: 8 * 1024 * 1024,
  maxChunks: 16_384,
  fullEvery: 16,
  maxSnapshots: 4096
}

export const ANNOTATION = {
  created: 'org.opencontainers.image.created',
  tag: 'cell.snapshot.tag',
  epoch: 'cell.snapshot.epoch',
  claim: 'cell.snapshot.claim',
  takenMs: 'cell.snapshot.taken-ms',
  sizeBytes: 'cell.snapshot.size-bytes',
  zfsBase: 'cell.zfs.base-tag',
  zfsStreamBytes: 'cell.zfs.stream-bytes'
} as const

export interface SnapshotInfo {
  tag: string
  epoch: number
  takenMs: number
  /** The claim id, `<cell>/<ordinal>`. */
  claim: string
  /** Bytes of file data in the volume when the snapshot was taken. */
  sizeBytes: number
  plain: { manifestDigest: string, configDigest: string, layerDigest: string, bytes: number }
  zfs?: { manifestDigest: string, baseTag?: string, chunkDigests: string[], bytes: number }
  /**
   * Every blob of this snapshot (manifests, configs, layer, chunks): what a holder keeps. The
   * plain image alone restores anywhere; the ZFS artifact also needs its base snapshots' chunks.
   */
  blobs: string[]
}

export interface RestoreResult {
  snapshot: SnapshotInfo
  via: 'zfs' | 'plain'
  mountpoint: string
  /** Why the ZFS stream was not used although the target is zfs (absent, incomplete or corrupt chain). */
  zfsSkipped?: Error
}

/** `<dataDir>/snapshots/<cell>/<ordinal>`: where the node keeps a claim's layout. */
export function layoutDirFor (dataDir: string, claim: Claim): string {
  checkClaim(claim)
  return join(dataDir, 'snapshots', claim.cell, String(claim.ordinal))
}

/** `snapshot-e<epoch>-<yyyymmddThhmmssZ>` in UTC. */
export function snapshotTag (epoch: number, takenMs: number): string {
  checkEpoch(epoch)
  const iso = new Date(takenMs).toISOString()
  return checkTag(`snapshot-e${epoch}-${iso.slice(0, 19).replace(/[-:]/g, '')}Z`)
}

function checkEpoch (epoch: number): number {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new InvalidStorageNameError(`epoch ${String(epoch)} is not a non-negative integer`)
  return epoch
}

function isZfsManifest (m: ImageManifest): boolean {
  return m.artifactType === MEDIA.zfsArtifact
}

function infoFrom (plain: ImageManifest, plainDigest: string, zfs: ImageManifest | undefined, zfsDigest: string | undefined): SnapshotInfo {
  const a = plain.annotations ?? {}
  const int = (key: string): number => {
    const v = a[key]
    if (v === undefined || !/^\d{1,16}$/.test(v)) throw new SnapshotCorruptError(`manifest ${plainDigest} has no valid ${key}`, plainDigest)
    return Number(v)
  }
  const tag = a[ANNOTATION.tag]
  const claim = a[ANNOTATION.claim]
  if (tag === undefined || claim === undefined) throw new SnapshotCorruptError(`manifest ${plainDigest} is not a cell snapshot`, plainDigest)
  checkTag(tag)
  parseClaimId(claim)
  if (plain.layers.length !== 1 || plain.layers[0].mediaType !== MEDIA.layerGzip) throw new SnapshotCorruptError(`manifest ${plainDigest} has not exactly one tar+gzip layer`, plainDigest)
  const info: SnapshotInfo = {
    tag,
    epoch: int(ANNOTATION.epoch),
    takenMs: int(ANNOTATION.takenMs),
    claim,
    sizeBytes: int(ANNOTATION.sizeBytes),
    plain: { manifestDigest: plainDigest, configDigest: plain.config.digest, layerDigest: plain.layers[0].digest, bytes: plain.layers[0].size },
    blobs: [plainDigest, plain.config.digest, plain.layers[0].digest]
  }
  if (zfs !== undefined && zfsDigest !== undefined) {
    const za = zfs.annotations ?? {}
    if (za[ANNOTATION.tag] !== tag || za[ANNOTATION.claim] !== claim || zfs.subject?.digest !== plainDigest) throw new SnapshotCorruptError(`ZFS artifact ${zfsDigest} does not belong to ${tag}`, zfsDigest)
    const baseTag = za[ANNOTATION.zfsBase]
    if (baseTag !== undefined) checkTag(baseTag)
    info.zfs = {
      manifestDigest: zfsDigest,
      ...(baseTag !== undefined ? { baseTag } : {}),
      chunkDigests: zfs.layers.map(l => l.digest),
      bytes: zfs.layers.reduce((n, l) => n + l.size, 0)
    }
    info.blobs.push(zfsDigest, zfs.config.digest, ...zfs.layers.map(l => l.digest))
  }
  return info
}

interface Entry { info: SnapshotInfo, plain: ImageManifest, zfs?: ImageManifest }

/** Read every complete snapshot of the layout (manifests verified by digest); unreadable entries are skipped. */
async function readEntries (layout: OciLayout, limits: SnapshotLimits): Promise<Map<string, Entry>> {
  const index = layout.readIndex().manifests.slice(0, limits.maxSnapshots * 2)
  const byTag = new Map<string, Descriptor>()
  for (const d of index) {
    const ref = d.annotations?.[REF_NAME]
    if (ref !== undefined) byTag.set(ref, d)
  }
  const out = new Map<string, Entry>()
  for (const [tag, d] of byTag) {
    if (tag.endsWith('.zfs') || d.mediaType !== MEDIA.manifest) continue
    try {
      const plain = await layout.readManifest(d.digest, 1)
      if (isZfsManifest(plain)) continue
      const zd = byTag.get(`${tag}.zfs`)
      let zfs: ImageManifest | undefined
      if (zd !== undefined) {
        try {
          const m = await layout.readManifest(zd.digest, limits.maxChunks)
          if (isZfsManifest(m)) zfs = m
        } catch {}
      }
      const info = infoFrom(plain, d.digest, zfs, zfs !== undefined ? zd?.digest : undefined)
      if (info.tag !== tag) continue
      out.set(tag, { info, plain, ...(zfs !== undefined ? { zfs } : {}) })
    } catch {}
  }
  return out
}

function ordered (entries: Iterable<Entry>): SnapshotInfo[] {
  return [...entries].map(e => e.info).sort((a, b) => a.epoch - b.epoch || a.takenMs - b.takenMs || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0))
}

/** Every complete snapshot in the layout, oldest first (by epoch, then time taken). */
export async function listSnapshots (layoutDir: string, options: { limits?: Partial<SnapshotLimits> } = {}): Promise<SnapshotInfo[]> {
  const limits = { ...DEFAULT_SNAPSHOT_LIMITS, ...options.limits }
  return ordered((await readEntries(OciLayout.open(layoutDir), limits)).values())
}

/** The ZFS chain ending at `tag`: full stream first. Throws when a link is missing or too long. */
function chainOf (entries: Map<string, Entry>, tag: string, limits: SnapshotLimits): Entry[] {
  const chain: Entry[] = []
  for (let t: string | undefined = tag; t !== undefined;) {
    const e = entries.get(t)
    if (e?.info.zfs === undefined) throw new SnapshotNotFoundError(`the ZFS chain of ${tag} misses ${t}`)
    chain.unshift(e)
    if (chain.length > limits.fullEvery + 1) throw new SnapshotLimitError(`the ZFS chain of ${tag} is longer than ${limits.fullEvery + 1}`)
    t = e.info.zfs.baseTag
  }
  return chain
}

export async function takeSnapshot (options: {
  driver: StorageDriver
  claim: Claim
  epoch: number
  layoutDir: string
  /** The time of the snapshot (the node's clock). */
  nowMs: number
  limits?: Partial<SnapshotLimits>
  /** gzip level of the plain layer (1 = fastest). */
  gzipLevel?: number
  signal?: AbortSignal
}): Promise<SnapshotInfo> {
  const { driver, claim, signal } = options
  const limits = { ...DEFAULT_SNAPSHOT_LIMITS, ...options.limits }
  const id = claimId(claim)
  const epoch = checkEpoch(options.epoch)
  const layout = OciLayout.open(options.layoutDir)
  const entries = await readEntries(layout, limits)
  const indexTags = new Set(layout.readIndex().manifests.map(d => d.annotations?.[REF_NAME]))
  const onDriver = new Set(await driver.listSnapshots(claim, { signal }))
  const first = snapshotTag(epoch, options.nowMs)
  let tag = first
  for (let n = 2; indexTags.has(tag) || onDriver.has(tag); n++) {
    if (n > 99) throw new SnapshotLimitError(`more than 99 snapshots of ${id} in one second`)
    tag = `${first}-${n}`
  }
  const createdIso = new Date(options.nowMs).toISOString()
  await driver.snapshot(claim, tag, { signal })
  try {
    const common = {
      [ANNOTATION.created]: createdIso,
      [ANNOTATION.tag]: tag,
      [ANNOTATION.epoch]: String(epoch),
      [ANNOTATION.claim]: id,
      [ANNOTATION.takenMs]: String(Math.floor(options.nowMs))
    }
    // The plain image (tar + gzip: CPU) and the ZFS stream (zfs-fuse: I/O) are written at once.
    const plainDone = driver.withSnapshotFiles(claim, tag, async dir => await writePlainImage(layout, dir, {
      annotations: fileBytes => ({ ...common, [ANNOTATION.sizeBytes]: String(fileBytes) }),
      createdIso,
      limits: { maxEntries: limits.maxEntries, maxBytes: Number.MAX_SAFE_INTEGER },
      gzipLevel: options.gzipLevel ?? 1,
      ...(signal !== undefined ? { signal } : {})
    }), { signal })
    let base: string | undefined
    let zfsDone: Promise<ZfsArtifact | undefined> = Promise.resolve(undefined)
    if (isZfsDriver(driver)) {
      // Incremental from the newest snapshot of this claim that has a ZFS artifact, is still on the
      // dataset, and whose chain leaves room; else a full stream.
      const previous = ordered(entries.values()).filter(s => s.claim === id && s.zfs !== undefined && onDriver.has(s.tag)).at(-1)
      if (previous !== undefined) {
        try { if (chainOf(entries, previous.tag, limits).length <= limits.fullEvery) base = previous.tag } catch {}
      }
      const zfsBase = base
      const subject = plainDone.then(p => p.manifest)
      subject.catch(() => {}) // reported through plainDone
      zfsDone = driver.send(claim, tag, zfsBase, async stream => await writeZfsArtifact(layout, stream, {
        subject,
        annotations: { ...common, ...(zfsBase !== undefined ? { [ANNOTATION.zfsBase]: zfsBase } : {}) },
        chunkBytes: limits.chunkBytes,
        maxChunks: limits.maxChunks,
        ...(signal !== undefined ? { signal } : {})
      }), { signal, spoolDir: options.layoutDir })
    }
    const [plainResult, zfsResult] = await Promise.allSettled([plainDone, zfsDone])
    if (plainResult.status === 'rejected') throw plainResult.reason
    if (zfsResult.status === 'rejected') throw zfsResult.reason
    const plain = plainResult.value
    const tags: Array<{ tag: string, descriptor: Descriptor }> = [{ tag, descriptor: { ...plain.manifest, annotations: { ...common, [ANNOTATION.sizeBytes]: String(plain.fileBytes) } } }]
    if (zfsResult.value !== undefined) {
      tags.push({ tag: `${tag}.zfs`, descriptor: { ...zfsResult.value.manifest, annotations: { ...common, ...(base !== undefined ? { [ANNOTATION.zfsBase]: base } : {}) } } })
    }
    layout.setTags(tags)
  } catch (err) {
    await driver.destroySnapshot(claim, tag).catch(() => {})
    throw err
  } finally {
    // A dir snapshot is a full copy and never a base for another: drop it once the image is written.
    if (driver.kind === 'dir') await driver.destroySnapshot(claim, tag).catch(() => {})
  }
  const entry = (await readEntries(layout, limits)).get(tag)
  if (entry === undefined) throw new SnapshotCorruptError(`snapshot ${tag} was written but does not read back`)
  return entry.info
}

/**
 * Restore snapshot `tag` into the claim's volume on `driver` (created if absent). Every blob used
 * is verified by digest before anything is written, and again as it streams; the new contents
 * go into a fresh volume swapped in at the end, so a refused or failed restore changes nothing.
 * `prefer: 'zfs'` refuses to fall back to the plain image; `'plain'` never uses the ZFS stream.
 * `minEpoch` refuses a snapshot of a lower epoch (fencing: never restore over newer data).
 */
export async function restoreSnapshot (options: {
  driver: StorageDriver
  claim: Claim
  layoutDir: string
  tag: string
  quotaBytes: number
  prefer?: 'auto' | 'zfs' | 'plain'
  minEpoch?: number
  limits?: Partial<SnapshotLimits>
  signal?: AbortSignal
}): Promise<RestoreResult> {
  const { driver, claim, signal } = options
  const limits = { ...DEFAULT_SNAPSHOT_LIMITS, ...options.limits }
  const id = claimId(claim)
  const layout = OciLayout.open(options.layoutDir)
  const tag = checkTag(options.tag)
  const desc = layout.resolve(tag)
  if (desc === undefined) throw new SnapshotNotFoundError(`no snapshot ${tag} in ${options.layoutDir}`)
  // Read this tag's manifests directly, so a corrupt one is reported as such (listing skips it).
  const plain = await layout.readManifest(desc.digest, 1)
  const zd = layout.resolve(`${tag}.zfs`)
  const zfsManifest = zd !== undefined ? await layout.readManifest(zd.digest, limits.maxChunks).catch((err: unknown) => err as Error) : undefined
  const info = infoFrom(plain, desc.digest, zfsManifest instanceof Error ? undefined : zfsManifest, zfsManifest instanceof Error ? undefined : zd?.digest)
  if (info.tag !== tag) throw new SnapshotCorruptError(`index entry ${tag} points at the manifest of ${info.tag}`, desc.digest)
  if (info.claim !== id) throw new InvalidStorageNameError(`snapshot ${tag} is of claim ${info.claim}, not ${id}`)
  if (options.minEpoch !== undefined && info.epoch < options.minEpoch) throw new StaleSnapshotError(`snapshot ${tag} is of epoch ${info.epoch}, older than epoch ${options.minEpoch}: not restored`)
  const prefer = options.prefer ?? 'auto'

  let zfsSkipped: Error | undefined
  if (prefer !== 'plain' && isZfsDriver(driver)) {
    try {
      if (zfsManifest instanceof Error) throw zfsManifest
      if (zfsManifest === undefined) throw new SnapshotNotFoundError(`snapshot ${tag} has no ZFS artifact`)
      const entries = await readEntries(layout, limits)
      const chain = chainOf(entries, tag, limits)
      // Every chunk must be here; its digest is checked as the driver spools the streams, before
      // zfs receives any of them.
      for (const e of chain) {
        if (e.zfs === undefined) throw new SnapshotNotFoundError(`snapshot ${e.info.tag} has no ZFS artifact`)
        for (const c of e.zfs.layers) if (!await layout.hasBlob(c.digest)) throw new SnapshotNotFoundError(`chunk ${c.digest} of ${e.info.tag} is not in the layout`)
      }
      const mountpoint = await driver.receive(claim, options.quotaBytes, chain.map(e => () => chunkStream(layout, e.zfs?.layers ?? [], signal)), { signal, spoolDir: options.layoutDir })
      return { snapshot: info, via: 'zfs', mountpoint }
    } catch (err) {
      // A failed receive changed nothing (the fresh dataset is gone): the plain image is tried
      // unless the caller asked for the stream only, gave up (abort), or zfs itself is gone.
      if (prefer === 'zfs' || signal?.aborted === true || err instanceof ZfsUnavailableError || !(err instanceof Error)) throw err
      zfsSkipped = err
    }
  } else if (prefer === 'zfs') {
    throw new InvalidStorageNameError(`a ZFS stream restores only onto the zfs driver, not ${driver.kind}`)
  }

  const config = JSON.parse(new TextDecoder().decode(await layout.readSmallBlob(plain.config.digest))) as { rootfs?: { diff_ids?: unknown } }
  const diffId = Array.isArray(config.rootfs?.diff_ids) && typeof config.rootfs.diff_ids[0] === 'string' ? config.rootfs.diff_ids[0] : undefined
  if (diffId === undefined || !/^sha256:[a-f0-9]{64}$/.test(diffId)) throw new SnapshotCorruptError(`config ${plain.config.digest} of ${tag} has no diff_id`, plain.config.digest)
  const layer = plain.layers[0]
  await layout.verifyBlob(layer.digest, layer.size, signal)
  const mountpoint = await driver.replace(claim, options.quotaBytes, async dir => {
    await extractPlainLayer(layout, layer, diffId, dir, { maxEntries: limits.maxEntries, maxBytes: options.quotaBytes }, signal)
  }, { signal })
  return { snapshot: info, via: 'plain', mountpoint, ...(zfsSkipped !== undefined ? { zfsSkipped } : {}) }
}

/**
 * Keep the newest `keep` snapshots (and the ZFS bases their chains need), untag the rest, delete
 * the blobs nothing reaches, and (given driver and claim) destroy the driver's snapshots of
 * removed tags. Returns the tags removed.
 */
export async function pruneSnapshots (options: {
  layoutDir: string
  keep: number
  driver?: StorageDriver
  claim?: Claim
  limits?: Partial<SnapshotLimits>
  signal?: AbortSignal
}): Promise<{ removedTags: string[], removedBlobs: number }> {
  const limits = { ...DEFAULT_SNAPSHOT_LIMITS, ...options.limits }
  if (!Number.isSafeInteger(options.keep) || options.keep < 1) throw new InvalidStorageNameError(`keep ${String(options.keep)} is not a positive integer`)
  const layout = OciLayout.open(options.layoutDir)
  const entries = await readEntries(layout, limits)
  const all = ordered(entries.values())
  const kept = new Set<string>()
  for (const s of all.slice(-options.keep)) {
    kept.add(s.tag)
    if (s.zfs !== undefined) {
      try { for (const e of chainOf(entries, s.tag, limits)) kept.add(e.info.tag) } catch {}
    }
  }
  const removedTags = all.filter(s => !kept.has(s.tag)).map(s => s.tag)
  layout.removeTags(removedTags.flatMap(t => [t, `${t}.zfs`]))
  const removedBlobs = (await layout.collectGarbage(limits.maxChunks)).length
  if (options.driver !== undefined && options.claim !== undefined) {
    // The claim's own volume keeps the newest `keep` snapshots: the newest is the base of the next
    // incremental, and restores read the layout's streams, never the volume's snapshots. Every older
    // snapshot of ours goes, those an earlier prune dropped from the layout only too: on ZFS each one
    // holds the blocks changed since it, and they count against the claim's quota.
    const newest = new Set(all.slice(-options.keep).map(s => s.tag))
    for (const name of await options.driver.listSnapshots(options.claim, { signal: options.signal })) {
      if (!SNAPSHOT_TAG.test(name) || newest.has(name)) continue
      await options.driver.destroySnapshot(options.claim, name, { signal: options.signal })
    }
  }
  return { removedTags, removedBlobs }
}

/** Tags snapshotTag makes (with takeSnapshot's `-<n>` for a second one in the same second). */
const SNAPSHOT_TAG = /^snapshot-e\d+-\d{8}T\d{6}Z(-\d+)?$/

/**
 * What an owner does on each snapshot: take it, then prune the layout and the claim's volume to the
 * newest `keep` (a prune that fails is logged by the caller, the snapshot stands).
 */
export async function takeAndPrune (options: Parameters<typeof takeSnapshot>[0] & { keep: number, onPruneError?: (err: Error) => void }): Promise<SnapshotInfo> {
  const info = await takeSnapshot(options)
  await pruneSnapshots({ layoutDir: options.layoutDir, keep: options.keep, driver: options.driver, claim: options.claim, ...(options.limits !== undefined ? { limits: options.limits } : {}), ...(options.signal !== undefined ? { signal: options.signal } : {}) })
    .catch((err: Error) => { options.onPruneError?.(err) })
  return info
}
