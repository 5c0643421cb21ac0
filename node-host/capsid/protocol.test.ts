import { describe, it, expect } from 'vitest'
import { encodeFrame, FrameDecoder, FrameType } from './protocol.ts'
import { FrameTooLargeError, CapsidProtocolError } from './errors.ts'

describe('capsid frames', () => {
  it('round-trips frames split at every byte boundary and coalesced', () => {
    const a = encodeFrame(FrameType.CALL, 7, { method: 'm', deadlineMs: 123 }, new Uint8Array([1, 2, 3]))
    const b = encodeFrame(FrameType.DRAIN, 0, undefined)
    const both = new Uint8Array([...a, ...b])
    for (let cut = 0; cut <= both.length; cut++) {
      const d = new FrameDecoder()
      const frames = [...d.push(both.subarray(0, cut)), ...d.push(both.subarray(cut))]
      expect(frames.map(f => [f.type, f.id, f.meta, [...f.payload]])).toEqual([
        [FrameType.CALL, 7, { method: 'm', deadlineMs: 123 }, [1, 2, 3]],
        [FrameType.DRAIN, 0, undefined, []]
      ])
    }
  })

  it('bounds frame size on both ends and rejects malformed headers', () => {
    expect(() => encodeFrame(FrameType.CALL, 1, {}, new Uint8Array(100), 64)).toThrow(FrameTooLargeError)
    const big = encodeFrame(FrameType.CALL, 1, {}, new Uint8Array(100))
    expect(() => new FrameDecoder(64).push(big.subarray(0, 4))).toThrow(FrameTooLargeError)
    const bad = encodeFrame(FrameType.CALL, 1, { x: 1 })
    new DataView(bad.buffer).setUint32(9, 1000)
    expect(() => new FrameDecoder().push(bad)).toThrow(CapsidProtocolError)
  })
})
