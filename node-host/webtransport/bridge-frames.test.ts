import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  FRAME, FrameDecoder, BridgeFrameError, encodeFrame, encodeCredit, creditOf, encodeJson, jsonOf,
  HEADER_BYTES, MAX_PAYLOAD_BYTES, type Frame, type FrameType
} from './bridge-frames.ts'

const TYPES = Object.values(FRAME) as FrameType[]
const frameArb = fc.record({
  type: fc.constantFrom(...TYPES),
  session: fc.nat({ max: 0xffff_ffff }),
  stream: fc.nat({ max: 0xffff_ffff }),
  payload: fc.uint8Array({ maxLength: 300 })
})

/** Cut `bytes` at the given points (any split of the stream must decode the same). */
function chop (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map(c => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const c of [...at, bytes.byteLength]) { out.push(bytes.subarray(prev, c)); prev = c }
  return out
}

describe('bridge frames', () => {
  it('round-trips any sequence of frames however the bytes are split', () => {
    fc.assert(fc.property(fc.array(frameArb, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
      const wire = new Uint8Array(frames.reduce((n, f) => n + HEADER_BYTES + f.payload.byteLength, 0))
      let at = 0
      for (const f of frames) { const b = encodeFrame(f.type, f.session, f.stream, f.payload); wire.set(b, at); at += b.byteLength }
      const d = new FrameDecoder()
      const got: Frame[] = []
      for (const chunk of chop(wire, cuts)) got.push(...d.push(chunk))
      expect(got.map(f => ({ ...f, payload: [...f.payload] }))).toEqual(frames.map(f => ({ ...f, payload: [...f.payload] })))
      expect(d.bufferedBytes).toBe(0)
    }))
  })

  it('garbage either decodes into well-formed frames or fails with BridgeFrameError, and holds a bounded buffer', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 4096 }), { maxLength: 16 }), (chunks) => {
      const d = new FrameDecoder()
      for (const c of chunks) {
        try {
          for (const f of d.push(c)) {
            expect(TYPES).toContain(f.type)
            expect(f.payload.byteLength).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES)
          }
        } catch (err) {
          expect(err).toBeInstanceOf(BridgeFrameError)
          // A failed decoder stays failed: no half-understood state is used again.
          expect(() => d.push(new Uint8Array(1))).toThrow(BridgeFrameError)
          return
        }
        expect(d.bufferedBytes).toBeLessThanOrEqual(HEADER_BYTES + MAX_PAYLOAD_BYTES + 4096)
      }
    }), { numRuns: 500 })
  })

  it('refuses an oversize frame from its header, before its payload arrives', () => {
    const header = new Uint8Array(HEADER_BYTES)
    const view = new DataView(header.buffer)
    view.setUint8(0, FRAME.data)
    view.setUint32(9, MAX_PAYLOAD_BYTES + 1)
    expect(() => new FrameDecoder().push(header)).toThrow(BridgeFrameError)
    expect(() => encodeFrame(FRAME.data, 1, 1, new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toThrow(BridgeFrameError)
  })

  it('refuses an unknown frame type', () => {
    const bytes = encodeFrame(FRAME.data, 1, 1, new Uint8Array(3))
    bytes[0] = 0x7f
    expect(() => new FrameDecoder().push(bytes)).toThrow(/unknown frame type 0x7f/)
  })

  it('checks credit and JSON payloads', () => {
    const d = new FrameDecoder()
    const [credit] = d.push(encodeCredit(3, 5, 4096))
    expect(creditOf(credit)).toBe(4096)
    expect(() => creditOf({ ...credit, payload: new Uint8Array(3) })).toThrow(BridgeFrameError)
    const [json] = d.push(encodeJson(FRAME.listening, 0, { port: 4433 }))
    expect(jsonOf(json)).toEqual({ port: 4433 })
    const [bad] = d.push(encodeFrame(FRAME.listening, 0, 0, new Uint8Array([0xff, 0xfe])))
    expect(() => jsonOf(bad)).toThrow(BridgeFrameError)
    const [arr] = d.push(encodeFrame(FRAME.listening, 0, 0, new TextEncoder().encode('[1]')))
    expect(() => jsonOf(arr)).toThrow(BridgeFrameError)
  })
})
