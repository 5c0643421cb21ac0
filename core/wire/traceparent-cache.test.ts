import { describe, expect, it } from 'vitest'
import { FrameDecoder, FrameEncoder, FrameType } from './index.ts'
import type { Frame } from './index.ts'

// The encoder and decoder keep the last traceparent (a caller's unsampled one repeats call after
// call); a different one, or the same bytes in a later chunk, must still come out exactly.
describe('repeated traceparents', () => {
  it('round-trip through the one-entry caches, interleaved with others and with none', () => {
    const a = '00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
    const b = '00-2af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01'
    const sent = [a, a, b, undefined, a, b, b, a]
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
})
