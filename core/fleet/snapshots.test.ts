import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ByteWriter } from './bytes.ts'
import { KIND_SNAPSHOT, decodeEnvelope, decodeFrame, encodeEnvelope } from './codec.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { FLEET_WIRE_VERSION, LIMITS, MAX_MESSAGE_BYTES } from './records.ts'
import { signRecord, verifyRecord } from './sign.ts'
import {
  SNAPSHOT_LIMITS, compareSnapshots, decodePinBody, decodeSnapshotBody, encodePinBody, encodeSnapshotBody, parseClaimId
} from './snapshots.ts'
import type { SnapshotRecord } from './snapshots.ts'
import { ManualClock, makePinRecord, makeSnapshotRecord } from './testing.ts'
import { FleetView } from './view.ts'

interface Key { key: PrivateKey, id: string }
let owner: Key, h1: Key, h2: Key, h3: Key

beforeAll(async () => {
  const mk = async (): Promise<Key> => {
    const key = await generateKeyPair('Ed25519')
    return { key, id: peerIdFromPrivateKey(key).toString() }
  }
  ;[owner, h1, h2, h3] = [await mk(), await mk(), await mk(), await mk()]
})

const NODE_ID = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'
const digest = (n: number): string => 'sha256:' + n.toString(16).padStart(64, '0')
const malformed = (fn: () => unknown): void => { expect(fn).toThrow(MalformedFleetRecordError) }

describe('snapshot and pin codec', () => {
  it('round-trips bodies deterministically, with and without the optional parts', () => {
    const plain = makeSnapshotRecord(NODE_ID, { seq: 2 ** 40 })
    const body = encodeSnapshotBody(plain)
    expect(decodeSnapshotBody(body)).toEqual(plain)
    expect(encodeSnapshotBody(decodeSnapshotBody(body))).toEqual(body)
    const zfs = makeSnapshotRecord(NODE_ID, {
      claimId: 'ledger/7',
      zfsManifestDigest: digest(9),
      zfsBaseTag: 'snapshot-e1-20261130T110000Z',
      blobs: [digest(0x11), digest(9), digest(10)].map(d => d === digest(0x11) ? 'sha256:' + '11'.repeat(32) : d),
      grants: [new Uint8Array([1, 2, 3])]
    })
    expect(decodeSnapshotBody(encodeSnapshotBody(zfs))).toEqual(zfs)
    const pin = makePinRecord(NODE_ID, { ...plain, nodeId: '12D3KooWAbc' })
    expect(decodePinBody(encodePinBody(pin))).toEqual(pin)
    // A cell name with a slash still yields its claim id exactly.
    expect(parseClaimId('team/ledger/3')).toEqual({ cell: 'team/ledger', ordinal: 3 })
  })

  it('bounds and validates every field', () => {
    const r = makeSnapshotRecord(NODE_ID)
    const many = Array.from({ length: SNAPSHOT_LIMITS.blobs + 1 }, (_, i) => digest(i + 1000))
    malformed(() => encodeSnapshotBody({ ...r, blobs: [r.plainManifestDigest, ...many.slice(1)] }))
    // The largest allowed list still fits one gossip message with room to spare.
    const max = [r.plainManifestDigest, ...many.slice(2)]
    expect(max).toHaveLength(SNAPSHOT_LIMITS.blobs)
    expect(encodeSnapshotBody({ ...r, blobs: max, grants: [new Uint8Array(LIMITS.grantBytes), new Uint8Array(LIMITS.grantBytes)] }).length).toBeLessThan(MAX_MESSAGE_BYTES - 1024)
    malformed(() => encodeSnapshotBody({ ...r, blobs: [] }))
    malformed(() => encodeSnapshotBody({ ...r, blobs: [digest(5)] })) // manifest not among the blobs
    malformed(() => encodeSnapshotBody({ ...r, blobs: [...r.blobs, r.blobs[1]] })) // duplicate
    malformed(() => encodeSnapshotBody({ ...r, blobs: [...r.blobs, 'sha256:XYZ'] }))
    malformed(() => encodeSnapshotBody({ ...r, tag: 'snapshot-e2-20261130T120000Z' })) // tag names another epoch
    malformed(() => encodeSnapshotBody({ ...r, tag: 'bad tag' }))
    malformed(() => encodeSnapshotBody({ ...r, claimId: 'billing/0' })) // another cell's claim
    malformed(() => encodeSnapshotBody({ ...r, claimId: 'ledger/01' }))
    malformed(() => encodeSnapshotBody({ ...r, claimId: 'ledger/99999999' }))
    malformed(() => encodeSnapshotBody({ ...r, zfsBaseTag: 'snapshot-e1-x' })) // base without a zfs manifest
    malformed(() => encodeSnapshotBody({ ...r, grants: [new Uint8Array(LIMITS.grantBytes + 1)] }))
    malformed(() => encodeSnapshotBody({ ...r, grants: [new Uint8Array(1), new Uint8Array(1), new Uint8Array(1)] }))
    malformed(() => encodePinBody({ ...makePinRecord(NODE_ID, r), manifestDigest: 'sha256:00' }))

    // A hand-made body announcing more blobs than allowed is refused before reading them.
    const w = new ByteWriter(1 << 20)
    w.string(NODE_ID, 128).string('ledger', 128).uvarint(0).uvarint(1).string(r.tag, 128).uvarint(1).uvarint(1)
    w.raw(new Uint8Array(32)).u8(0).uvarint(SNAPSHOT_LIMITS.blobs + 1)
    malformed(() => decodeSnapshotBody(w.finish()))
    // Truncations and trailing bytes.
    const body = encodeSnapshotBody(r)
    for (let cut = 0; cut < body.length; cut += 7) malformed(() => decodeSnapshotBody(body.subarray(0, cut)))
    malformed(() => decodeSnapshotBody(new Uint8Array([...body, 0])))
  })

  it('signs snapshot and pin records under their own domain kind', async () => {
    const snap = await signRecord(owner.key, 'snapshot', makeSnapshotRecord(owner.id))
    expect(await verifyRecord(snap)).toBe(true)
    const bytes = encodeEnvelope(snap)
    expect(bytes[1]).toBe(KIND_SNAPSHOT)
    const back = decodeEnvelope(bytes)
    expect(back.kind === 'snapshot' && back.record).toEqual(snap.record)
    expect(encodeEnvelope(back)).toEqual(bytes)
    expect(encodeEnvelope(decodeFrame(bytes)[0].envelope)).toEqual(bytes)
    // The same signature over the same body does not verify as another kind of record.
    expect(await verifyRecord({ kind: 'pin', record: makePinRecord(owner.id, snap.record), body: snap.body, signature: snap.signature })).toBe(false)
    const tampered = snap.body.slice()
    tampered[tampered.length - 3] ^= 1
    expect(await verifyRecord({ ...snap, body: tampered })).toBe(false)
    // A garbled kind byte is malformed, not another record.
    expect(() => decodeEnvelope(new Uint8Array([FLEET_WIRE_VERSION, 0x09, 0]))).toThrow(MalformedFleetRecordError)
  })

  it('orders snapshots by epoch before time', () => {
    const a = makeSnapshotRecord(NODE_ID, { epoch: 2, tag: 'snapshot-e2-a', takenMs: 1 })
    const b = makeSnapshotRecord(NODE_ID, { epoch: 1, tag: 'snapshot-e1-b', takenMs: 9_999_999 })
    expect([b, a].sort(compareSnapshots)).toEqual([a, b])
  })
})

describe('FleetView snapshots and pins', () => {
  function setup (): { clock: ManualClock, view: FleetView } {
    const clock = new ManualClock()
    return { clock, view: new FleetView({ clock, snapshots: { maxSnapshotsPerClaim: 3, pinTtlMs: 60_000, snapshotTtlMs: 3_600_000 } }) }
  }
  const snap = async (clock: ManualClock, over: Partial<SnapshotRecord> = {}, key = owner) =>
    await signRecord(key.key, 'snapshot', makeSnapshotRecord(key.id, { sentMs: clock.now(), ...over }))
  const pin = async (clock: ManualClock, holder: Key, s: SnapshotRecord, seq = 1) =>
    await signRecord(holder.key, 'pin', makePinRecord(holder.id, s, { sentMs: clock.now(), seq }))

  it('a snapshot becomes safe with pins from two nodes other than its owner', async () => {
    const { clock, view } = setup()
    const s = await snap(clock)
    expect(await view.apply(s, { from: owner.id })).toEqual({ accepted: true, kind: 'snapshot' })
    expect(view.snapshotClaims('ledger')).toEqual(['ledger/0'])
    expect(view.snapshots('ledger/0')).toEqual([s.record])
    expect(view.newestSafe('ledger/0')).toBeUndefined()
    expect((await view.apply(await pin(clock, h1, s.record), { from: h1.id })).accepted).toBe(true)
    // The same holder twice, or the owner itself, does not make it safe.
    expect(await view.apply(await pin(clock, h1, s.record, 2), { from: h1.id })).toEqual({ accepted: true, kind: 'pin' })
    expect(await view.apply(await pin(clock, owner, s.record), { from: owner.id })).toEqual({ accepted: false, kind: 'pin', reason: 'untrusted' })
    expect(view.safeSnapshots('ledger/0')).toEqual([])
    expect((await view.apply(await pin(clock, h2, s.record), { from: h2.id })).accepted).toBe(true)
    expect(view.snapshotHolders(s.record)).toEqual([h1.id, h2.id].sort())
    expect(view.newestSafe('ledger/0')).toEqual(s.record)
    // Pins lapse unless re-announced: the snapshot stops counting as safe.
    clock.advance(60_001)
    expect(view.newestSafe('ledger/0')).toBeUndefined()
    expect(view.snapshots('ledger/0')).toHaveLength(1)
    view.expire()
    expect(view.snapshotStats()).toMatchObject({ pins: 0, snapshots: 1, expired: { pin: 2, snapshot: 0 } })
  })

  it('never prefers a lower epoch, refuses pins of unknown content and replays of evicted snapshots', async () => {
    const { clock, view } = setup()
    const old = await snap(clock, { epoch: 3, tag: 'snapshot-e3-late', takenMs: 2_000_000_000_000 })
    const fresh = await snap(clock, { epoch: 4, tag: 'snapshot-e4-early', takenMs: 1_000_000_000_000 }, h3)
    for (const [s, k] of [[old, owner], [fresh, h3]] as const) {
      expect((await view.apply(s, { from: k.id })).accepted).toBe(true)
      for (const h of [h1, h2]) expect((await view.apply(await pin(clock, h, s.record), { from: h.id })).accepted).toBe(true)
    }
    expect(view.safeSnapshots('ledger/0').map(s => s.tag)).toEqual(['snapshot-e4-early', 'snapshot-e3-late'])
    expect(view.newestSafe('ledger/0')?.tag).toBe('snapshot-e4-early')
    expect(view.newestSafe('ledger/0', { minEpoch: 5 })).toBeUndefined()
    // An epoch the register never granted (here above 3) is passed over.
    expect(view.newestSafe('ledger/0', { maxEpoch: 3 })?.tag).toBe('snapshot-e3-late')

    // A pin naming other content (manifest) or a snapshot the view does not hold counts for nothing.
    const wrong = await signRecord(h1.key, 'pin', makePinRecord(h1.id, fresh.record, { manifestDigest: digest(77), sentMs: clock.now(), seq: 5 }))
    expect(await view.apply(wrong, { from: h1.id })).toEqual({ accepted: false, kind: 'pin', reason: 'unknown-snapshot' })
    const ghost = makeSnapshotRecord(owner.id, { tag: 'snapshot-e1-ghost', sentMs: clock.now() })
    expect(await view.apply(await pin(clock, h1, ghost), { from: h1.id })).toMatchObject({ reason: 'unknown-snapshot' })
    // A pin must come from its holder (or be relayed in a snapshot with the holder's own signature).
    expect(await view.apply(await pin(clock, h1, fresh.record, 9), { from: h2.id })).toMatchObject({ reason: 'wrong-origin' })

    // Fill the claim (3 kept): the lowest-ranked snapshot is evicted with its pins, and replaying it is stale.
    clock.advance(1000)
    for (const t of ['a', 'b']) expect((await view.apply(await snap(clock, { epoch: 4, tag: `snapshot-e4-${t}`, takenMs: 1_000_000_000_001 + t.charCodeAt(0) }, h3), { from: h3.id })).accepted).toBe(true)
    expect(view.snapshots('ledger/0').map(s => s.epoch)).toEqual([4, 4, 4])
    expect(view.snapshotStats().evicted).toBe(1)
    expect(await view.apply(old, { from: owner.id })).toEqual({ accepted: false, kind: 'snapshot', reason: 'stale' })
    expect(await view.apply(fresh, { from: h3.id })).toEqual({ accepted: false, kind: 'snapshot', reason: 'duplicate' })
  })

  it('bounds the bytes of snapshot records held', async () => {
    const clock = new ManualClock()
    const view = new FleetView({ clock, snapshots: { maxSnapshotBytes: 2000 } })
    const results = []
    for (let i = 0; i < 8; i++) results.push(await view.apply(await snap(clock, { claimId: `ledger/${i}` }), { from: owner.id }))
    const accepted = results.filter(r => r.accepted).length
    expect(accepted).toBeGreaterThan(0)
    expect(accepted).toBeLessThan(8)
    expect(results.at(-1)).toMatchObject({ accepted: false, reason: 'overflow-snapshots' })
    expect(view.snapshotStats().snapshotBytes).toBeLessThanOrEqual(2000)
    expect(view.stats().dropped['overflow-snapshots']).toBe(8 - accepted)
    // And the pins held in all.
    const few = new FleetView({ clock, snapshots: { maxPins: 1 } })
    const s = await snap(clock)
    await few.apply(s, { from: owner.id })
    expect((await few.apply(await pin(clock, h1, s.record), { from: h1.id })).accepted).toBe(true)
    expect(await few.apply(await pin(clock, h2, s.record), { from: h2.id })).toMatchObject({ reason: 'overflow-snapshots' })
    // A pin refreshed by its holder is no new pin.
    expect((await few.apply(await pin(clock, h1, s.record, 2), { from: h1.id })).accepted).toBe(true)
  })

  it('relays snapshots and pins through fleet-sync snapshots with their age', async () => {
    const { clock, view } = setup()
    const s = await snap(clock)
    await view.apply(s, { from: owner.id })
    for (const h of [h1, h2]) await view.apply(await pin(clock, h, s.record), { from: h.id })
    clock.advance(10_000)
    const other = new FleetView({ clock, snapshots: { pinTtlMs: 60_000 } })
    for (const frame of view.snapshot()) await other.merge(frame, { from: owner.id })
    expect(other.newestSafe('ledger/0')).toEqual(s.record)
    // The pins keep the age they had: they lapse on the holders' schedule, not 60 s after the merge.
    clock.advance(50_001)
    expect(other.newestSafe('ledger/0')).toBeUndefined()
  })
})
