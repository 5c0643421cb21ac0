import { describe, it, expect } from 'vitest'
import { encodeFrame, encodeCallFrame, decodeCallMeta, FrameBatch, FrameDecoder, FrameType, MAX_CALLER_SLOTS } from './protocol.ts'
import { FrameTooLargeError, CapsidProtocolError } from './errors.ts'

const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

describe('capsid frames', () => {
  it('round-trips frames split at every byte boundary and coalesced', () => {
    const a = encodeCallFrame(FrameType.CALL, 7, { method: 'm', deadlineMs: 123, callerSlot: 2, credit: 0, traceparent: tp }, new Uint8Array([1, 2, 3]))
    const b = encodeFrame(FrameType.DRAIN, 0, undefined)
    const c = encodeFrame(FrameType.CALLER, 2, { peerId: 'p', roles: ['caller'] })
    const both = new Uint8Array([...c, ...a, ...b])
    for (let cut = 0; cut <= both.length; cut++) {
      const d = new FrameDecoder()
      const frames = [...d.push(both.subarray(0, cut)), ...d.push(both.subarray(cut))]
      expect(frames.map(f => [f.type, f.id, f.meta, [...f.payload]])).toEqual([
        [FrameType.CALLER, 2, { peerId: 'p', roles: ['caller'] }, []],
        [FrameType.CALL, 7, { method: 'm', deadlineMs: 123, callerSlot: 2, credit: 0, traceparent: tp }, [1, 2, 3]],
        [FrameType.DRAIN, 0, undefined, []]
      ])
    }
  })

  it('a batch holds a tick of frames back to back, in order, in one buffer', () => {
    const batch = new FrameBatch()
    for (let i = 1; i <= 500; i++) {
      batch.call(FrameType.CALL, i, { method: 'quote', deadlineMs: Infinity, callerSlot: 0, credit: 0 }, new Uint8Array([i & 0xff]))
      if (i % 100 === 0) batch.frame(FrameType.CANCEL, i, undefined)
    }
    expect(batch.frames).toBe(505)
    const bytes = batch.take()
    expect(batch.byteLength).toBe(0)
    const frames = new FrameDecoder().push(bytes)
    expect(frames).toHaveLength(505)
    expect(frames.filter(f => f.type === FrameType.CALL).map(f => f.id)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1))
    expect(frames[0].meta).toEqual({ method: 'quote', deadlineMs: Infinity, callerSlot: 0, credit: 0 })
    expect(frames[100].type).toBe(FrameType.CANCEL)
    expect(batch.take().byteLength).toBe(0)
  })

  it('bounds frame size on both ends and rejects malformed headers', () => {
    expect(() => encodeFrame(FrameType.CALL, 1, {}, new Uint8Array(100), 64)).toThrow(FrameTooLargeError)
    const big = encodeFrame(FrameType.RESULT, 1, {}, new Uint8Array(100))
    expect(() => new FrameDecoder(64).push(big.subarray(0, 4))).toThrow(FrameTooLargeError)
    const bad = encodeFrame(FrameType.RESULT, 1, { x: 1 })
    new DataView(bad.buffer).setUint32(9, 1000)
    expect(() => new FrameDecoder().push(bad)).toThrow(CapsidProtocolError)
  })

  it('an oversized frame is refused before any of it enters the batch', () => {
    const batch = new FrameBatch(256)
    batch.frame(FrameType.RESULT, 1, undefined, new Uint8Array(10))
    const before = batch.byteLength
    expect(() => { batch.call(FrameType.CALL, 2, { method: 'm', deadlineMs: 1, callerSlot: 0, credit: 0 }, new Uint8Array(300)) }).toThrow(FrameTooLargeError)
    expect(() => { batch.call(FrameType.CALL, 3, { method: 'm'.repeat(2000), deadlineMs: 1, callerSlot: 0, credit: 0 }) }).toThrow(CapsidProtocolError)
    expect(batch.byteLength).toBe(before)
    expect(new FrameDecoder().push(batch.take()).map(f => f.id)).toEqual([1])
  })

  it('malformed call meta is a named error, never a wrong call', () => {
    const meta = (frame: Uint8Array): Uint8Array => frame.subarray(13, 13 + new DataView(frame.buffer, frame.byteOffset).getUint32(9))
    const good = meta(encodeCallFrame(FrameType.CALL, 1, { method: 'quote', deadlineMs: 5, callerSlot: 1, credit: 3, traceparent: tp }))
    expect(decodeCallMeta(good)).toEqual({ method: 'quote', deadlineMs: 5, callerSlot: 1, credit: 3, traceparent: tp })
    // Too short, a method length past the end, a traceparent length that does not fill the meta.
    expect(() => decodeCallMeta(good.subarray(0, 10))).toThrow(CapsidProtocolError)
    const longMethod = good.slice()
    new DataView(longMethod.buffer).setUint16(16, 5000)
    expect(() => decodeCallMeta(longMethod)).toThrow(CapsidProtocolError)
    expect(() => decodeCallMeta(good.subarray(0, good.byteLength - 1))).toThrow(CapsidProtocolError)
    // A caller slot beyond the table.
    const slot = good.slice()
    new DataView(slot.buffer).setUint32(8, MAX_CALLER_SLOTS + 1)
    expect(() => decodeCallMeta(slot)).toThrow(CapsidProtocolError)
  })
})
