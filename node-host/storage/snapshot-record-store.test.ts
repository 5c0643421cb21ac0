// The snapshot records a node keeps on disk for the next start: round trip of signed envelopes,
// bounds, no write per re-announcement, a broken file moved aside (not fatal, not deleted), and an
// edited record refused by the view it is given back to (the file is not trusted: the signatures are).
import { describe, it, expect, beforeAll, beforeEach, afterEach } from 'vitest'
import { mkdtemp, readFile, rm, writeFile, mkdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { FleetView, encodeEnvelope, signRecord, type SnapshotRecord } from '../../core/fleet/index.ts'
import { ManualClock, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { SnapshotRecordStore, SNAPSHOT_RECORDS_FILE } from './snapshot-record-store.ts'

let key: PrivateKey
let id: string
const T0 = 1_800_000_000_000

beforeAll(async () => {
  key = await generateKeyPair('Ed25519')
  id = peerIdFromPrivateKey(key).toString()
})

async function signed (over: Partial<SnapshotRecord>): Promise<{ bytes: Uint8Array, record: SnapshotRecord }> {
  const envelope = await signRecord(key, 'snapshot', makeSnapshotRecord(id, { sentMs: T0, takenMs: T0, ...over }))
  return { bytes: encodeEnvelope(envelope), record: envelope.record }
}

describe('SnapshotRecordStore', () => {
  let dir = ''
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cell-record-store-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('gives back the signed envelopes it kept, as they were signed', async () => {
    const store = new SnapshotRecordStore({ dataDir: dir })
    expect(await store.load()).toEqual([])
    const a = await signed({ epoch: 2, tag: 'snapshot-e2-20261130T120000Z' })
    const b = await signed({ claimId: 'ledger/1', epoch: 1, tag: 'snapshot-e1-20261130T130000Z' })
    expect(store.put(a.bytes, a.record)).toBe(true)
    expect(store.put(b.bytes, b.record)).toBe(true)
    await store.flush()
    const again = await new SnapshotRecordStore({ dataDir: dir }).load()
    expect(again.map(e => e.envelope.record)).toEqual([a.record, b.record])
    expect(again.map(e => e.bytes)).toEqual([a.bytes, b.bytes])
    expect((await stat(join(dir, SNAPSHOT_RECORDS_FILE))).mode & 0o777).toBe(0o600)
  })

  it('writes a re-announced record again only when the kept one is an hour older, or its content changed', async () => {
    const store = new SnapshotRecordStore({ dataDir: dir })
    const first = await signed({ seq: 1 })
    expect(store.put(first.bytes, first.record)).toBe(true)
    const minuteLater = await signed({ seq: 2, sentMs: T0 + 60_000 })
    expect(store.put(minuteLater.bytes, minuteLater.record)).toBe(false)
    const hourLater = await signed({ seq: 3, sentMs: T0 + 3_600_000 })
    expect(store.put(hourLater.bytes, hourLater.record)).toBe(true)
    const other = 'sha256:' + '44'.repeat(32)
    const changed = await signed({ seq: 4, sentMs: T0 + 3_660_000, plainManifestDigest: other, blobs: [other, 'sha256:' + '22'.repeat(32)] })
    expect(store.put(changed.bytes, changed.record)).toBe(true)
    expect(store.size).toBe(1)
  })

  it('keeps the newest per claim and owner, and no more than maxEntries in all', async () => {
    const store = new SnapshotRecordStore({ dataDir: dir, perClaimOwner: 2, maxEntries: 3 })
    for (let epoch = 1; epoch <= 4; epoch++) {
      const r = await signed({ epoch, tag: `snapshot-e${epoch}-20261130T120000Z` })
      store.put(r.bytes, r.record)
    }
    expect(store.has({ claimId: 'ledger/0', nodeId: id, tag: 'snapshot-e4-20261130T120000Z' })).toBe(true)
    expect(store.has({ claimId: 'ledger/0', nodeId: id, tag: 'snapshot-e3-20261130T120000Z' })).toBe(true)
    expect(store.has({ claimId: 'ledger/0', nodeId: id, tag: 'snapshot-e2-20261130T120000Z' })).toBe(false)
    for (let ordinal = 1; ordinal <= 3; ordinal++) {
      const r = await signed({ claimId: `ledger/${ordinal}` })
      store.put(r.bytes, r.record)
    }
    expect(store.size).toBe(3)
    expect(store.has({ claimId: 'ledger/0', nodeId: id, tag: 'snapshot-e4-20261130T120000Z' })).toBe(false)
    store.forget({ claimId: 'ledger/3', nodeId: id, tag: 'snapshot-e1-20261130T120000Z' })
    await store.flush()
    expect((await new SnapshotRecordStore({ dataDir: dir }).load()).map(e => e.envelope.record.claimId)).toEqual(['ledger/1', 'ledger/2'])
  })

  it('moves a file it did not write aside and starts without it; skips entries that do not decode', async () => {
    const path = join(dir, SNAPSHOT_RECORDS_FILE)
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, '{"version":1,"records":[tru')
    const store = new SnapshotRecordStore({ dataDir: dir })
    expect(await store.load()).toEqual([])
    expect(await readFile(`${path}.bad`, 'utf8')).toBe('{"version":1,"records":[tru')
    const good = await signed({})
    await writeFile(path, JSON.stringify({ version: 1, records: ['AAAA', 42, Buffer.from(good.bytes).toString('base64')] }))
    const mixed = new SnapshotRecordStore({ dataDir: dir })
    expect((await mixed.load()).map(e => e.envelope.record)).toEqual([good.record])
    expect(mixed.skipped).toBe(2)
  })

  it('a record edited in the file is refused by the view it is given back to', async () => {
    const clock = new ManualClock(T0 + 1_000)
    const view = new FleetView({ clock })
    const good = await signed({})
    const bytes = Uint8Array.from(good.bytes)
    // Flip one byte of the body (the size of the snapshot): the owner's signature no longer holds.
    const at = Buffer.from(bytes).indexOf(Buffer.from(good.record.tag)) + good.record.tag.length + 2
    bytes[at] ^= 0x01
    const path = join(dir, SNAPSHOT_RECORDS_FILE)
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, JSON.stringify({ version: 1, records: [Buffer.from(bytes).toString('base64'), Buffer.from(good.bytes).toString('base64')] }))
    const loaded = await new SnapshotRecordStore({ dataDir: dir }).load()
    const results = []
    for (const { envelope } of loaded) results.push(await view.apply(envelope, { relayed: true, from: 'self', ageMs: 1_000 }))
    expect(results.map(r => r.accepted ? 'accepted' : r.reason)).toEqual(['bad-signature', 'accepted'])
    expect(view.snapshots('ledger/0')).toHaveLength(1)
  })
})
