// Announcing snapshots and pins in the fleet (issue 10 point 4). The owner of a claim announces
// each snapshot it took (`announceSnapshot`, from takeSnapshot's SnapshotInfo); a holder that
// fetched and verified every blob of one announces a pin (`announcePin`). Records are signed with
// the node's key, applied to the local view first (a record the local view refuses is never
// gossiped) and published on the fleet topic like heartbeats; both are re-announced every
// `announceMs` while the view still holds the snapshot, so pins stay fresh (they lapse after the
// view's pin ttl) and late joiners also get them through fleet-sync.
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { Repeater, systemClock, type Clock } from '../../core/ports.ts'
import { FLEET_TOPIC, FleetRecordRejectedError, SNAPSHOT_LIMITS, encodeEnvelope, signRecord } from '../../core/fleet/index.ts'
import type { FleetPubSub, FleetView, PinRecord, SnapshotRecord } from '../../core/fleet/index.ts'
import { encodeCertificate, type Credentials } from '../../core/identity/index.ts'
import type { SnapshotInfo } from './snapshots.ts'
import type { SnapshotRecordStore } from './snapshot-record-store.ts'

const log = logger('cell:snapshot-records')

export interface SnapshotAnnouncerInit {
  view: FleetView
  pubsub: Pick<FleetPubSub, 'publish'>
  /** This node's libp2p key: records are signed with it. */
  privateKey: PrivateKey
  /** Encoded host grants of this node for `cell` (carried in snapshot records; see `hostGrantsFor`). */
  grantsFor: (cell: string) => Uint8Array[]
  clock?: Clock
  /**
   * The topic a cell's snapshot and pin records go to: the fleet topic (default), or under per-cell
   * dissemination the cell's own topic, which its hosts, standby candidates and callers follow.
   */
  topicFor?: (cell: string) => string
  /** Re-announce own snapshots and pins this often (default 60 s; the view's pin ttl is 10 min). */
  announceMs?: number
  /** Pins re-announced at most (default 4096). */
  maxPins?: number
  /**
   * Where this node keeps the signed records of its own snapshots and of those it pinned, so they
   * are known again after a restart of the whole fleet (snapshot-record-store.ts). Default: none.
   */
  store?: SnapshotRecordStore
}

export interface SnapshotAnnouncerStats { snapshots: number, pins: number, reannounced: number, failures: number }

/** The host grants this node holds from the authorities that claim `cell`, encoded for a snapshot record (at most 2). */
export function hostGrantsFor (credentials: Pick<Credentials, 'grantFor'>, view: Pick<FleetView, 'claimants'>, cell: string): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const authority of view.claimants(cell)) {
    const grant = credentials.grantFor(authority)
    if (grant != null && grant.roles.includes('host') && (grant.cells.length === 0 || grant.cells.includes(cell))) out.push(encodeCertificate(grant))
  }
  return out.slice(0, 2)
}

/**
 * The fields of a snapshot record for takeSnapshot's SnapshotInfo (seq and sentMs are stamped when
 * signed). A ZFS artifact of more chunks than a record may name (SNAPSHOT_LIMITS.blobs) is left out:
 * the plain image alone restores on any driver (say so in the log; larger chunks avoid it).
 */
export function snapshotRecordOf (info: SnapshotInfo, nodeId: string, grants: Uint8Array[]): Omit<SnapshotRecord, 'seq' | 'sentMs'> {
  const slash = info.claim.lastIndexOf('/')
  const blobs = [...new Set(info.blobs)]
  if (info.zfs !== undefined && blobs.length > SNAPSHOT_LIMITS.blobs) {
    log('snapshot %s of %s has %d blobs, more than a record names (%d): announced with its plain image only', info.tag, info.claim, blobs.length, SNAPSHOT_LIMITS.blobs)
    const { zfs: _, ...plain } = info
    return snapshotRecordOf({ ...plain, blobs: [info.plain.manifestDigest, info.plain.configDigest, info.plain.layerDigest] }, nodeId, grants)
  }
  return {
    nodeId,
    cell: info.claim.slice(0, slash),
    claimId: info.claim,
    epoch: info.epoch,
    tag: info.tag,
    takenMs: info.takenMs,
    sizeBytes: info.sizeBytes,
    plainManifestDigest: info.plain.manifestDigest,
    ...(info.zfs !== undefined ? { zfsManifestDigest: info.zfs.manifestDigest } : {}),
    ...(info.zfs?.baseTag !== undefined ? { zfsBaseTag: info.zfs.baseTag } : {}),
    blobs,
    ...(grants.length > 0 ? { grants } : {})
  }
}

const pinKey = (p: Pick<PinRecord, 'claimId' | 'owner' | 'tag'>): string => `${p.claimId} ${p.owner} ${p.tag}`

export class SnapshotAnnouncer {
  readonly nodeId: string
  private readonly init: SnapshotAnnouncerInit
  private readonly clock: Clock
  private readonly announceMs: number
  private readonly maxPins: number
  private seq: number
  private repeater?: Repeater
  /** Snapshots this node pinned: re-announced while the view holds them. */
  private readonly pinned = new Map<string, SnapshotRecord>()
  private readonly counters: SnapshotAnnouncerStats = { snapshots: 0, pins: 0, reannounced: 0, failures: 0 }

  constructor (init: SnapshotAnnouncerInit) {
    this.init = init
    this.clock = init.clock ?? systemClock
    this.nodeId = peerIdFromPrivateKey(init.privateKey).toString()
    this.announceMs = init.announceMs ?? 60_000
    this.maxPins = init.maxPins ?? 4096
    this.seq = this.clock.now()
  }

  stats (): SnapshotAnnouncerStats {
    return { ...this.counters }
  }

  start (): void {
    this.repeater ??= new Repeater({ clock: this.clock, everyMs: this.announceMs, work: async () => { await this.reannounce() }, onError: (err) => { log.error('re-announcing snapshots failed: %e', err) } })
    this.repeater.start()
  }

  stop (): void {
    this.repeater?.stop()
  }

  private nextSeq (): number {
    this.seq = Math.max(this.seq + 1, this.clock.now())
    return this.seq
  }

  /** Announces a snapshot this node (the claim's owner) took; call it right after takeSnapshot. */
  async announceSnapshot (info: SnapshotInfo, options: { signal?: AbortSignal } = {}): Promise<SnapshotRecord> {
    const cell = info.claim.slice(0, info.claim.lastIndexOf('/'))
    const record: SnapshotRecord = { ...snapshotRecordOf(info, this.nodeId, this.init.grantsFor(cell)), seq: this.nextSeq(), sentMs: this.clock.now() }
    await this.publish('snapshot', record, options.signal)
    this.counters.snapshots++
    return record
  }

  /** Announces that this node holds and verified every blob of `snapshot`, and keeps announcing it. */
  async announcePin (snapshot: SnapshotRecord, options: { signal?: AbortSignal } = {}): Promise<PinRecord> {
    const pin = this.pinOf(snapshot)
    await this.publish('pin', pin, options.signal)
    this.remember(snapshot)
    const key = pinKey(pin)
    if (!this.pinned.has(key) && this.pinned.size >= this.maxPins) this.pinned.delete(this.pinned.keys().next().value as string)
    this.pinned.set(key, snapshot)
    this.counters.pins++
    return pin
  }

  /** Stops re-announcing a pin (the blobs were pruned). */
  withdrawPin (snapshot: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): void {
    this.pinned.delete(pinKey({ claimId: snapshot.claimId, owner: snapshot.nodeId, tag: snapshot.tag }))
    if (this.init.store?.has(snapshot) === true) {
      this.init.store.forget(snapshot)
      void this.init.store.flush()
    }
  }

  /** Announces again, signed afresh, a snapshot of this node's own that the record store kept from an earlier run. */
  async announceStored (record: SnapshotRecord, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (record.nodeId !== this.nodeId) throw new FleetRecordRejectedError(`snapshot ${record.tag} of ${record.claimId} is …${record.nodeId.slice(-6)}'s, not this node's`, 'wrong-origin')
    const grants = this.init.grantsFor(record.cell)
    const { grants: _, ...rest } = record
    await this.publish('snapshot', { ...rest, ...(grants.length > 0 ? { grants } : {}), seq: this.nextSeq(), sentMs: this.clock.now() }, options.signal)
  }

  /** Keeps the owner's signed record of `snapshot` (as the view holds it) in the record store. */
  private remember (snapshot: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): void {
    const store = this.init.store
    if (store === undefined) return
    const bytes = this.init.view.snapshotEnvelope(snapshot.claimId, snapshot.nodeId, snapshot.tag)
    const record = this.init.view.snapshots(snapshot.claimId).find(x => x.nodeId === snapshot.nodeId && x.tag === snapshot.tag)
    if (bytes === undefined || record === undefined) return
    if (store.put(bytes, record)) void store.flush()
  }

  /** Is this node announcing a pin of `snapshot`? */
  pins (snapshot: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): boolean {
    return this.pinned.has(pinKey({ claimId: snapshot.claimId, owner: snapshot.nodeId, tag: snapshot.tag }))
  }

  private pinOf (s: SnapshotRecord): PinRecord {
    return {
      nodeId: this.nodeId, owner: s.nodeId, cell: s.cell, claimId: s.claimId, epoch: s.epoch, tag: s.tag,
      manifestDigest: s.plainManifestDigest, seq: this.nextSeq(), sentMs: this.clock.now()
    }
  }

  /** Re-signs and publishes this node's own snapshot records and its pins the view still holds. */
  async reannounce (): Promise<void> {
    const { view } = this.init
    for (const claimId of view.snapshotClaims()) {
      for (const s of view.snapshots(claimId)) {
        if (s.nodeId !== this.nodeId) continue
        try {
          await this.publish('snapshot', { ...s, grants: this.init.grantsFor(s.cell), seq: this.nextSeq(), sentMs: this.clock.now() })
          this.counters.reannounced++
        } catch (err) {
          this.counters.failures++
          log('re-announcing snapshot %s of %s failed: %e', s.tag, claimId, err)
        }
      }
    }
    for (const [key, s] of this.pinned) {
      const held = view.snapshots(s.claimId).find(x => x.nodeId === s.nodeId && x.tag === s.tag && x.plainManifestDigest === s.plainManifestDigest)
      if (held === undefined) { this.pinned.delete(key); continue }
      try {
        await this.publish('pin', this.pinOf(held))
        this.remember(held)
        this.counters.reannounced++
      } catch (err) {
        this.counters.failures++
        log('re-announcing pin of %s %s failed: %e', s.claimId, s.tag, err)
      }
    }
  }

  private async publish (kind: 'snapshot' | 'pin', record: SnapshotRecord | PinRecord, signal?: AbortSignal): Promise<void> {
    const envelope = kind === 'snapshot'
      ? await signRecord(this.init.privateKey, 'snapshot', record as SnapshotRecord, { signal })
      : await signRecord(this.init.privateKey, 'pin', record as PinRecord, { signal })
    const result = await this.init.view.apply(envelope, { from: this.nodeId, signal })
    if (!result.accepted && result.reason !== 'duplicate') {
      this.counters.failures++
      throw new FleetRecordRejectedError(`${kind} of ${record.claimId} ${record.tag} refused by the local fleet view: ${result.reason}`, result.reason)
    }
    // This node's own snapshots are kept on its disk as it signed them (a whole-fleet restart).
    if (kind === 'snapshot') this.remember(record)
    try {
      await this.init.pubsub.publish(this.init.topicFor?.(record.cell) ?? FLEET_TOPIC, encodeEnvelope(envelope), { allowPublishToZeroTopicPeers: true, ignoreDuplicatePublishError: true })
    } catch (err) {
      // Held locally: fleet-sync and the next re-announcement carry it.
      log('publishing %s of %s failed: %e', kind, record.claimId, err)
    }
  }
}
