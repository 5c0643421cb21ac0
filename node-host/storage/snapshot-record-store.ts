// The snapshot records this node can vouch for, kept in `<data>/snapshots/records.json`: its own
// snapshots and the ones it pinned, each as the signed envelope gossip carried (the owner's
// signature, checked again when it is read back). Snapshot and pin records otherwise live only in
// the fleet views: a whole fleet stopped at once and started again would know no snapshot of any
// claim, and the node taking a claim would start it empty (docs/storage.md). At start the node
// gives the records back to its view (verified as any relayed record: signature, ttl, host grant),
// re-signs its own, and announces its pins again for the blobs still on its disk.
//
// Written atomically (temp file + rename) when it changed, bounded: `maxEntries` records in all,
// `perClaimOwner` newest per claim and owner; a re-announced record replaces the stored one only
// when the stored one is `refreshMs` older (the owner re-announces every minute: no write each
// time). A file that is not what this node wrote is moved aside (`records.json.bad`) and logged:
// the node starts without it (its peers still hold the records), nothing is deleted.
import { readFile, rename, writeFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { logger } from '@libp2p/logger'
import { decodeEnvelope, type SignedSnapshotEnvelope, type SnapshotRecord } from '../../core/fleet/index.ts'

const log = logger('cell:snapshot-record-store')

export const SNAPSHOT_RECORDS_FILE = join('snapshots', 'records.json')
/** One envelope: a record names at most a few hundred blobs and two grants. */
const MAX_ENVELOPE_BYTES = 64 * 1024
const MAX_FILE_BYTES = 16 * 1024 * 1024

export interface SnapshotRecordStoreInit {
  dataDir: string
  /** Records kept in all (default 1024): the least recently stored go first. */
  maxEntries?: number
  /** Newest records kept per claim and owner (default 8, what a view holds of a claim). */
  perClaimOwner?: number
  /** A fresher copy of a stored record is written only when the stored one is this much older (default 1 h). */
  refreshMs?: number
}

export interface StoredSnapshot { envelope: SignedSnapshotEnvelope, bytes: Uint8Array }

const keyOf = (r: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): string => `${r.claimId} ${r.nodeId} ${r.tag}`

export class SnapshotRecordStore {
  readonly path: string
  private readonly maxEntries: number
  private readonly perClaimOwner: number
  private readonly refreshMs: number
  /** key → envelope bytes (base64) and the record's fields used for bounds, least recently stored first. */
  private readonly entries = new Map<string, { b64: string, record: SnapshotRecord }>()
  private dirty = false
  private writing: Promise<void> = Promise.resolve()
  /** Entries of the file that did not decode (skipped). */
  skipped = 0

  constructor (init: SnapshotRecordStoreInit) {
    this.path = join(init.dataDir, SNAPSHOT_RECORDS_FILE)
    this.maxEntries = init.maxEntries ?? 1024
    this.perClaimOwner = init.perClaimOwner ?? 8
    this.refreshMs = init.refreshMs ?? 3_600_000
  }

  /** Reads the file (absent: nothing); every entry is decoded, those that do not decode are skipped. */
  async load (): Promise<StoredSnapshot[]> {
    let text: string | undefined
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error('reading %s failed: %s', this.path, (err as Error).message)
      return []
    }
    let list: unknown
    try {
      if (text.length > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`)
      const parsed = JSON.parse(text) as { version?: unknown, records?: unknown }
      if (parsed?.version !== 1 || !Array.isArray(parsed.records)) throw new Error('not a version 1 records file')
      list = parsed.records
    } catch (err) {
      const aside = `${this.path}.bad`
      await rename(this.path, aside).catch(() => {})
      log.error('%s is not a snapshot records file (%s): moved to %s; starting without remembered snapshot records (the fleet\'s other nodes still hold theirs)', this.path, (err as Error).message, aside)
      return []
    }
    const out: StoredSnapshot[] = []
    for (const item of (list as unknown[]).slice(-this.maxEntries)) {
      try {
        if (typeof item !== 'string' || item.length > MAX_ENVELOPE_BYTES * 2) throw new Error('not an envelope')
        const bytes = Uint8Array.from(Buffer.from(item, 'base64'))
        const envelope = decodeEnvelope(bytes)
        if (envelope.kind !== 'snapshot') throw new Error(`a ${envelope.kind} record`)
        this.entries.set(keyOf(envelope.record), { b64: item, record: envelope.record })
        out.push({ envelope, bytes })
      } catch (err) {
        this.skipped++
        log.error('skipping an entry of %s: %s', this.path, (err as Error).message)
      }
    }
    return out
  }

  /** Keeps `bytes` (the encoded signed envelope of `record`); false when an equal or recent-enough copy is held. */
  put (bytes: Uint8Array, record: SnapshotRecord): boolean {
    if (bytes.byteLength > MAX_ENVELOPE_BYTES) return false
    const key = keyOf(record)
    const held = this.entries.get(key)
    if (held !== undefined && held.record.plainManifestDigest === record.plainManifestDigest && held.record.epoch === record.epoch && record.sentMs - held.record.sentMs < this.refreshMs) return false
    this.entries.delete(key)
    this.entries.set(key, { b64: Buffer.from(bytes).toString('base64'), record })
    // Newest `perClaimOwner` of this claim and owner (by epoch, then time taken).
    const same = [...this.entries.entries()].filter(([, e]) => e.record.claimId === record.claimId && e.record.nodeId === record.nodeId)
    if (same.length > this.perClaimOwner) {
      same.sort(([, a], [, b]) => (b.record.epoch - a.record.epoch) || (b.record.takenMs - a.record.takenMs))
      for (const [k] of same.slice(this.perClaimOwner)) this.entries.delete(k)
    }
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    this.dirty = true
    return true
  }

  forget (record: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): void {
    if (this.entries.delete(keyOf(record))) this.dirty = true
  }

  has (record: Pick<SnapshotRecord, 'claimId' | 'nodeId' | 'tag'>): boolean {
    return this.entries.has(keyOf(record))
  }

  get size (): number { return this.entries.size }

  /** Writes the file if anything changed since the last write; a failed write is logged, not thrown (kept dirty). */
  async flush (): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return
      this.dirty = false
      const text = JSON.stringify({ version: 1, records: [...this.entries.values()].map(e => e.b64) })
      try {
        await mkdir(dirname(this.path), { recursive: true, mode: 0o700 })
        await writeFile(`${this.path}.tmp`, text, { mode: 0o600 })
        await rename(`${this.path}.tmp`, this.path)
      } catch (err) {
        this.dirty = true
        log.error('writing %s failed: %s', this.path, (err as Error).message)
      }
    })
    await this.writing
  }
}
