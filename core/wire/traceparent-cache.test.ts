import { describe, expect, it } from 'vitest'
import { FLAG_TRACE, FLAG_TRACE_REPEAT, FrameDecoder, FrameEncoder, FrameType, MalformedFrameError, decodeFrames } from './index.ts'
import type { Frame } from './index.ts'

// The encoder and decoder keep the last two traceparents (a caller's unsampled one repeats call
// after call, and comes back after a sampled call's own); a different one, one evicted from the
// caches, or the same bytes in a later chunk, must still come out exactly.
describe('repeated traceparents', () => {
  it('round-trip through the two-entry caches, interleaved with others and with none', () => {
    const a = '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
    const b = '00-2af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01'
    const c = '00-3af7651916cd43dd8448eb211c80319c-d7ad6b7169203331-01'
    const sent = [a, a, b, undefined, a, b, b, a, c, a, b, c, c, b, a, a, c]
    const enc = new FrameEncoder()
    const frames: Frame[] = []
    const dec = new FrameDecoder((f) => { frames.push({ ...f, payload: f.payload.slice() }) })
    sent.forEach((traceparent, id) => {
      enc.encode({ type: FrameType.CALL, id, method: 1, timeoutMs: 100, payload: new Uint8Array([id]), ...(traceparent !== undefined ? { traceparent } : {}) })
      // One chunk per frame: the cached bytes must not alias a reused receive buffer.
      const chunk = enc.take()
      dec.push(chunk)
      chunk.fill(0)
    })
    expect(frames.map(f => f.traceparent)).toEqual(sent)
    expect(frames.map(f => f.payload[0])).toEqual(sent.map((_, i) => i))
  })

  it('carry a non-ASCII or long traceparent exactly too (encoded by TextEncoder, not the ASCII copy)', () => {
    const sent = ['00-é-ü-01', 'x'.repeat(70), '00-ascii-01', '00-é-ü-01', 'ä'.repeat(40)]
    const enc = new FrameEncoder()
    const frames: Frame[] = []
    const dec = new FrameDecoder((f) => { frames.push({ ...f }) })
    sent.forEach((traceparent, id) => {
      enc.encode({ type: FrameType.CALL, id, method: 1, payload: new Uint8Array(1), traceparent })
      dec.push(enc.take())
    })
    expect(frames.map(f => f.traceparent)).toEqual(sent)
  })

  it('send a repeated traceparent once: later frames carry FLAG_TRACE_REPEAT and no bytes of it', () => {
    const a = '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
    const b = '00-2af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01'
    const enc = new FrameEncoder()
    const sizes: number[] = []
    const flags: number[] = []
    const frames: Frame[] = []
    const dec = new FrameDecoder((f) => { frames.push({ ...f }); flags.push(f.flags) })
    for (const traceparent of [a, a, a, b, a, a]) {
      enc.encode({ type: FrameType.CALL, id: 1, method: 1, payload: new Uint8Array(8), traceparent })
      const chunk = enc.take()
      sizes.push(chunk.length)
      dec.push(chunk)
    }
    expect(frames.map(f => f.traceparent)).toEqual([a, a, a, b, a, a])
    expect(flags.map(f => f & (FLAG_TRACE | FLAG_TRACE_REPEAT))).toEqual([FLAG_TRACE, FLAG_TRACE_REPEAT, FLAG_TRACE_REPEAT, FLAG_TRACE, FLAG_TRACE, FLAG_TRACE_REPEAT])
    expect(sizes[0] - sizes[1]).toBe(a.length + 1)
    // The hot-path frame() says the same when told the traceparent repeats.
    expect(enc.repeatsTrace(a)).toBe(true)
    expect(enc.repeatsTrace(b)).toBe(false)
    enc.frame(FrameType.CALL, 9, new Uint8Array(8), 1, 100, true)
    dec.push(enc.take())
    expect(frames.at(-1)).toMatchObject({ id: 9, method: 1, timeoutMs: 100, traceparent: a })
  })

  it('refuse a repeat with nothing to repeat, or with a traceparent too (hostile or broken sender)', () => {
    const enc = new FrameEncoder()
    enc.encode({ type: FrameType.CALL, id: 1, method: 1, payload: new Uint8Array(1) })
    const plain = enc.take().slice()
    // Byte 0 is the one-byte length prefix, byte 1 the type, byte 2 the flags.
    const repeatFirst = plain.slice()
    repeatFirst[2] |= FLAG_TRACE_REPEAT
    expect(() => decodeFrames(repeatFirst)).toThrow(MalformedFrameError)
    enc.encode({ type: FrameType.CALL, id: 2, method: 1, payload: new Uint8Array(1), traceparent: '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' })
    const both = enc.take().slice()
    expect(both[2] & FLAG_TRACE).toBe(FLAG_TRACE)
    both[2] |= FLAG_TRACE_REPEAT
    expect(() => decodeFrames(both)).toThrow(MalformedFrameError)
  })
})
