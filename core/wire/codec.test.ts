import { describe, expect, it } from 'vitest'
import {
  FrameDecoder, FrameEncoder, FrameTooLargeError, FrameType, MalformedFrameError, decodeFrames,
  encodeFields, FieldReader
} from './index.ts'
import type { Frame } from './index.ts'

function collect (maxFrameBytes?: number): { frames: Frame[], decoder: FrameDecoder } {
  const frames: Frame[] = []
  const decoder = new FrameDecoder((f) => { frames.push({ ...f, payload: f.payload.slice() }) }, { maxFrameBytes })
  return { frames, decoder }
}

describe('frame codec', () => {
  it('round-trips every optional header field', () => {
    const enc = new FrameEncoder()
    enc.encode({ type: FrameType.CALL, id: 300, method: 7, methodName: 'charge', timeoutMs: 30_000, traceparent: '00-abc-def-01', payload: new Uint8Array([1, 2, 3]) })
    enc.frame(FrameType.MESSAGE, 0, new Uint8Array([9]), 7)
    enc.frame(FrameType.RESULT, 2 ** 32 - 1, new Uint8Array(0))
    const frames = decodeFrames(enc.take())
    expect(frames).toHaveLength(3)
    expect(frames[0]).toMatchObject({ type: FrameType.CALL, id: 300, method: 7, methodName: 'charge', timeoutMs: 30_000, traceparent: '00-abc-def-01' })
    expect([...frames[0].payload]).toEqual([1, 2, 3])
    expect(frames[1]).toMatchObject({ type: FrameType.MESSAGE, id: 0, method: 7, methodName: undefined, timeoutMs: -1 })
    expect(frames[2]).toMatchObject({ type: FrameType.RESULT, id: 2 ** 32 - 1, method: -1 })
    expect(frames[2].payload.length).toBe(0)
  })

  it('batches many small frames into one Uint8Array and parses whole frames without copying', () => {
    const enc = new FrameEncoder()
    const payload = new Uint8Array(64).fill(5)
    for (let i = 0; i < 1000; i++) enc.frame(FrameType.MESSAGE, i, payload, 1)
    expect(enc.pendingFrames).toBe(1000)
    const batch = enc.take()
    expect(enc.pendingBytes).toBe(0)
    const seen: number[] = []
    const decoder = new FrameDecoder((f) => {
      seen.push(f.id)
      // A view into the batch, not a copy.
      expect(f.payload.buffer).toBe(batch.buffer)
    })
    decoder.push(batch)
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i))
  })

  it('keeps taken batches intact while later frames are written', () => {
    const enc = new FrameEncoder({ slabBytes: 1024 })
    enc.frame(FrameType.MESSAGE, 1, new Uint8Array(100).fill(1))
    const first = enc.take().slice()
    const firstView = (() => { enc.frame(FrameType.MESSAGE, 2, new Uint8Array(100).fill(1)); return enc.take() })()
    for (let i = 0; i < 50; i++) enc.frame(FrameType.MESSAGE, 3, new Uint8Array(100).fill(7))
    const big = enc.take() // spans several slabs
    expect(decodeFrames(first)[0].id).toBe(1)
    expect(decodeFrames(firstView)[0].id).toBe(2)
    const frames = decodeFrames(big)
    expect(frames).toHaveLength(50)
    expect(frames.every(f => f.payload.every(b => b === 7))).toBe(true)
  })

  it('reassembles frames split at every byte boundary', () => {
    const enc = new FrameEncoder()
    for (let i = 0; i < 20; i++) enc.encode({ type: FrameType.CALL, id: i * 1000, method: i, methodName: `m${i}`, timeoutMs: i * 99_999, payload: new Uint8Array(i * 37).fill(i) })
    const bytes = enc.take()
    const expected = decodeFrames(bytes)
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const { frames, decoder } = collect()
      decoder.push(bytes.subarray(0, cut))
      decoder.push(bytes.subarray(cut))
      expect(frames.map(f => [f.id, f.methodName, f.payload.length])).toEqual(expected.map(f => [f.id, f.methodName, f.payload.length]))
    }
    // one byte at a time, including through split length prefixes
    const { frames, decoder } = collect()
    for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1))
    expect(frames).toHaveLength(20)
    expect(decoder.bufferedBytes).toBe(0)
  })

  it('accepts an iterable of chunks (Uint8ArrayList-like)', () => {
    const enc = new FrameEncoder()
    enc.frame(FrameType.RESULT, 5, new Uint8Array([1, 2, 3, 4]))
    const bytes = enc.take()
    const { frames, decoder } = collect()
    decoder.push([bytes.subarray(0, 2), bytes.subarray(2, 5), bytes.subarray(5)])
    expect(frames.map(f => f.id)).toEqual([5])
  })

  it('rejects frames above the limit on both ends', () => {
    const enc = new FrameEncoder({ maxFrameBytes: 128 })
    expect(() => { enc.frame(FrameType.CALL, 1, new Uint8Array(200)) }).toThrow(FrameTooLargeError)
    expect(enc.pendingBytes).toBe(0)
    const big = new FrameEncoder()
    big.frame(FrameType.CALL, 1, new Uint8Array(200))
    const { decoder } = collect(128)
    const bytes = big.take()
    // only the length prefix is needed to refuse it
    expect(() => { decoder.push(bytes.subarray(0, 2)) }).toThrow(FrameTooLargeError)
    // and the decoder stays failed
    expect(() => { decoder.push(new Uint8Array([3, 1, 0, 0])) }).toThrow(FrameTooLargeError)
  })

  it('rejects malformed headers', () => {
    const bad = [
      [3, 99, 0, 0], // unknown type
      [3, 4, 0x80, 0], // reserved flag
      [2, 4, 0], // body shorter than a header
      [0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // prefix longer than 5 bytes
      [4, 4, 0x02, 0, 9] // method name overruns
    ]
    for (const bytes of bad) {
      const { decoder } = collect()
      expect(() => { decoder.push(new Uint8Array(bytes)) }, JSON.stringify(bytes)).toThrow(MalformedFrameError)
    }
  })

  it('fields round-trip and bounds-check', () => {
    const bytes = encodeFields([1, 'billing', new Uint8Array([1, 2]), 1 << 20])
    const r = new FieldReader(bytes)
    expect(r.varint()).toBe(1)
    expect(r.string(64)).toBe('billing')
    expect([...r.bytes(64)]).toEqual([1, 2])
    expect(r.optionalVarint(0)).toBe(1 << 20)
    expect(r.optionalVarint(42)).toBe(42)
    expect(() => new FieldReader(encodeFields(['toolong'])).string(3)).toThrow(MalformedFrameError)
    expect(() => new FieldReader(new Uint8Array([5, 1])).bytes(64)).toThrow(MalformedFrameError)
  })
})
