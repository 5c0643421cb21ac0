// Host side of the capsid protocol, spoken over one Unix socket between the host and the runner.
// Frame: u32be length-of-rest | u8 type | u32be id | u32be metaLength | meta (JSON, UTF-8) | payload.
// runner.mjs carries its own copy of these constants (it runs alone inside the sandbox);
// capsid.test.ts exercises both ends together so they cannot drift unnoticed.
import { CapsidProtocolError, FrameTooLargeError } from './errors.ts'

export const MAX_FRAME_BYTES = 4 * 1024 * 1024
const HEADER_BYTES = 4 + 1 + 4 + 4

export const FrameType = {
  // host → replica
  CALL: 1,
  STREAM: 2,
  MESSAGE: 3,
  CANCEL: 4,
  DRAIN: 5,
  CREDIT: 6,
  // replica → host
  READY: 16,
  RESULT: 17,
  ERROR: 18,
  CHUNK: 19,
  END: 20
} as const

export interface Frame {
  type: number
  id: number
  meta: any
  payload: Uint8Array
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const EMPTY = new Uint8Array(0)

export function encodeFrame (type: number, id: number, meta: unknown, payload: Uint8Array = EMPTY, maxBytes = MAX_FRAME_BYTES): Uint8Array {
  const metaBytes = meta === undefined ? EMPTY : enc.encode(JSON.stringify(meta))
  const rest = 1 + 4 + 4 + metaBytes.byteLength + payload.byteLength
  if (rest > maxBytes) throw new FrameTooLargeError(`frame of ${rest} bytes exceeds the ${maxBytes} byte limit`)
  const out = new Uint8Array(4 + rest)
  const view = new DataView(out.buffer)
  view.setUint32(0, rest)
  out[4] = type
  view.setUint32(5, id)
  view.setUint32(9, metaBytes.byteLength)
  out.set(metaBytes, HEADER_BYTES)
  out.set(payload, HEADER_BYTES + metaBytes.byteLength)
  return out
}

/** Incremental decoder: push socket chunks, get whole frames. Copies only frames split across chunks. */
export class FrameDecoder {
  private buf: Uint8Array = EMPTY
  private readonly maxBytes: number

  constructor (maxBytes = MAX_FRAME_BYTES) {
    this.maxBytes = maxBytes
  }

  push (chunk: Uint8Array): Frame[] {
    let buf: Uint8Array
    if (this.buf.byteLength === 0) {
      buf = chunk
    } else {
      buf = new Uint8Array(this.buf.byteLength + chunk.byteLength)
      buf.set(this.buf)
      buf.set(chunk, this.buf.byteLength)
    }
    const frames: Frame[] = []
    let off = 0
    while (buf.byteLength - off >= 4) {
      const view = new DataView(buf.buffer, buf.byteOffset + off)
      const rest = view.getUint32(0)
      if (rest > this.maxBytes) throw new FrameTooLargeError(`incoming frame of ${rest} bytes exceeds the ${this.maxBytes} byte limit`)
      if (rest < HEADER_BYTES - 4) throw new CapsidProtocolError(`frame of ${rest} bytes is shorter than its header`)
      if (buf.byteLength - off < 4 + rest) break
      const type = buf[off + 4]
      const id = view.getUint32(5)
      const metaLen = view.getUint32(9)
      if (metaLen > rest - 9) throw new CapsidProtocolError('frame meta length exceeds frame')
      const metaStart = off + HEADER_BYTES
      let meta: unknown
      if (metaLen > 0) {
        try {
          meta = JSON.parse(dec.decode(buf.subarray(metaStart, metaStart + metaLen)))
        } catch (err) {
          throw new CapsidProtocolError('frame meta is not JSON', { cause: err })
        }
      }
      frames.push({ type, id, meta, payload: buf.subarray(metaStart + metaLen, off + 4 + rest) })
      off += 4 + rest
    }
    // Keep the unfinished tail; copy it so the big chunk it came from can be collected.
    this.buf = off === buf.byteLength ? EMPTY : buf.slice(off)
    return frames
  }
}
