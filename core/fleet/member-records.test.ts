// Per-cell dissemination records on the wire: member records (kind 8), down reports (kind 9) and
// the instance record's optional refreshMs. Fleet-mode records must keep their bytes exactly.
import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import {
  decodeDownBody, decodeEnvelope, decodeFrame, decodeInstanceBody, decodeMemberBody, encodeBundles, encodeDownBody, encodeEnvelope,
  encodeInstanceBody, encodeMemberBody, encodeNodeBody
} from './codec.ts'
import type { FleetEnvelope } from './codec.ts'
import { ByteWriter } from './bytes.ts'
import { MalformedFleetRecordError, RecordOriginMismatchError } from './errors.ts'
import { LIMITS, MAX_MESSAGE_BYTES, checkDownRecord, checkMemberRecord } from './records.ts'
import type { DownRecord, MemberRecord } from './records.ts'
import { signRecord, verifyRecord } from './sign.ts'
import { makeInstanceRecord, makeNodeRecord } from './testing.ts'

const NODE_ID = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'
const OTHER_ID = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

const hex = (b: Uint8Array): string => Array.from(b, x => x.toString(16).padStart(2, '0')).join('')
// libp2p's sign returns a Buffer-backed array; decoded signatures are plain Uint8Arrays.
const plain = <T extends { signature: Uint8Array }>(env: T): T => ({ ...env, signature: Uint8Array.from(env.signature) })
const expectMalformed = (fn: () => unknown): void => { expect(fn).toThrow(MalformedFleetRecordError) }

function member (overrides: Partial<MemberRecord> = {}): MemberRecord {
  return { nodeId: NODE_ID, seq: 7, sentMs: 1_700_000_000_000, nodeSeq: 5, slots: 8, freeSlots: 3, cpuPercent: 37.5, memoryPercent: 50, leaving: false, cells: ['billing', 'search'], ...overrides }
}
function down (overrides: Partial<DownRecord> = {}): DownRecord {
  return { nodeId: NODE_ID, subject: OTHER_ID, subjectSeq: 9, seq: 3, sentMs: 1_700_000_000_000, ...overrides }
}

// Encodings produced by the codec at 24b9da9, before refreshMs, member and down records existed
// (makeNodeRecord / makeInstanceRecord defaults): fleet mode must not change on the wire.
const GOLDEN = {
  node: '34313244334b6f6f574752555668375a4264654d66464c39424170477174474e3564635971384e346466416538414b7832437a554e01172f6970342f3132372e302e302e312f7463702f3430303108060480808080208080808010018080808090034042c0000000000040490000000000000104686f737480d095ffbc310180d095ffbc310000',
  instance: '03692d310762696c6c696e6705312e322e33477368613235363a6162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616234313244334b6f6f574752555668375a4264654d66464c39424170477174474e3564635971384e346466416538414b7832437a554e80d095ffbc3101402900000000000080808020400a000000000000405e20000000000040218000000000000380d095ffbc3101000000',
  crashed: '03692d310762696c6c696e6705312e322e33477368613235363a6162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616234313244334b6f6f574752555668375a4264654d66464c39424170477174474e3564635971384e346466416538414b7832437a554e80d095ffbc3104402900000000000080808020400a000000000000405e20000000000040218000000000000380d095ffbc31010000e8d795ffbc31066578697420310104626f6f6d',
  claimed: '03692d310762696c6c696e6705312e322e33477368613235363a6162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616234313244334b6f6f574752555668375a4264654d66464c39424170477174474e3564635971384e346466416538414b7832437a554e80d095ffbc3101402900000000000080808020400a000000000000405e20000000000040218000000000000380d095ffbc3101f4d395ffbc3101036765740000000207'
}
const crashed = makeInstanceRecord(NODE_ID, { state: 'crashed', endedMs: 1_700_000_001_000, exitReason: 'exit 1', stderrTail: ['boom'] })
const claimed = makeInstanceRecord(NODE_ID, { readyMs: 1_700_000_000_500, idempotent: ['get'], claim: { ordinal: 2, epoch: 7 } })

let key: PrivateKey
let otherKey: PrivateKey
beforeAll(async () => {
  key = await generateKeyPair('Ed25519')
  otherKey = await generateKeyPair('Ed25519')
})

describe('fleet-mode records keep their bytes', () => {
  it('node and instance bodies without refreshMs encode exactly as before', () => {
    expect(hex(encodeNodeBody(makeNodeRecord(NODE_ID)))).toBe(GOLDEN.node)
    expect(hex(encodeInstanceBody(makeInstanceRecord(NODE_ID)))).toBe(GOLDEN.instance)
    expect(hex(encodeInstanceBody(crashed))).toBe(GOLDEN.crashed)
    expect(hex(encodeInstanceBody(claimed))).toBe(GOLDEN.claimed)
  })
})

describe('instance refreshMs', () => {
  it('round-trips with and without an exit report and a claim, and appends only a tail', () => {
    for (const base of [makeInstanceRecord(NODE_ID), crashed, claimed, { ...crashed, claim: { ordinal: 0, epoch: 1 } }]) {
      for (const refreshMs of [LIMITS.refreshMsMin, 6400, LIMITS.refreshMsMax]) {
        const rec = { ...base, refreshMs }
        const body = encodeInstanceBody(rec)
        expect(decodeInstanceBody(body)).toEqual(rec)
        expect(encodeInstanceBody(decodeInstanceBody(body))).toEqual(body)
        // The record without refreshMs is a prefix (older readers stop where they always stopped).
        const old = encodeInstanceBody(base)
        expect(hex(body).startsWith(hex(old))).toBe(true)
      }
    }
  })

  it('refuses refreshMs out of bounds and non-canonical empty claim slots', () => {
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { refreshMs: LIMITS.refreshMsMin - 1 })))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { refreshMs: LIMITS.refreshMsMax + 1 })))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { refreshMs: 1500.5 })))
    const plain = encodeInstanceBody(makeInstanceRecord(NODE_ID))
    const withTail = (...tail: number[]): Uint8Array => new Uint8Array([...plain, ...tail])
    // empty exit report, empty claim slot, refreshMs 0 / too small / too big
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 0, 0, 0)))
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 0, 0, 0x64)))
    const big = new ByteWriter(16).uvarint(LIMITS.refreshMsMax + 1).finish()
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 0, 0, ...big)))
    // an empty claim slot with nothing after it, or a claim slot with epoch 0 and an ordinal
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 0, 0)))
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 3, 0, 0xe8, 0x07)))
    // trailing bytes after refreshMs
    expectMalformed(() => decodeInstanceBody(withTail(0, 0, 0, 0, 0xe8, 0x07, 0)))
    expect(decodeInstanceBody(withTail(0, 0, 0, 0, 0xe8, 0x07)).refreshMs).toBe(1000)
  })
})

describe('member records (kind 8)', () => {
  it('round-trips body and envelope, signed by its node', async () => {
    const id = peerIdFromPrivateKey(key).toString()
    for (const rec of [member({ nodeId: id }), member({ nodeId: id, cells: [], leaving: true, freeSlots: 0, slots: 0, cpuPercent: 0, memoryPercent: 100, nodeSeq: 7 })]) {
      const body = encodeMemberBody(rec)
      expect(decodeMemberBody(body)).toEqual(rec)
      const env = await signRecord(key, 'member', rec)
      expect(await verifyRecord(env)).toBe(true)
      const bytes = encodeEnvelope(env)
      expect(bytes[1]).toBe(8)
      expect(decodeEnvelope(bytes)).toEqual(plain(env))
      expect(decodeFrame(bytes)).toEqual([{ envelope: plain(env), ageMs: 0, bytes }])
    }
    const full = member({ cells: Array.from({ length: LIMITS.memberCells }, (_, i) => 'c'.repeat(LIMITS.idChars - 3) + String(i).padStart(3, '0')) })
    expect(decodeMemberBody(encodeMemberBody(full))).toEqual(full)
  })

  it('refuses every bound', () => {
    expect(checkMemberRecord(member())).toEqual(member())
    const bad: Array<Partial<MemberRecord> | Record<string, unknown>> = [
      { nodeId: 'not a peer id' }, { nodeId: '' }, { nodeId: 'a'.repeat(LIMITS.peerIdChars + 1) },
      { seq: -1 }, { seq: 1.5 }, { seq: 2 ** 53 }, { sentMs: -1 }, { nodeSeq: -1 }, { nodeSeq: 8 },
      { slots: -1 }, { freeSlots: 9 }, { freeSlots: 0.5 },
      { cpuPercent: -1 }, { cpuPercent: LIMITS.cpuPercent + 1 }, { cpuPercent: Number.NaN }, { cpuPercent: -0 },
      { memoryPercent: 100.5 }, { memoryPercent: Number.POSITIVE_INFINITY },
      { leaving: 1 }, { cells: 'billing' }, { cells: ['search', 'billing'] }, { cells: ['billing', 'billing'] },
      { cells: ['bad cell'] }, { cells: [''] }, { cells: ['x'.repeat(LIMITS.idChars + 1)] },
      { cells: Array.from({ length: LIMITS.memberCells + 1 }, (_, i) => `c${String(i).padStart(3, '0')}`) }
    ]
    for (const over of bad) {
      const rec = { ...member(), ...over } as MemberRecord
      expectMalformed(() => checkMemberRecord(rec))
      expectMalformed(() => encodeMemberBody(rec))
    }
    expectMalformed(() => checkMemberRecord(null as unknown as MemberRecord))
  })

  it('decodes hostile bytes to MalformedFleetRecordError only', () => {
    const body = encodeMemberBody(member())
    for (let n = 0; n < body.length; n++) expectMalformed(() => decodeMemberBody(body.subarray(0, n)))
    expectMalformed(() => decodeMemberBody(new Uint8Array([...body, 0])))
    // leaving flag 2
    const w = new ByteWriter(1024)
    const m = member()
    w.string(m.nodeId, 128).uvarint(m.seq).uvarint(m.sentMs).uvarint(m.nodeSeq).uvarint(m.slots).uvarint(m.freeSlots).f64(m.cpuPercent).f64(m.memoryPercent).u8(2).uvarint(0)
    expectMalformed(() => decodeMemberBody(w.finish()))
    // a cell count beyond LIMITS.memberCells is refused before reading the cells
    const w2 = new ByteWriter(1024)
    w2.string(m.nodeId, 128).uvarint(m.seq).uvarint(m.sentMs).uvarint(m.nodeSeq).uvarint(m.slots).uvarint(m.freeSlots).f64(m.cpuPercent).f64(m.memoryPercent).u8(0).uvarint(LIMITS.memberCells + 1)
    expectMalformed(() => decodeMemberBody(w2.finish()))
    // unsorted cells on the wire
    const w3 = new ByteWriter(1024)
    w3.string(m.nodeId, 128).uvarint(m.seq).uvarint(m.sentMs).uvarint(m.nodeSeq).uvarint(m.slots).uvarint(m.freeSlots).f64(m.cpuPercent).f64(m.memoryPercent).u8(0).uvarint(2).string('b', 128).string('a', 128)
    expectMalformed(() => decodeMemberBody(w3.finish()))
    // an envelope whose body exceeds the member body bound
    const huge = new ByteWriter(MAX_MESSAGE_BYTES)
    huge.u8(1).u8(8).bytes(new Uint8Array(11 * 1024), MAX_MESSAGE_BYTES).bytes(new Uint8Array(64), 512)
    expectMalformed(() => decodeEnvelope(huge.finish()))
  })
})

describe('down reports (kind 9)', () => {
  it('round-trips, signed by the reporter', async () => {
    const id = peerIdFromPrivateKey(key).toString()
    const rec = down({ nodeId: id })
    expect(decodeDownBody(encodeDownBody(rec))).toEqual(rec)
    const env = await signRecord(key, 'down', rec)
    expect(await verifyRecord(env)).toBe(true)
    const bytes = encodeEnvelope(env)
    expect(bytes[1]).toBe(9)
    expect(decodeEnvelope(bytes)).toEqual(plain(env))
  })

  it('refuses every bound', () => {
    expect(checkDownRecord(down())).toEqual(down())
    const bad: Array<Partial<DownRecord>> = [
      { nodeId: 'x y' }, { subject: 'x/y' }, { subject: '' }, { subject: NODE_ID }, { subjectSeq: -1 }, { subjectSeq: 0.5 },
      { seq: 2 ** 53 }, { sentMs: Number.NaN }
    ]
    for (const over of bad) {
      expectMalformed(() => checkDownRecord(down(over)))
      expectMalformed(() => encodeDownBody(down(over)))
    }
  })

  it('decodes hostile bytes to MalformedFleetRecordError only', () => {
    const body = encodeDownBody(down())
    for (let n = 0; n < body.length; n++) expectMalformed(() => decodeDownBody(body.subarray(0, n)))
    expectMalformed(() => decodeDownBody(new Uint8Array([...body, 1])))
    const self = new ByteWriter(512).string(NODE_ID, 128).string(NODE_ID, 128).uvarint(1).uvarint(1).uvarint(1).finish()
    expectMalformed(() => decodeDownBody(self))
    const huge = new ByteWriter(MAX_MESSAGE_BYTES)
    huge.u8(1).u8(9).bytes(new Uint8Array(513), MAX_MESSAGE_BYTES).bytes(new Uint8Array(64), 512)
    expectMalformed(() => decodeEnvelope(huge.finish()))
  })
})

describe('signatures of member and down records', () => {
  it('only the origin key signs; a signature of one kind does not verify as the other', async () => {
    const id = peerIdFromPrivateKey(key).toString()
    await expect(signRecord(otherKey, 'member', member({ nodeId: id }))).rejects.toBeInstanceOf(RecordOriginMismatchError)
    await expect(signRecord(otherKey, 'down', down({ nodeId: id }))).rejects.toBeInstanceOf(RecordOriginMismatchError)
    const env = await signRecord(key, 'member', member({ nodeId: id }))
    const sig = env.signature.slice()
    sig[5] ^= 1
    expect(await verifyRecord({ ...env, signature: sig })).toBe(false)
    // Domain separation by kind byte: the same signature presented under another kind fails.
    expect(await verifyRecord({ ...env, kind: 'down' } as unknown as typeof env)).toBe(false)
    const node = await signRecord(key, 'node', makeNodeRecord(id))
    expect(await verifyRecord({ ...env, signature: node.signature })).toBe(false)
  })

  it('bundles carry member and down envelopes', async () => {
    const id = peerIdFromPrivateKey(key).toString()
    const envs: FleetEnvelope[] = [
      plain(await signRecord(key, 'member', member({ nodeId: id }))),
      plain(await signRecord(key, 'down', down({ nodeId: id }))),
      plain(await signRecord(key, 'instance', makeInstanceRecord(id, { refreshMs: 5000 })))
    ]
    const frames = encodeBundles(envs.map((e, i) => ({ bytes: encodeEnvelope(e), ageMs: i })))
    expect(frames).toHaveLength(1)
    expect(decodeFrame(frames[0]).map(e => e.envelope)).toEqual(envs)
  })

  it('throws only MalformedFleetRecordError on mutated member and down envelopes', async () => {
    const id = peerIdFromPrivateKey(key).toString()
    const seeds = [encodeEnvelope(await signRecord(key, 'member', member({ nodeId: id }))), encodeEnvelope(await signRecord(key, 'down', down({ nodeId: id })))]
    let x = 0x9e3779b9
    const rand = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 0x1_0000_0000 }
    let rejected = 0
    for (let i = 0; i < 4000; i++) {
      const input = seeds[i % 2].slice(0, i % 3 === 0 ? Math.floor(rand() * seeds[i % 2].length) : undefined)
      if (i % 3 !== 0) for (let f = 1 + Math.floor(rand() * 3); f > 0; f--) input[Math.floor(rand() * input.length)] ^= 1 << Math.floor(rand() * 8)
      try { decodeFrame(input) } catch (err) { expect(err).toBeInstanceOf(MalformedFleetRecordError); rejected++ }
    }
    expect(rejected).toBeGreaterThan(1000)
  })
})
