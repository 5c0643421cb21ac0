// Snapshots of a full node's claims, end to end: take one (node-host/storage takeSnapshot into the
// claim's OCI layout), announce it to the fleet and provide its blobs (snapshot-records,
// blob-exchange), pin other owners' snapshots (pins.ts), serve blobs to nodes with a host grant,
// and, on a node taking a claim over, fetch a snapshot's blobs from its holders and restore it.
// The VolumeManager sees all of it through the SnapshotPort interface.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import type { PrivateKey } from '@libp2p/interface'
import type { Clock } from '../../core/ports.ts'
import type { Credentials } from '../../core/identity/index.ts'
import type { FleetChange, NodeRecord, SnapshotRecord } from '../../core/fleet/index.ts'
import { cellTopic } from '../../core/fleet/index.ts'
import { offersStorageClass } from '../../core/biology/storage-class.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { claimId as claimIdOf, type Claim, type StorageDriver } from '../storage/driver.ts'
import { SnapshotNotFoundError } from '../storage/errors.ts'
import { layoutDirFor, restoreSnapshot, takeAndPrune } from '../storage/snapshots.ts'
import { SnapshotAnnouncer, hostGrantsFor } from '../storage/snapshot-records.ts'
import { SnapshotPinner } from '../storage/pins.ts'
import { SnapshotRecordStore } from '../storage/snapshot-record-store.ts'
import { OciLayout } from '../storage/oci-layout.ts'
import { parseClaimId } from '../storage/driver.ts'
import { provideSnapshotBlobs, serveSnapshotBlobs, type SnapshotBlobServer } from '../storage/blob-exchange.ts'
import type { SafeSnapshot, SafeWait, SnapshotPort } from './volume-manager.ts'

const log = logger('cell:snapshots')

export interface SnapshotServiceInit {
  mesh: Mesh
  credentials: Credentials
  /** This node's libp2p key (snapshot and pin records are signed with it). */
  privateKey: PrivateKey
  dataDir: string
  trusted: ReadonlySet<string>
  clock: Clock
  /** Snapshots kept per claim, own and pinned (default 4, plus the ZFS bases they need). */
  keep?: number
  /** Re-announce snapshots and pins this often (default 60 s). */
  announceMs?: number
  /** Does this node own the claim now? Its owner never pins older snapshots of it (it has newer data). */
  ownsClaim?: (claimId: string) => boolean
}


/** One lock per claim: a snapshot, a prune and blobs landing in one layout never overlap. */
class ClaimLocks {
  private readonly tails = new Map<string, Promise<unknown>>()

  async with<T> (claimId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.tails.get(claimId) ?? Promise.resolve()
    const run = before.then(fn, fn)
    const tail = run.catch(() => {})
    this.tails.set(claimId, tail)
    try {
      return await run
    } finally {
      if (this.tails.get(claimId) === tail) this.tails.delete(claimId)
    }
  }
}

export class SnapshotService implements SnapshotPort {
  readonly announcer: SnapshotAnnouncer
  readonly pinner: SnapshotPinner
  /** This node's own and pinned snapshot records, kept on disk for the next start. */
  readonly store: SnapshotRecordStore
  /** What `restoreRecords` gave back at start. */
  readonly restored = { own: 0, held: 0, dropped: 0 }
  private server?: SnapshotBlobServer
  private readonly init: SnapshotServiceInit
  private readonly locks = new ClaimLocks()
  private readonly selfId: string
  private readonly shutdown = new AbortController()

  constructor (init: SnapshotServiceInit) {
    this.init = init
    const { mesh } = init
    this.selfId = mesh.peerId.toString()
    this.store = new SnapshotRecordStore({ dataDir: init.dataDir })
    this.announcer = new SnapshotAnnouncer({
      store: this.store,
      view: mesh.view,
      pubsub: mesh.libp2p.services.pubsub,
      privateKey: init.privateKey,
      grantsFor: (cell) => hostGrantsFor(init.credentials, mesh.view, cell),
      ...(mesh.gossip.dissemination === 'per-cell' ? { topicFor: cellTopic } : {}),
      clock: init.clock,
      ...(init.announceMs !== undefined ? { announceMs: init.announceMs } : {})
    })
    this.pinner = new SnapshotPinner({
      libp2p: mesh.libp2p,
      view: mesh.view,
      announcer: this.announcer,
      dataDir: init.dataDir,
      chainFor: (cell) => mesh.credentialsFor(cell),
      eligible: async (node, cell) => await this.mayHold(node, cell),
      withClaimLock: async (claimId, fn) => await this.locks.with(claimId, fn),
      // The owner's own snapshots must never wait behind a fetch of an older one from a holder that
      // may be gone (a fetch holds the layout's lock for as long as it tries).
      ...(init.ownsClaim !== undefined ? { skipClaim: init.ownsClaim } : {}),
      clock: init.clock,
      ...(init.keep !== undefined ? { keep: init.keep } : {})
    })
  }

  /** A node may hold a cell's snapshots: it offers storage and gossips a host grant for the cell from a trusted claimant. */
  private async mayHold (node: NodeRecord, cell: string): Promise<boolean> {
    if (!offersStorageClass(node.roles, 'default')) return false
    for (const authority of this.init.mesh.view.claimants(cell)) {
      if (this.init.trusted.has(authority) && await this.init.mesh.hostGrant(node, authority, cell)) return true
    }
    return false
  }

  async start (): Promise<void> {
    const { mesh } = this.init
    this.server = await serveSnapshotBlobs(mesh.libp2p, { view: mesh.view, trusted: this.init.trusted, dataDir: this.init.dataDir, clock: this.init.clock })
    this.announcer.start()
    this.pinner.start()
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    this.announcer.stop()
    await this.pinner.stop()
    await this.server?.stop()
    this.server = undefined
    await this.store.flush()
  }

  /**
   * Once per start, after the fleet intent is back in the view (the release records that say who
   * claims a cell, which the trust check of a snapshot record needs): the snapshot records this
   * node kept are given back to its view. Its own are signed afresh; others' go through the view's
   * checks as any relayed record (signature, ttl, a host grant from a claimant) and their pins are
   * announced again once the blobs on disk verify. Only snapshots whose tag this node's layout of
   * the claim still holds count. A whole fleet started again so knows its claims' snapshots.
   */
  async restoreRecords (): Promise<void> {
    const { mesh } = this.init
    const stored = await this.store.load()
    const again: SnapshotRecord[] = []
    const why: string[] = []
    for (const { envelope } of stored) {
      const r = envelope.record
      const drop = (reason: string): void => {
        this.store.forget(r)
        this.restored.dropped++
        if (why.length < 8) why.push(`${r.claimId} ${r.tag} of …${r.nodeId.slice(-6)}: ${reason}`)
      }
      if (!this.layoutHolds(r)) { drop('no longer on this node\'s disk'); continue }
      try {
        if (r.nodeId === this.selfId) {
          await this.announcer.announceStored(r, { signal: this.shutdown.signal })
          this.restored.own++
          continue
        }
        const result = await mesh.view.apply(envelope, { relayed: true, from: this.selfId, ageMs: Math.max(0, this.init.clock.now() - r.sentMs) })
        if (!result.accepted && result.reason !== 'duplicate') { drop(result.reason); continue }
        again.push(r)
        this.restored.held++
      } catch (err) {
        drop((err as Error).message)
      }
    }
    await this.store.flush()
    if (why.length > 0) log('snapshot records of the last run not given back: %s', why.join('; '))
    if (stored.length > 0) log('gave back %d own and %d pinned snapshot record(s) of the last run to the fleet view', this.restored.own, this.restored.held)
    // In the background: a pin goes out only after its blobs verify, which reads them all.
    void (async () => {
      for (const r of again) {
        if (this.shutdown.signal.aborted) return
        await this.pinner.repin(r).catch((err: Error) => { if (!this.shutdown.signal.aborted) log.error('pin of %s %s (kept from the last run) not announced: %s', r.claimId, r.tag, err.message) })
      }
    })()
  }

  /** Does this node's layout of the record's claim still tag the snapshot? */
  private layoutHolds (r: SnapshotRecord): boolean {
    try {
      const dir = layoutDirFor(this.init.dataDir, parseClaimId(r.claimId))
      return existsSync(join(dir, 'index.json')) && OciLayout.open(dir).resolve(r.tag) !== undefined
    } catch {
      return false
    }
  }

  async take (driver: StorageDriver, claim: Claim, epoch: number, options: { signal?: AbortSignal } = {}): Promise<{ tag: string, sizeBytes: number }> {
    const id = claimIdOf(claim)
    const layoutDir = layoutDirFor(this.init.dataDir, claim)
    const info = await this.locks.with(id, async () => {
      return await takeAndPrune({
        driver, claim, epoch, layoutDir, nowMs: this.init.clock.now(), keep: this.init.keep ?? 4,
        onPruneError: (err) => { log.error('pruning snapshots of %s: %e', id, err) },
        ...(options.signal !== undefined ? { signal: options.signal } : {})
      })
    })
    const announcing = performance.now()
    await this.announcer.announceSnapshot(info, options)
    log('took %s of %s: %d bytes, %d blobs; announced in %d ms', info.tag, id, info.sizeBytes, info.blobs.length, Math.round(performance.now() - announcing))
    void provideSnapshotBlobs(this.init.mesh.libp2p, info.blobs, { signal: this.shutdown.signal }).catch(() => {})
    return { tag: info.tag, sizeBytes: info.sizeBytes }
  }

  private own (claimId: string, tag: string): SnapshotRecord | undefined {
    return this.init.mesh.view.snapshots(claimId).find(s => s.tag === tag && s.nodeId === this.selfId)
  }

  /**
   * Waits until two other nodes hold this node's snapshot `tag`, at most `timeoutMs`, and gives up
   * sooner once nobody is left who could pin it: the holders so far and the other full nodes this
   * node is connected to are fewer than a safe snapshot needs, for `hopelessMs` (default 2 s, which
   * rides out a reconnect). The last node of a fleet being stopped does not wait out the timeout.
   */
  async waitSafe (claimId: string, tag: string, options: { timeoutMs: number, hopelessMs?: number, signal?: AbortSignal }): Promise<SafeWait> {
    const view = this.init.mesh.view
    const safe = (): boolean => { const s = this.own(claimId, tag); return s !== undefined && view.isSafeSnapshot(s) }
    if (safe()) return 'safe'
    const hopelessMs = options.hopelessMs ?? 2_000
    const giveUp = new AbortController()
    const signal = options.signal !== undefined ? AbortSignal.any([options.signal, giveUp.signal]) : giveUp.signal
    let hopelessSince: number | undefined
    let timer: unknown
    const check = (): void => {
      const now = this.init.clock.now()
      if (this.couldBecomeSafe(claimId, tag)) hopelessSince = undefined
      else hopelessSince ??= now
      if (hopelessSince !== undefined && now - hopelessSince >= hopelessMs) {
        log('snapshot %s of %s: no node left that could pin it (%d other nodes connected); not waiting longer', tag, claimId, this.connectedNodes().size)
        giveUp.abort(new Error('hopeless'))
        return
      }
      timer = this.init.clock.setTimeout(check, Math.min(250, hopelessMs))
    }
    check()
    try {
      return await this.waitFor(claimId, safe, { timeoutMs: options.timeoutMs, signal }) === true ? 'safe' : 'timeout'
    } catch (err) {
      if (giveUp.signal.aborted && options.signal?.aborted !== true) return safe() ? 'safe' : 'nobody'
      throw err
    } finally {
      this.init.clock.clearTimeout(timer)
    }
  }

  /** Other full nodes (node records in the view) this node has a connection to now. */
  private connectedNodes (): Set<string> {
    const view = this.init.mesh.view
    const peers = new Set<string>()
    for (const c of this.init.mesh.libp2p.getConnections()) {
      const id = c.remotePeer.toString()
      if (id !== this.selfId && view.node(id) !== undefined) peers.add(id)
    }
    return peers
  }

  /** Holders of the snapshot so far plus connected full nodes that are not yet among them reach a safe count. */
  private couldBecomeSafe (claimId: string, tag: string): boolean {
    const view = this.init.mesh.view
    const s = this.own(claimId, tag)
    const holders = new Set(s !== undefined ? view.snapshotHolders(s) : [])
    let possible = holders.size
    for (const id of this.connectedNodes()) if (!holders.has(id)) possible++
    return possible >= view.safeHolders
  }

  async newestSafe (claimId: string, options: { minEpoch: number, maxEpoch: number, timeoutMs: number, signal?: AbortSignal }): Promise<SafeSnapshot | undefined> {
    const view = this.init.mesh.view
    const newest = (): SnapshotRecord | undefined => view.newestSafe(claimId, { maxEpoch: options.maxEpoch })
    await this.waitFor(claimId, () => (newest()?.epoch ?? -1) >= options.minEpoch, options)
    const s = newest()
    return s === undefined ? undefined : { tag: s.tag, epoch: s.epoch, nodeId: s.nodeId, takenMs: s.takenMs }
  }

  async find (claimId: string, tag: string, nodeId: string, options: { timeoutMs: number, signal?: AbortSignal }): Promise<SafeSnapshot | undefined> {
    const view = this.init.mesh.view
    const record = (): SnapshotRecord | undefined => view.snapshots(claimId).find(s => s.tag === tag && s.nodeId === nodeId)
    await this.waitFor(claimId, () => record() !== undefined, options)
    const s = record()
    return s === undefined ? undefined : { tag: s.tag, epoch: s.epoch, nodeId: s.nodeId, takenMs: s.takenMs }
  }

  /** Resolves true once `done()` holds (checked at once and on every snapshot/pin change), false at the deadline. */
  private async waitFor (claimId: string, done: () => boolean, options: { timeoutMs: number, signal?: AbortSignal }): Promise<boolean | undefined> {
    if (done()) return true
    if (options.timeoutMs <= 0) return false
    options.signal?.throwIfAborted()
    const view = this.init.mesh.view
    return await new Promise<boolean>((resolve, reject) => {
      const finish = (value: boolean | Error): void => {
        view.removeEventListener('change', onChange)
        this.init.clock.clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        if (value instanceof Error) reject(value)
        else resolve(value)
      }
      const onChange = (evt: Event): void => {
        const change = (evt as CustomEvent<FleetChange>).detail
        if ((change.kind === 'snapshot' || change.kind === 'pin') && change.key === claimId && done()) finish(true)
      }
      const onAbort = (): void => { finish(options.signal?.reason as Error) }
      const timer = this.init.clock.setTimeout(() => { finish(done()) }, options.timeoutMs)
      view.addEventListener('change', onChange)
      options.signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  async restore (driver: StorageDriver, claim: Claim, tag: string, quotaBytes: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const id = claimIdOf(claim)
    const record = this.init.mesh.view.snapshots(id).find(s => s.tag === tag)
    if (record === undefined) throw new SnapshotNotFoundError(`the fleet view holds no snapshot ${tag} of ${id}`)
    await this.locks.with(id, async () => {
      // Blobs this node pinned are already here (verified); the rest come from the holders.
      const layoutDir = await this.pinner.fetchSnapshot(record, options)
      const result = await restoreSnapshot({ driver, claim, layoutDir, tag, quotaBytes, minEpoch: record.epoch, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
      log('restored %s from %s via the %s image%s', id, tag, result.via, result.zfsSkipped !== undefined ? ` (ZFS stream not used: ${result.zfsSkipped.message})` : '')
    })
  }
}

export async function createSnapshotPort (init: SnapshotServiceInit): Promise<SnapshotService> {
  const service = new SnapshotService(init)
  await service.start()
  return service
}
