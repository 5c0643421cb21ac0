import { describe, it, expect } from 'vitest'
import { ByteWriter } from './bytes.ts'
import {
  decodeEnvelope, decodeFrame, decodeInstanceBody, decodeNodeBody, encodeBundles, encodeEnvelope,
  encodeInstanceBody, encodeNodeBody
} from './codec.ts'
import type { FleetEnvelope } from './codec.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { LIMITS, MAX_MESSAGE_BYTES } from './records.ts'
import { makeInstanceRecord, makeNodeRecord } from './testing.ts'

const NODE_ID = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'

// Seeded xorshift so the fuzz cases are reproducible.
function prng (seed: number): () => number {
  let x = seed >>> 0
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 0x1_0000_0000
  }
}

function expectMalformed (fn: () => unknown): void {
  expect(fn).toThrow(MalformedFleetRecordError)
}

describe('fleet codec', () => {
  it('round-trips node and instance bodies deterministically', () => {
    const node = makeNodeRecord(NODE_ID, { addrs: ['/ip4/10.0.0.1/tcp/1', '/dns4/a.example/tcp/443/wss'], roles: ['host', 'relay'], seq: 2 ** 40 })
    const body = encodeNodeBody(node)
    expect(decodeNodeBody(body)).toEqual(node)
    expect(encodeNodeBody(decodeNodeBody(body))).toEqual(body)

    // Halted releases travel in the node record, at most LIMITS.halts of them, with bounded reasons.
    const halt = { cell: 'billing', version: '1.1.0', digest: 'ab'.repeat(32), atMs: 1_700_000_000_000, reason: '3 crashes or failed health checks within 120000 ms' }
    const halting = { ...node, halts: [halt] }
    expect(decodeNodeBody(encodeNodeBody(halting))).toEqual(halting)
    expectMalformed(() => encodeNodeBody({ ...node, halts: Array.from({ length: LIMITS.halts + 1 }, () => halt) }))
    expectMalformed(() => encodeNodeBody({ ...node, halts: [{ ...halt, reason: 'x'.repeat(LIMITS.haltReasonChars + 1) }] }))
    expectMalformed(() => encodeNodeBody({ ...node, halts: [{ ...halt, reason: 'line\nbreak' }] }))
    expectMalformed(() => encodeNodeBody({ ...node, halts: [{ ...halt, cell: 'no spaces' }] }))
    const full = encodeNodeBody({ ...node, halts: Array.from({ length: LIMITS.halts }, () => halt) })
    expectMalformed(() => decodeNodeBody(full.subarray(0, full.length - 1)))

    // What became of recent releases travels in an optional tail: absent, the body is as before.
    const prep = { cell: 'billing', version: '1.1.0', digest: 'cd'.repeat(32), state: 'failed' as const, reason: 'ArtifactUnavailableError: no provider of the artifact answered' }
    const preparing = { ...node, prepared: [prep, { ...prep, version: '1.0.0', state: 'prepared' as const, reason: undefined }] }
    delete preparing.prepared[1].reason
    expect(decodeNodeBody(encodeNodeBody(preparing))).toEqual(preparing)
    expect(encodeNodeBody({ ...node, prepared: [] })).toEqual(body)
    expectMalformed(() => encodeNodeBody({ ...node, prepared: Array.from({ length: LIMITS.prepared + 1 }, () => prep) }))
    expectMalformed(() => encodeNodeBody({ ...node, prepared: [{ ...prep, reason: 'x'.repeat(LIMITS.preparedReasonChars + 1) }] }))
    expectMalformed(() => encodeNodeBody({ ...node, prepared: [{ ...prep, state: 'maybe' as never }] }))
    expectMalformed(() => decodeNodeBody(new Uint8Array([...body, 0])))
    const withPrep = encodeNodeBody(preparing)
    expectMalformed(() => decodeNodeBody(withPrep.subarray(0, withPrep.length - 1)))

    const { diskFreeBytes: _, ...capacity } = node.capacity
    const noDisk = { ...node, capacity }
    expect(decodeNodeBody(encodeNodeBody(noDisk))).toEqual(noDisk)

    for (const state of ['starting', 'ready', 'draining', 'stopped', 'crashed'] as const) {
      const inst = makeInstanceRecord(NODE_ID, { state, qps: 0.1 + 0.2, seq: Number.MAX_SAFE_INTEGER })
      const ib = encodeInstanceBody(inst)
      expect(decodeInstanceBody(ib)).toEqual(inst)
      expect(encodeInstanceBody(decodeInstanceBody(ib))).toEqual(ib)
    }
  })

  it('round-trips envelopes and bundles, and chunks bundles under the frame size', () => {
    const envs: FleetEnvelope[] = [
      { kind: 'node', record: makeNodeRecord(NODE_ID), body: encodeNodeBody(makeNodeRecord(NODE_ID)), signature: new Uint8Array(64).fill(7) },
      { kind: 'instance', record: makeInstanceRecord(NODE_ID), body: encodeInstanceBody(makeInstanceRecord(NODE_ID)), signature: new Uint8Array(64).fill(9) },
      { kind: 'release', signed: new Uint8Array([1, 2, 3]) },
      { kind: 'desired', signed: new Uint8Array([4, 5]) }
    ]
    for (const env of envs) {
      const bytes = encodeEnvelope(env)
      expect(decodeEnvelope(bytes)).toEqual(env)
      expect(decodeFrame(bytes)).toEqual([{ envelope: env, ageMs: 0, bytes }])
    }
    const items = Array.from({ length: 600 }, (_, i) => ({ bytes: encodeEnvelope(envs[i % envs.length]), ageMs: i }))
    const frames = encodeBundles(items, 4096)
    expect(frames.length).toBeGreaterThan(1)
    const decoded = frames.flatMap(f => {
      expect(f.length).toBeLessThanOrEqual(4096)
      return decodeFrame(f)
    })
    expect(decoded.map(d => d.ageMs)).toEqual(items.map(i => i.ageMs))
    expect(decoded.map(d => d.bytes)).toEqual(items.map(i => i.bytes))
  })

  it('refuses to encode invalid records', () => {
    expectMalformed(() => encodeNodeBody(makeNodeRecord(NODE_ID, { capacity: { ...makeNodeRecord(NODE_ID).capacity, freeSlots: 99 } })))
    expectMalformed(() => encodeNodeBody(makeNodeRecord(NODE_ID, { addrs: Array(17).fill('/ip4/1.2.3.4/tcp/1') })))
    expectMalformed(() => encodeNodeBody(makeNodeRecord('not a peer id')))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { cpuPercent: Number.NaN })))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { memoryPercent: 101 })))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { state: 'zombie' as never })))
    expectMalformed(() => encodeInstanceBody(makeInstanceRecord(NODE_ID, { seq: -1 })))
    expectMalformed(() => encodeEnvelope({ kind: 'release', signed: new Uint8Array(61 * 1024) }))
  })

  it('rejects hand-crafted invalid fields, non-minimal varints, trailing bytes and oversize input', () => {
    const w = new ByteWriter(1024)
    const inst = makeInstanceRecord(NODE_ID)
    w.string(inst.instanceId, 128).string(inst.cell, 128).string(inst.version, 64).string(inst.digest, 160).string(inst.nodeId, 128)
    w.uvarint(1).u8(1).f64(Number.POSITIVE_INFINITY)
    expectMalformed(() => decodeInstanceBody(w.finish()))

    const good = encodeInstanceBody(inst)
    expectMalformed(() => decodeInstanceBody(new Uint8Array([...good, 0])))
    // instanceId length 3 written as the two-byte varint 0x83 0x00.
    expectMalformed(() => decodeInstanceBody(new Uint8Array([0x83, 0x00, 0x61, 0x61, 0x61])))
    expectMalformed(() => decodeFrame(new Uint8Array(MAX_MESSAGE_BYTES + 1)))
    expectMalformed(() => decodeFrame(new Uint8Array([2, 1])))
    expectMalformed(() => decodeFrame(new Uint8Array([1, 99])))
    expectMalformed(() => decodeFrame(new Uint8Array([1, 3, 0])))
    expectMalformed(() => decodeFrame(new Uint8Array([1, 0x10, 0x80, 0x80, 0x01])))
    expectMalformed(() => decodeFrame(new Uint8Array(0)))
    // Invalid UTF-8 inside a string field.
    expectMalformed(() => decodeInstanceBody(new Uint8Array([2, 0xc3, 0x28])))
  })

  it('throws only MalformedFleetRecordError on fuzzed input', () => {
    const rand = prng(0xc311)
    const node = makeNodeRecord(NODE_ID)
    const seeds = [
      encodeEnvelope({ kind: 'node', record: node, body: encodeNodeBody(node), signature: new Uint8Array(64) }),
      encodeEnvelope({ kind: 'node', record: node, body: encodeNodeBody({ ...node, prepared: [{ cell: 'billing', version: '1.0.0', digest: 'ab'.repeat(32), state: 'failed', reason: 'DigestMismatchError: bad bytes' }] }), signature: new Uint8Array(64) }),
      encodeEnvelope({ kind: 'instance', record: makeInstanceRecord(NODE_ID), body: encodeInstanceBody(makeInstanceRecord(NODE_ID)), signature: new Uint8Array(64) }),
      ...encodeBundles([{ bytes: encodeEnvelope({ kind: 'release', signed: new Uint8Array([1, 2, 3]) }), ageMs: 5 }])
    ]
    let rejected = 0
    let accepted = 0
    for (let i = 0; i < 20_000; i++) {
      let input: Uint8Array
      // Every seed meets every mode (with 4 seeds, i % seeds.length would pin each seed to one mode).
      const seed = seeds[Math.floor(i / 4) % seeds.length]
      const mode = i % 4
      if (mode === 0) {
        input = Uint8Array.from({ length: Math.floor(rand() * 300) }, () => Math.floor(rand() * 256))
        if (rand() < 0.7 && input.length > 1) { input[0] = 1; input[1] = [1, 2, 3, 4, 0x10][Math.floor(rand() * 5)] }
      } else if (mode === 1) {
        input = seed.slice(0, Math.floor(rand() * seed.length))
      } else {
        input = seed.slice()
        for (let f = 1 + Math.floor(rand() * 4); f > 0; f--) input[Math.floor(rand() * input.length)] ^= 1 << Math.floor(rand() * 8)
      }
      try {
        decodeFrame(input)
        accepted++
      } catch (err) {
        expect(err).toBeInstanceOf(MalformedFleetRecordError)
        rejected++
      }
    }
    // Both outcomes must occur, or the fuzz is not exercising the decoder.
    expect(rejected).toBeGreaterThan(1000)
    expect(accepted).toBeGreaterThan(10)
  })
})
