// The view's bookkeeping of snapshot and pin records, per claim: the last N snapshots (ranked by
// epoch, then time; a record ranking below a full claim's lowest is a replay of an evicted one and
// is refused as stale), the pins of each, expiry by age, and which snapshots are safe (pinned by at
// least two nodes other than the owner). The view (view.ts) checks origin, time, signature and
// trust before anything lands here; this file holds only maps, bounds and order.
import { compareSnapshots } from './snapshots.ts'
import type { PinRecord, SnapshotRecord } from './snapshots.ts'

/** A record as held by the view: its envelope bytes and local receive time (minus relay age). */
export interface Held<T> { record: T, bytes: Uint8Array, receivedMs: number }

export interface SnapshotBookInit {
  /** Snapshots kept per claim (default 8): older ones are evicted with their pins. */
  maxSnapshotsPerClaim?: number
  /** Claims with snapshot records (default 4096). */
  maxClaims?: number
  /** Distinct holders remembered per snapshot (default 16). */
  maxPinsPerSnapshot?: number
  /**
   * A snapshot record not re-announced for this long is forgotten (default 7 days). Its holders keep
   * it on disk as its owner signed it and give it back after a restart with its age: a fleet stopped
   * for up to this long, whose claim owner never returns, still knows the snapshots to restore.
   * (Pins, which decide what is safe, last 10 minutes and are announced afresh.)
   */
  snapshotTtlMs?: number
  /** A pin not re-announced for this long no longer counts (default 10 min). */
  pinTtlMs?: number
  /** Holders other than the owner a snapshot needs to be safe (default 2). */
  safeHolders?: number
  /** Envelope bytes of all snapshot records held (default 64 MiB): a granted host flooding claims cannot exhaust memory. */
  maxSnapshotBytes?: number
  /** Pins held in all (default 65536). */
  maxPins?: number
}

export type BookDrop = 'stale' | 'duplicate' | 'unknown-snapshot' | 'untrusted' | 'overflow-snapshots'

interface ClaimBook {
  /** `${owner} ${tag}` → record. */
  snapshots: Map<string, Held<SnapshotRecord>>
  /** `${holder} ${owner} ${tag}` → pin. */
  pins: Map<string, Held<PinRecord>>
}

export interface SnapshotBookStats {
  claims: number
  accepted: { snapshot: number, pin: number }
  snapshots: number
  /** Envelope bytes of the snapshot records held. */
  snapshotBytes: number
  pins: number
  evicted: number
  expired: { snapshot: number, pin: number }
}

function newer (a: { seq: number, sentMs: number }, b: { seq: number, sentMs: number }): boolean {
  return a.seq > b.seq || (a.seq === b.seq && a.sentMs > b.sentMs)
}

const snapKey = (owner: string, tag: string): string => `${owner} ${tag}`
const pinKey = (p: PinRecord): string => `${p.nodeId} ${p.owner} ${p.tag}`

export class SnapshotBook {
  readonly snapshotTtlMs: number
  readonly pinTtlMs: number
  readonly safeHolders: number
  private readonly maxPerClaim: number
  private readonly maxClaims: number
  private readonly maxPins: number
  private readonly maxBytes: number
  private totalBytes = 0
  private readonly maxTotalPins: number
  private totalPins = 0
  private readonly claims = new Map<string, ClaimBook>()
  private evicted = 0
  /** Bumped by the view for each accepted record. */
  readonly accepted = { snapshot: 0, pin: 0 }
  private readonly expiredCount = { snapshot: 0, pin: 0 }

  constructor (init: SnapshotBookInit = {}) {
    this.maxPerClaim = Math.max(1, init.maxSnapshotsPerClaim ?? 8)
    this.maxClaims = init.maxClaims ?? 4096
    this.maxPins = init.maxPinsPerSnapshot ?? 16
    this.snapshotTtlMs = init.snapshotTtlMs ?? 7 * 24 * 3_600_000
    this.pinTtlMs = init.pinTtlMs ?? 10 * 60_000
    this.safeHolders = init.safeHolders ?? 2
    this.maxBytes = init.maxSnapshotBytes ?? 64 * 1024 * 1024
    this.maxTotalPins = init.maxPins ?? 65_536
  }

  /** Why `record` (of `bytes` envelope bytes) cannot be stored now (order and bounds only), or undefined. */
  checkSnapshot (record: SnapshotRecord, bytes = 0): BookDrop | undefined {
    if (this.totalBytes + bytes > this.maxBytes) return 'overflow-snapshots'
    const claim = this.claims.get(record.claimId)
    if (claim === undefined) return this.claims.size >= this.maxClaims ? 'overflow-snapshots' : undefined
    const existing = claim.snapshots.get(snapKey(record.nodeId, record.tag))
    if (existing !== undefined) {
      if (newer(record, existing.record)) return undefined
      return existing.record.seq === record.seq && existing.record.sentMs === record.sentMs ? 'duplicate' : 'stale'
    }
    if (claim.snapshots.size < this.maxPerClaim) return undefined
    // Full: only a snapshot ranking above the lowest kept gets in (it evicts that one).
    return compareSnapshots(record, this.lowest(claim).record) < 0 ? undefined : 'stale'
  }

  /** Why `pin` cannot be stored now, or undefined: it must name a snapshot held here, by content. */
  checkPin (pin: PinRecord): BookDrop | undefined {
    // A node cannot vouch for its own snapshot: safety is about copies elsewhere.
    if (pin.nodeId === pin.owner) return 'untrusted'
    const claim = this.claims.get(pin.claimId)
    const snap = claim?.snapshots.get(snapKey(pin.owner, pin.tag))?.record
    if (claim === undefined || snap === undefined || snap.epoch !== pin.epoch || snap.plainManifestDigest !== pin.manifestDigest) return 'unknown-snapshot'
    const existing = claim.pins.get(pinKey(pin))
    if (existing !== undefined) {
      if (newer(pin, existing.record)) return undefined
      return existing.record.seq === pin.seq && existing.record.sentMs === pin.sentMs ? 'duplicate' : 'stale'
    }
    if (this.totalPins >= this.maxTotalPins) return 'overflow-snapshots'
    let count = 0
    for (const held of claim.pins.values()) if (held.record.owner === pin.owner && held.record.tag === pin.tag) count++
    return count >= this.maxPins ? 'overflow-snapshots' : undefined
  }

  /** Stores a checked snapshot record, evicting the lowest-ranked one of a full claim (with its pins). */
  putSnapshot (held: Held<SnapshotRecord>): void {
    const record = held.record
    let claim = this.claims.get(record.claimId)
    if (claim === undefined) this.claims.set(record.claimId, claim = { snapshots: new Map(), pins: new Map() })
    const key = snapKey(record.nodeId, record.tag)
    const previous = claim.snapshots.get(key)
    claim.snapshots.set(key, held)
    this.totalBytes += held.bytes.length - (previous?.bytes.length ?? 0)
    // A re-announcement with other content voids the pins of the old content.
    if (previous !== undefined && previous.record.plainManifestDigest !== record.plainManifestDigest) this.dropPins(claim, record.nodeId, record.tag)
    while (claim.snapshots.size > this.maxPerClaim) {
      const low = this.lowest(claim)
      claim.snapshots.delete(snapKey(low.record.nodeId, low.record.tag))
      this.totalBytes -= low.bytes.length
      this.dropPins(claim, low.record.nodeId, low.record.tag)
      this.evicted++
    }
  }

  putPin (held: Held<PinRecord>): void {
    const claim = this.claims.get(held.record.claimId)
    if (claim === undefined) return
    const key = pinKey(held.record)
    if (!claim.pins.has(key)) this.totalPins++
    claim.pins.set(key, held)
  }

  private lowest (claim: ClaimBook): Held<SnapshotRecord> {
    let low: Held<SnapshotRecord> | undefined
    for (const held of claim.snapshots.values()) if (low === undefined || compareSnapshots(held.record, low.record) > 0) low = held
    return low!
  }

  private dropPins (claim: ClaimBook, owner: string, tag: string): void {
    for (const [key, held] of claim.pins) {
      if (held.record.owner === owner && held.record.tag === tag) { claim.pins.delete(key); this.totalPins-- }
    }
  }

  /** Deletes records older than their ttl; returns the claim ids that changed. */
  expire (nowMs: number): { claimId: string, cell: string, kind: 'snapshot' | 'pin' }[] {
    const changed: Array<{ claimId: string, cell: string, kind: 'snapshot' | 'pin' }> = []
    for (const [claimId, claim] of this.claims) {
      for (const [key, held] of claim.snapshots) {
        if (held.receivedMs + this.snapshotTtlMs > nowMs) continue
        claim.snapshots.delete(key)
        this.totalBytes -= held.bytes.length
        this.dropPins(claim, held.record.nodeId, held.record.tag)
        this.expiredCount.snapshot++
        changed.push({ claimId, cell: held.record.cell, kind: 'snapshot' })
      }
      for (const [key, held] of claim.pins) {
        if (held.receivedMs + this.pinTtlMs > nowMs) continue
        claim.pins.delete(key)
        this.totalPins--
        this.expiredCount.pin++
        changed.push({ claimId, cell: held.record.cell, kind: 'pin' })
      }
      if (claim.snapshots.size === 0) this.claims.delete(claimId)
    }
    return changed
  }

  /** Claim ids with snapshot records, optionally of one cell, sorted. */
  claimIds (cell?: string): string[] {
    const out: string[] = []
    for (const [claimId, claim] of this.claims) {
      const first = claim.snapshots.values().next().value
      if (cell === undefined || first?.record.cell === cell) out.push(claimId)
    }
    return out.sort()
  }

  /** Fresh snapshot records of a claim, newest first (a higher epoch always first). */
  snapshots (claimId: string, nowMs: number): SnapshotRecord[] {
    const claim = this.claims.get(claimId)
    if (claim === undefined) return []
    const out: SnapshotRecord[] = []
    for (const held of claim.snapshots.values()) if (held.receivedMs + this.snapshotTtlMs > nowMs) out.push(held.record)
    return out.sort(compareSnapshots)
  }

  /** The signed envelope (encoded) of `owner`'s snapshot `tag` of the claim, while it is fresh. */
  envelope (claimId: string, owner: string, tag: string, nowMs: number): Uint8Array | undefined {
    const held = this.claims.get(claimId)?.snapshots.get(snapKey(owner, tag))
    return held !== undefined && held.receivedMs + this.snapshotTtlMs > nowMs ? held.bytes : undefined
  }

  /** Nodes other than the owner with a fresh pin of exactly this snapshot (same epoch and manifest), sorted. */
  holders (snapshot: SnapshotRecord, nowMs: number): string[] {
    const claim = this.claims.get(snapshot.claimId)
    if (claim === undefined) return []
    const out = new Set<string>()
    for (const held of claim.pins.values()) {
      const p = held.record
      if (held.receivedMs + this.pinTtlMs <= nowMs || p.owner !== snapshot.nodeId || p.tag !== snapshot.tag) continue
      if (p.epoch !== snapshot.epoch || p.manifestDigest !== snapshot.plainManifestDigest || p.nodeId === snapshot.nodeId) continue
      out.add(p.nodeId)
    }
    return [...out].sort()
  }

  /** Every held record's envelope bytes (snapshots first), for fleet-sync snapshots. */
  * held (): Generator<{ held: Held<SnapshotRecord> | Held<PinRecord>, ttlMs: number }> {
    for (const claim of this.claims.values()) for (const held of claim.snapshots.values()) yield { held, ttlMs: this.snapshotTtlMs }
    for (const claim of this.claims.values()) for (const held of claim.pins.values()) yield { held, ttlMs: this.pinTtlMs }
  }

  stats (): SnapshotBookStats {
    let snapshots = 0
    let pins = 0
    for (const claim of this.claims.values()) { snapshots += claim.snapshots.size; pins += claim.pins.size }
    return { claims: this.claims.size, accepted: { ...this.accepted }, snapshots, snapshotBytes: this.totalBytes, pins, evicted: this.evicted, expired: { ...this.expiredCount } }
  }
}
