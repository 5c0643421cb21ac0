// Pinning other nodes' snapshots (issue 10 point 4): a snapshot is safe once two nodes other than
// its owner hold every blob of it. Each node that may hold a cell's data (a host grant from an
// authority claiming the cell) ranks the eligible nodes for each claim by rendezvous hash,
// excluding the snapshot's owner; when it is among the top `holders` it fetches the snapshot's
// blobs over `/cell/snapshot-blob/1` into its own copy of the claim's OCI layout
// (`<data>/snapshots/<cell>/<ordinal>`, the format takeSnapshot writes, so restoreSnapshot reads it
// on this node), checks the manifests name only blobs of the record, tags it, provides the blobs
// in the DHT and announces a pin. It keeps the newest `keep` snapshots per claim (plus the ZFS
// bases they need: pruneSnapshots) and refuses, logged and counted, when the disk is short. A blob
// that does not hash right is refused and fetched from another holder; a snapshot is pinned only
// when every blob arrived and verified.
import { createHash } from 'node:crypto'
import { mkdir, rm, statfs } from 'node:fs/promises'
import { dirname } from 'node:path'
import { logger } from '@libp2p/logger'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { Mesh } from '../../core/mesh/index.ts'
import type { Credentials } from '../../core/identity/index.ts'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import type { FleetChange, FleetView, NodeRecord, SnapshotRecord } from '../../core/fleet/index.ts'
import { cellTopic } from '../../core/fleet/index.ts'
import { ProviderPenalties, fetchSnapshotBlobs, provideSnapshotBlobs, serveSnapshotBlobs } from './blob-exchange.ts'
import type { SnapshotBlobServer, SnapshotBlobServerInit } from './blob-exchange.ts'
import { parseClaimId } from './driver.ts'
import { SnapshotCorruptError } from './errors.ts'
import { MEDIA, OciLayout } from './oci-layout.ts'
import type { Descriptor, ImageManifest } from './oci-layout.ts'
import { ANNOTATION, DEFAULT_SNAPSHOT_LIMITS, layoutDirFor, pruneSnapshots } from './snapshots.ts'
import { SnapshotAnnouncer, hostGrantsFor } from './snapshot-records.ts'
import type { SnapshotAnnouncerInit } from './snapshot-records.ts'

const log = logger('cell:pins')

export interface SnapshotPinnerInit {
  libp2p: Libp2p
  view: FleetView
  /** Announces this node's pins (and re-announces them). */
  announcer: SnapshotAnnouncer
  /** Claim layouts go to `<dataDir>/snapshots/<cell>/<ordinal>`. */
  dataDir: string
  /** The credential chain this node presents for `cell` (host role), e.g. `mesh.credentialsFor(cell)`. */
  chainFor: (cell: string) => Uint8Array
  /**
   * May `node` hold `cell`'s data? It must gossip a host grant for the cell from an authority that
   * claims it (e.g. `mesh.hostGrant` over `view.claimants(cell)`), and offer storage. This node
   * ranks only such nodes, itself included.
   */
  eligible: (node: NodeRecord, cell: string) => Promise<boolean>
  /** Holders per claim besides the owner (default 2). */
  holders?: number
  /** Snapshots kept per claim (default 4), plus the ZFS bases they need. */
  keep?: number
  /** Free bytes left on the data disk below which nothing more is pinned (default 256 MiB). */
  minFreeBytes?: number
  /** Free bytes of the file system holding `dir` (default statfs). */
  diskFree?: (dir: string) => Promise<number>
  /** Largest blob fetched (default 8 GiB). */
  maxBlobBytes?: number
  /** Provide pinned blobs in the DHT (default true). */
  provide?: boolean
  /**
   * Runs `fn` while no snapshot of `claimId` is taken or pruned elsewhere on this node (the lead's
   * per-claim lock: a layout must not be garbage-collected while blobs land in it). Default: none.
   */
  withClaimLock?: <T>(claimId: string, fn: () => Promise<T>) => Promise<T>
  /** Claims this node must not pin (it owns them now). Default: none. */
  skipClaim?: (claimId: string) => boolean
  clock?: Clock
  /** Re-check every claim this often besides reacting to new snapshot records (default 10 s). */
  tickMs?: number
  /** A snapshot refused (disk short, no holder answered) is tried again after this long (default 60 s). */
  retryMs?: number
}

export interface SnapshotPinnerStats {
  pinned: number
  blobsFetched: number
  bytesFetched: number
  /** Blobs refused because they did not hash to their digest (forged or truncated), per holder. */
  corruptBlobs: number
  /** Snapshots not pinned because the disk was short. */
  refusedDisk: number
  /** Snapshots whose blobs no holder served, or whose manifests did not match the record. */
  failures: number
  pruned: number
  /** Pins of an earlier run announced again at start (`repin`). */
  repinned: number
}

/** Rendezvous score of `nodeId` for `claimId` (highest wins): the first 48 bits of sha256. */
export function rendezvousScore (claimId: string, nodeId: string): number {
  const h = createHash('sha256').update(`${claimId}\n${nodeId}`).digest()
  return h.readUIntBE(0, 6)
}

/** The `count` highest-scoring of `candidates` for `claimId` (ties by id), excluding `owner`. */
export function chooseHolders (claimId: string, owner: string, candidates: readonly string[], count: number): string[] {
  return [...new Set(candidates)].filter(id => id !== owner)
    .map(id => ({ id, score: rendezvousScore(claimId, id) }))
    .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
    .slice(0, count)
    .map(x => x.id)
}

export class SnapshotPinner {
  private readonly init: SnapshotPinnerInit
  private readonly clock: Clock
  private readonly holders: number
  private readonly keep: number
  private readonly retryMs: number
  private readonly penalties: ProviderPenalties
  private readonly counters: SnapshotPinnerStats = { pinned: 0, blobsFetched: 0, bytesFetched: 0, corruptBlobs: 0, refusedDisk: 0, failures: 0, pruned: 0, repinned: 0 }
  /** `${claimId} ${owner} ${tag}` → when a failed pin may be tried again. */
  private readonly backoff = new Map<string, number>()
  /** Blob digests verified on this node since start, per layout dir (blobs found on disk are hashed once). */
  private readonly verified = new Map<string, Set<string>>()
  private running = false
  private stopped = false
  private timer: unknown
  private working: Promise<void> | undefined
  private again = false
  private readonly shutdown = new AbortController()
  private readonly onChange = (evt: Event): void => {
    const change = (evt as CustomEvent<FleetChange>).detail
    if (change.kind === 'snapshot' && change.op === 'upsert') this.wake()
  }

  constructor (init: SnapshotPinnerInit) {
    this.init = init
    this.clock = init.clock ?? systemClock
    this.holders = init.holders ?? 2
    this.keep = Math.max(1, init.keep ?? 4)
    this.retryMs = init.retryMs ?? 60_000
    this.penalties = new ProviderPenalties({ clock: this.clock })
  }

  stats (): SnapshotPinnerStats {
    return { ...this.counters }
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.init.view.addEventListener('change', this.onChange)
    this.wake()
  }

  async stop (): Promise<void> {
    this.running = false
    this.stopped = true
    this.init.view.removeEventListener('change', this.onChange)
    this.clock.clearTimeout(this.timer)
    this.shutdown.abort(new Error('pinner stopped'))
    await this.working?.catch(() => {})
  }

  /** Runs a pass now (or right after the running one). */
  wake (): void {
    if (!this.running) return
    if (this.working !== undefined) { this.again = true; return }
    this.clock.clearTimeout(this.timer)
    this.working = this.pass().catch((err) => { log.error('pinning pass failed: %e', err) }).finally(() => {
      this.working = undefined
      if (!this.running) return
      if (this.again) { this.again = false; this.wake(); return }
      this.timer = this.clock.setTimeout(() => { this.wake() }, this.init.tickMs ?? 10_000)
    })
  }

  /** Holders this node computes for `owner`'s snapshots of `claimId`: the top `holders` eligible nodes, owner excluded. */
  async chosenHolders (claimId: string, owner: string): Promise<string[]> {
    const cell = parseClaimId(claimId).cell
    const candidates: string[] = []
    for (const node of this.init.view.nodes()) if (await this.init.eligible(node, cell)) candidates.push(node.nodeId)
    return chooseHolders(claimId, owner, candidates, this.holders)
  }

  /** One pass over every claim with snapshot records: pin what this node is chosen for (start() runs them). */
  async pass (): Promise<void> {
    const self = this.init.announcer.nodeId
    for (const claimId of this.init.view.snapshotClaims()) {
      if (this.stopped) return
      // The claim's owner has newer data than any snapshot of it and pins none (nor waits on a fetch).
      if (this.init.skipClaim?.(claimId) === true) continue
      let cell: string
      try { cell = parseClaimId(claimId).cell } catch { continue }
      // Newest first, within what a holder keeps: the latest snapshot becomes safe soonest.
      const snapshots = this.init.view.snapshots(claimId).slice(0, this.keep)
      let pinnedAny = false
      for (const s of snapshots) {
        if (s.nodeId === self || this.init.announcer.pins(s)) continue
        const key = `${claimId} ${s.nodeId} ${s.tag}`
        if ((this.backoff.get(key) ?? 0) > this.clock.now()) continue
        // Already safe without this node (its view of the fleet may lag): no extra copy.
        if (this.init.view.snapshotHolders(s).length >= this.holders) continue
        if (!(await this.chosenHolders(claimId, s.nodeId)).includes(self)) continue
        try {
          await this.lock(claimId, async () => { await this.pin(s, cell) })
          pinnedAny = true
          this.backoff.delete(key)
        } catch (err) {
          if (this.stopped) return
          this.backoff.set(key, this.clock.now() + this.retryMs)
          if (this.backoff.size > 4096) this.backoff.delete(this.backoff.keys().next().value as string)
          if (!(err instanceof SnapshotDiskShortError)) this.counters.failures++
          log.error('not pinning %s %s of %s: %e', claimId, s.tag, s.nodeId, err)
        }
      }
      if (pinnedAny) await this.lock(claimId, async () => { await this.prune(claimId) }).catch((err) => { log('pruning %s failed: %e', claimId, err) })
    }
  }

  private async lock<T> (claimId: string, fn: () => Promise<T>): Promise<T> {
    return this.init.withClaimLock !== undefined ? await this.init.withClaimLock(claimId, fn) : await fn()
  }

  /**
   * Fetches every blob of `snapshot` (and, best effort, of the ZFS bases it names that the view
   * holds) into this node's layout of the claim, verified and tagged, ready for restoreSnapshot.
   * What a node that takes over a claim calls before restoring. Returns the layout dir.
   */
  async fetchSnapshot (snapshot: SnapshotRecord, options: { signal?: AbortSignal } = {}): Promise<string> {
    const cell = parseClaimId(snapshot.claimId).cell
    const dir = await this.fetchInto(snapshot, cell, options.signal)
    // The ZFS chain's bases, so a ZFS restore can use the stream (restoreSnapshot falls back to the plain image otherwise).
    let base = snapshot.zfsBaseTag
    for (let depth = 0; base !== undefined && depth < DEFAULT_SNAPSHOT_LIMITS.fullEvery + 1; depth++) {
      const b = this.init.view.snapshots(snapshot.claimId).find(s => s.tag === base && s.nodeId === snapshot.nodeId)
      if (b === undefined) break
      try { await this.fetchInto(b, cell, options.signal) } catch (err) { log('ZFS base %s of %s not fetched: %e', base, snapshot.tag, err); break }
      base = b.zfsBaseTag
    }
    return dir
  }

  /**
   * Announces again the pin of a snapshot this node pinned in an earlier run (the record store kept
   * its record): every blob is checked on disk (hashed; one missing or corrupt is fetched again from
   * the holders) before the pin goes out, whatever this node's rank for the claim is now.
   */
  async repin (s: SnapshotRecord): Promise<void> {
    if (this.stopped || this.init.announcer.pins(s)) return
    const cell = parseClaimId(s.claimId).cell
    await this.lock(s.claimId, async () => { await this.fetchInto(s, cell, this.shutdown.signal) })
    await this.init.announcer.announcePin(s, { signal: this.shutdown.signal })
    this.counters.repinned++
    log('pinned %s %s of %s again (kept from the last run)', s.claimId, s.tag, s.nodeId)
  }

  private async pin (s: SnapshotRecord, cell: string): Promise<void> {
    const dir = layoutDirFor(this.init.dataDir, parseClaimId(s.claimId))
    await mkdir(dirname(dir), { recursive: true })
    const free = await (this.init.diskFree ?? diskFree)(dirname(dir))
    const need = s.sizeBytes + (this.init.minFreeBytes ?? 256 * 1024 ** 2)
    if (free < need) {
      this.counters.refusedDisk++
      throw new SnapshotDiskShortError(`${free} bytes free, a copy of ${s.claimId} ${s.tag} needs about ${s.sizeBytes} and ${need - s.sizeBytes} must stay free`)
    }
    await this.fetchInto(s, cell, this.shutdown.signal)
    if (this.init.provide !== false) {
      // In the background: a DHT with few peers can be slow, and the pin must not wait for it.
      void provideSnapshotBlobs(this.init.libp2p, s.blobs, { signal: this.shutdown.signal })
    }
    await this.init.announcer.announcePin(s, { signal: this.shutdown.signal })
    this.counters.pinned++
    log('pinned %s %s of %s (%d blobs)', s.claimId, s.tag, s.nodeId, s.blobs.length)
  }

  private async fetchInto (s: SnapshotRecord, cell: string, signal?: AbortSignal): Promise<string> {
    const dir = layoutDirFor(this.init.dataDir, parseClaimId(s.claimId))
    const layout = OciLayout.open(dir)
    // Manifests first, so a record naming blobs its manifests do not is caught early.
    const order = [s.plainManifestDigest, ...(s.zfsManifestDigest !== undefined ? [s.zfsManifestDigest] : []), ...s.blobs]
    const digests = [...new Set(order)]
    const verified = this.verifiedIn(dir)
    // Blobs already here (shared ZFS bases, a previous run) are hashed once before they count.
    for (const d of digests) {
      if (verified.has(d) || !await layout.hasBlob(d)) continue
      try {
        await layout.verifyBlob(d, undefined, signal)
        verified.add(d)
      } catch (err) {
        if (!(err instanceof SnapshotCorruptError)) throw err
        log.error('blob %s in %s is corrupt: fetching it again', d, dir)
        await rm(layout.blobPath(d), { force: true })
      }
    }
    const holders = [s.nodeId, ...this.init.view.snapshotHolders(s)]
    const result = await fetchSnapshotBlobs(this.init.libp2p, {
      claimId: s.claimId,
      digests,
      layout,
      chain: this.init.chainFor(cell),
      holders,
      penalties: this.penalties,
      ...(this.init.maxBlobBytes !== undefined ? { maxBytes: this.init.maxBlobBytes } : {}),
      ...(signal !== undefined ? { signal } : {})
    })
    this.counters.blobsFetched += result.fetched
    this.counters.bytesFetched += result.bytes
    this.counters.corruptBlobs += result.corrupt.length
    for (const d of digests) verified.add(d)
    // The manifests must describe this snapshot and reference only blobs the record names.
    const named = new Set(s.blobs)
    const plain = await layout.readManifest(s.plainManifestDigest, 1)
    checkManifest(plain, s, named, s.plainManifestDigest)
    const tags: Array<{ tag: string, descriptor: Descriptor }> = [{ tag: s.tag, descriptor: { mediaType: MEDIA.manifest, digest: s.plainManifestDigest, size: (await layout.readSmallBlob(s.plainManifestDigest)).byteLength, ...(plain.annotations !== undefined ? { annotations: plain.annotations } : {}) } }]
    if (s.zfsManifestDigest !== undefined) {
      const zfs = await layout.readManifest(s.zfsManifestDigest, DEFAULT_SNAPSHOT_LIMITS.maxChunks)
      checkManifest(zfs, s, named, s.zfsManifestDigest)
      if (zfs.subject?.digest !== s.plainManifestDigest) throw new SnapshotCorruptError(`ZFS artifact ${s.zfsManifestDigest} does not belong to ${s.tag}`, s.zfsManifestDigest)
      tags.push({ tag: `${s.tag}.zfs`, descriptor: { mediaType: MEDIA.manifest, digest: s.zfsManifestDigest, size: (await layout.readSmallBlob(s.zfsManifestDigest)).byteLength, artifactType: MEDIA.zfsArtifact, ...(zfs.annotations !== undefined ? { annotations: zfs.annotations } : {}) } })
    }
    layout.setTags(tags)
    return dir
  }

  private verifiedIn (dir: string): Set<string> {
    let set = this.verified.get(dir)
    if (set === undefined) {
      if (this.verified.size >= 4096) this.verified.delete(this.verified.keys().next().value as string)
      this.verified.set(dir, set = new Set())
    }
    return set
  }

  /** Keeps the newest `keep` snapshots of the claim here (and their ZFS bases); stops announcing pins of the rest. */
  private async prune (claimId: string): Promise<void> {
    const dir = layoutDirFor(this.init.dataDir, parseClaimId(claimId))
    const { removedTags } = await pruneSnapshots({ layoutDir: dir, keep: this.keep })
    if (removedTags.length === 0) return
    this.counters.pruned += removedTags.length
    const removed = new Set(removedTags)
    for (const s of this.init.view.snapshots(claimId)) if (removed.has(s.tag)) this.init.announcer.withdrawPin(s)
    this.verified.delete(dir)
  }
}

/** Not pinned: the data disk is short (logged and counted in `refusedDisk`). */
export class SnapshotDiskShortError extends CellError {
  static override readonly errorName = 'SnapshotDiskShortError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

function checkManifest (m: ImageManifest, s: SnapshotRecord, named: Set<string>, digest: string): void {
  const a = m.annotations ?? {}
  if (a[ANNOTATION.tag] !== s.tag || a[ANNOTATION.claim] !== s.claimId || a[ANNOTATION.epoch] !== String(s.epoch)) {
    throw new SnapshotCorruptError(`manifest ${digest} does not describe ${s.claimId} ${s.tag} at epoch ${s.epoch}`, digest)
  }
  for (const d of [m.config, ...m.layers]) {
    if (!named.has(d.digest)) throw new SnapshotCorruptError(`manifest ${digest} references ${d.digest}, which the snapshot record does not name`, digest)
  }
}

async function diskFree (dir: string): Promise<number> {
  const s = await statfs(dir)
  return Number(s.bavail) * Number(s.bsize)
}

export interface SnapshotDistributionInit {
  /** The node's mesh: its libp2p, fleet view, host-grant check and credentials for a cell. */
  mesh: Pick<Mesh, 'libp2p' | 'view' | 'hostGrant' | 'credentialsFor'>
  /** The node's libp2p key (snapshot and pin records are signed with it). */
  privateKey: PrivateKey
  /** The node's credentials: its host grants travel in its snapshot records. */
  credentials: Pick<Credentials, 'grantFor'>
  /** Authorities this node trusts (read live; the blob server admits their hosts of a cell they claim). */
  trusted: ReadonlySet<string>
  dataDir: string
  /** Does `node` offer storage (e.g. a storage-class role in its record)? Default: every full node. */
  offersStorage?: (node: NodeRecord) => boolean
  /** Start pinning others' snapshots (default true); without it the node still serves, announces and can fetchSnapshot. */
  pin?: boolean
  announcer?: Partial<Omit<SnapshotAnnouncerInit, 'view' | 'pubsub' | 'privateKey' | 'grantsFor'>>
  pinner?: Partial<Omit<SnapshotPinnerInit, 'libp2p' | 'view' | 'announcer' | 'dataDir' | 'chainFor' | 'eligible'>>
  server?: Partial<Omit<SnapshotBlobServerInit, 'view' | 'trusted' | 'dataDir'>>
}

export interface SnapshotDistribution {
  announcer: SnapshotAnnouncer
  pinner: SnapshotPinner
  server: SnapshotBlobServer
  stop: () => Promise<void>
}

/**
 * Starts a full node's share of snapshot distribution on its mesh: the blob server
 * (`/cell/snapshot-blob/1`), the announcer (snapshot and pin records, re-announced) and the pinner.
 * Eligible holders: full nodes (that `offersStorage`) gossiping a host grant for the cell from an
 * authority that claims it.
 */
export async function startSnapshotDistribution (init: SnapshotDistributionInit): Promise<SnapshotDistribution> {
  const { mesh } = init
  const announcer = new SnapshotAnnouncer({
    view: mesh.view,
    pubsub: (mesh.libp2p.services as { pubsub: SnapshotAnnouncerInit['pubsub'] }).pubsub,
    privateKey: init.privateKey,
    grantsFor: cell => hostGrantsFor(init.credentials, mesh.view, cell),
    ...((mesh as { gossip?: { dissemination?: string } }).gossip?.dissemination === 'per-cell' ? { topicFor: cellTopic } : {}),
    ...init.announcer
  })
  const server = await serveSnapshotBlobs(mesh.libp2p, { view: mesh.view, trusted: init.trusted, dataDir: init.dataDir, ...init.server })
  const pinner = new SnapshotPinner({
    libp2p: mesh.libp2p,
    view: mesh.view,
    announcer,
    dataDir: init.dataDir,
    chainFor: cell => mesh.credentialsFor(cell),
    eligible: async (node, cell) => {
      if (!node.roles.includes('full') || init.offersStorage?.(node) === false) return false
      for (const authority of mesh.view.claimants(cell)) if (init.trusted.has(authority) && await mesh.hostGrant(node, authority, cell)) return true
      return false
    },
    ...init.pinner
  })
  announcer.start()
  if (init.pin !== false) pinner.start()
  return {
    announcer,
    pinner,
    server,
    stop: async () => {
      announcer.stop()
      await pinner.stop()
      await server.stop().catch(() => {})
    }
  }
}
