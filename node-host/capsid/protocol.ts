// Host side of the capsid protocol, spoken over one Unix socket between the host and the runner.
// Frame: u32be length-of-rest | u8 type | u32be id | u32be metaLength | meta | payload.
// The meta of CALL and STREAM frames is binary (CALL_META below: the hot path pays no JSON); every
// other frame's meta is JSON (UTF-8). The caller of a call travels once per distinct caller in a
// CALLER frame (id = a slot number, meta = the caller as JSON); calls name the slot.
// Frames produced in one tick go out back to back in one socket write (FrameBatch), both ways.
// runner.mjs carries its own copy of these constants (it runs alone inside the sandbox);
// capsid.test.ts exercises both ends together so they cannot drift unnoticed.
import { CapsidProtocolError, FrameTooLargeError } from './errors.ts'

export const MAX_FRAME_BYTES = 4 * 1024 * 1024
const HEADER_BYTES = 4 + 1 + 4 + 4
/** Caller slots a replica keeps (1..MAX_CALLER_SLOTS; 0 = no caller). runner.mjs has the same bound. */
export const MAX_CALLER_SLOTS = 4096
/** CALL_META: f64 deadlineMs | u32 caller slot | u32 credit | u16 method length | method | u16 traceparent length | traceparent. */
const CALL_META_FIXED_BYTES = 8 + 4 + 4 + 2 + 2
/** Method names and traceparents longer than this are refused (a W3C traceparent is 55 bytes). */
export const MAX_CALL_STRING_BYTES = 1024

export const FrameType = {
  // host → replica
  CALL: 1,
  STREAM: 2,
  MESSAGE: 3,
  CANCEL: 4,
  DRAIN: 5,
  CREDIT: 6,
  CALLER: 7,
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

/** The binary meta of a CALL or STREAM frame. */
export interface CallMeta {
  method: string
  /** Absolute, ms since epoch (Infinity: none). */
  deadlineMs: number
  traceparent?: string
  /** 0: no caller; else the slot a CALLER frame filled. */
  callerSlot: number
  /** Stream chunks the replica may send ahead (0 for unary calls). */
  credit: number
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const EMPTY = new Uint8Array(0)
const EMPTY_VIEW = new DataView(EMPTY.buffer)

/** The length of `s` when every character is ASCII (one byte each in UTF-8), else -1. */
function asciiLength (s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return -1
  return s.length
}

/** Writes an ASCII string (asciiLength checked it) at `at`. */
function writeAscii (buf: Uint8Array, at: number, s: string): void {
  for (let i = 0; i < s.length; i++) buf[at + i] = s.charCodeAt(i)
}

/** A big-endian u32 at `at`. */
function u32 (buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) >>> 0) + (buf[at + 1] << 16) + (buf[at + 2] << 8) + buf[at + 3]
}

export function encodeFrame (type: number, id: number, meta: unknown, payload: Uint8Array = EMPTY, maxBytes = MAX_FRAME_BYTES): Uint8Array {
  const batch = new FrameBatch(maxBytes)
  batch.frame(type, id, meta, payload)
  return batch.take()
}

/** One CALL or STREAM frame on its own (tests; the capsid encodes into its FrameBatch). */
export function encodeCallFrame (type: number, id: number, call: CallMeta, payload: Uint8Array = EMPTY, maxBytes = MAX_FRAME_BYTES): Uint8Array {
  const batch = new FrameBatch(maxBytes)
  batch.call(type, id, call, payload)
  return batch.take()
}

/** CALL_META from a frame's meta bytes; a malformed one is a CapsidProtocolError. */
export function decodeCallMeta (bytes: Uint8Array): CallMeta {
  if (bytes.byteLength < CALL_META_FIXED_BYTES) throw new CapsidProtocolError(`call meta of ${bytes.byteLength} bytes is shorter than its ${CALL_META_FIXED_BYTES} fixed bytes`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const deadlineMs = view.getFloat64(0)
  const callerSlot = view.getUint32(8)
  const credit = view.getUint32(12)
  const methodLen = view.getUint16(16)
  if (18 + methodLen + 2 > bytes.byteLength) throw new CapsidProtocolError('call meta method length exceeds the meta')
  const method = dec.decode(bytes.subarray(18, 18 + methodLen))
  const tpLen = view.getUint16(18 + methodLen)
  const tpStart = 20 + methodLen
  if (tpStart + tpLen !== bytes.byteLength) throw new CapsidProtocolError('call meta traceparent length does not match the meta')
  if (callerSlot > MAX_CALLER_SLOTS) throw new CapsidProtocolError(`caller slot ${callerSlot} is beyond ${MAX_CALLER_SLOTS}`)
  const out: CallMeta = { method, deadlineMs, callerSlot, credit }
  if (tpLen > 0) out.traceparent = dec.decode(bytes.subarray(tpStart, tpStart + tpLen))
  return out
}

/** Bytes a batch buffer starts with; it grows for bigger batches and the next one starts there. */
const BATCH_MIN_BYTES = 16 * 1024

/**
 * Frames encoded back to back into one buffer, so a tick's frames reach the socket in one write
 * and none of them is a separate allocation. Every frame is checked against `maxBytes` before any
 * byte of it is written; take() hands over the batch and starts a fresh buffer (the socket may
 * still hold the old one).
 */
export class FrameBatch {
  private buf: Uint8Array
  private view: DataView
  private len = 0
  private hint = BATCH_MIN_BYTES
  private readonly maxBytes: number
  /** Frames in the batch being built. */
  frames = 0
  /** The buffer of the last take(), until written() says the socket let go of it. */
  private lent: Uint8Array | undefined
  private lentView: DataView = EMPTY_VIEW

  constructor (maxBytes = MAX_FRAME_BYTES) {
    this.maxBytes = maxBytes
    this.buf = EMPTY
    this.view = EMPTY_VIEW
  }

  get byteLength (): number { return this.len }

  /** A frame with JSON meta (undefined: none). */
  frame (type: number, id: number, meta: unknown, payload: Uint8Array = EMPTY): void {
    const metaBytes = meta === undefined ? EMPTY : enc.encode(JSON.stringify(meta))
    const at = this.open(type, id, metaBytes.byteLength, payload.byteLength)
    this.buf.set(metaBytes, at)
    this.buf.set(payload, at + metaBytes.byteLength)
  }

  /** A CALL or STREAM frame with binary CALL_META. */
  call (type: number, id: number, call: CallMeta, payload: Uint8Array = EMPTY): void {
    this.callFrame(type, id, call.method, call.deadlineMs, call.traceparent, call.callerSlot, call.credit, payload)
  }

  /** call() with the meta's fields as arguments: the host's hot path makes no meta object per call. */
  callFrame (type: number, id: number, methodName: string, deadlineMs: number, traceparent: string | undefined, callerSlot: number, credit: number, payload: Uint8Array): void {
    // Method names and W3C traceparents are ASCII: their length is known without encoding them,
    // and their bytes go straight into the batch (TextEncoder.encode costs an ArrayBuffer each).
    const tpString = traceparent ?? ''
    let methodLen = asciiLength(methodName)
    let tpLen = asciiLength(tpString)
    const method = methodLen < 0 ? enc.encode(methodName) : undefined
    const tp = tpLen < 0 ? enc.encode(tpString) : undefined
    if (method !== undefined) methodLen = method.byteLength
    if (tp !== undefined) tpLen = tp.byteLength
    if (methodLen > MAX_CALL_STRING_BYTES || tpLen > MAX_CALL_STRING_BYTES) {
      throw new CapsidProtocolError(`method name or traceparent longer than ${MAX_CALL_STRING_BYTES} bytes`)
    }
    const metaLen = CALL_META_FIXED_BYTES + methodLen + tpLen
    const at = this.open(type, id, metaLen, payload.byteLength)
    const view = this.view
    const buf = this.buf
    view.setFloat64(at, deadlineMs)
    view.setUint32(at + 8, callerSlot)
    view.setUint32(at + 12, credit)
    view.setUint16(at + 16, methodLen)
    if (method === undefined) writeAscii(buf, at + 18, methodName)
    else buf.set(method, at + 18)
    view.setUint16(at + 18 + methodLen, tpLen)
    if (tp === undefined) writeAscii(buf, at + 20 + methodLen, tpString)
    else buf.set(tp, at + 20 + methodLen)
    if (payload.byteLength > 0) buf.set(payload, at + metaLen)
  }

  /**
   * The batch so far (empty when none), and a fresh buffer for the next. The socket may keep the
   * returned bytes until the kernel takes them; when it wrote them at once, `written()` lets the
   * next batch reuse the buffer instead of allocating one per write.
   */
  take (): Uint8Array {
    const out = this.buf.subarray(0, this.len)
    this.hint = Math.max(BATCH_MIN_BYTES, Math.min(this.len, 1024 * 1024))
    // A buffer much bigger than this batch needed is let go (a burst must not pin its size).
    if (this.buf.byteLength >= BATCH_MIN_BYTES && this.buf.byteLength <= 4 * this.hint) {
      this.lent = this.buf
      this.lentView = this.view
    }
    this.buf = EMPTY
    this.view = EMPTY_VIEW
    this.len = 0
    this.frames = 0
    return out
  }

  /** The bytes take() returned were copied by the kernel (nothing holds them): reuse the buffer. */
  written (): void {
    const lent = this.lent
    this.lent = undefined
    if (lent === undefined || this.len !== 0) return
    this.buf = lent
    this.view = this.lentView
  }

  /** Writes the header, returns where the meta starts. */
  private open (type: number, id: number, metaLen: number, payloadLen: number): number {
    const rest = 1 + 4 + 4 + metaLen + payloadLen
    if (rest > this.maxBytes) throw new FrameTooLargeError(`frame of ${rest} bytes exceeds the ${this.maxBytes} byte limit`)
    const need = this.len + 4 + rest
    if (need > this.buf.byteLength) {
      const grown = new Uint8Array(Math.max(need, this.hint, this.buf.byteLength * 2))
      grown.set(this.buf.subarray(0, this.len))
      this.buf = grown
      this.view = new DataView(grown.buffer)
    }
    const at = this.len
    this.view.setUint32(at, rest)
    this.buf[at + 4] = type
    this.view.setUint32(at + 5, id)
    this.view.setUint32(at + 9, metaLen)
    this.len = need
    this.frames++
    return at + HEADER_BYTES
  }
}

/** Incremental decoder: push socket chunks, get whole frames. Copies only frames split across chunks. */
export class FrameDecoder {
  private buf: Uint8Array = EMPTY
  private readonly maxBytes: number

  constructor (maxBytes = MAX_FRAME_BYTES) {
    this.maxBytes = maxBytes
  }

  /** The whole frames so far, as a list (tests, and callers that want one). */
  push (chunk: Uint8Array): Frame[] {
    const frames: Frame[] = []
    this.each(chunk, (type, id, meta, payload) => { frames.push({ type, id, meta, payload }) })
    return frames
  }

  /**
   * Hands each whole frame to `onFrame` as it is decoded, with no list or frame object per frame;
   * `onFrame` returning false stops the decoding (the rest of the chunk is dropped). A malformed
   * frame throws, after the frames before it were handed over.
   */
  each (chunk: Uint8Array, onFrame: (type: number, id: number, meta: any, payload: Uint8Array) => boolean | undefined | void): void {
    let buf: Uint8Array
    if (this.buf.byteLength === 0) {
      buf = chunk
    } else {
      buf = new Uint8Array(this.buf.byteLength + chunk.byteLength)
      buf.set(this.buf)
      buf.set(chunk, this.buf.byteLength)
    }
    let off = 0
    while (buf.byteLength - off >= 4) {
      const rest = u32(buf, off)
      if (rest > this.maxBytes) throw new FrameTooLargeError(`incoming frame of ${rest} bytes exceeds the ${this.maxBytes} byte limit`)
      if (rest < HEADER_BYTES - 4) throw new CapsidProtocolError(`frame of ${rest} bytes is shorter than its header`)
      if (buf.byteLength - off < 4 + rest) break
      const type = buf[off + 4]
      const id = u32(buf, off + 5)
      const metaLen = u32(buf, off + 9)
      if (metaLen > rest - 9) throw new CapsidProtocolError('frame meta length exceeds frame')
      const metaStart = off + HEADER_BYTES
      let meta: unknown
      if (type === FrameType.CALL || type === FrameType.STREAM) {
        meta = decodeCallMeta(buf.subarray(metaStart, metaStart + metaLen))
      } else if (metaLen > 0) {
        try {
          meta = JSON.parse(dec.decode(buf.subarray(metaStart, metaStart + metaLen)))
        } catch (err) {
          throw new CapsidProtocolError('frame meta is not JSON', { cause: err })
        }
      }
      // A plain Uint8Array view of the payload (no copy; a socket chunk is a Buffer, and a Buffer
      // subarray is a slower Buffer again), shared with the chunk.
      const payloadStart = metaStart + metaLen
      const payloadLen = off + 4 + rest - payloadStart
      const payload = payloadLen === 0 ? EMPTY : new Uint8Array(buf.buffer, buf.byteOffset + payloadStart, payloadLen)
      off += 4 + rest
      if (onFrame(type, id, meta, payload) === false) {
        this.buf = EMPTY
        return
      }
    }
    // Keep the unfinished tail; copy it so the big chunk it came from can be collected.
    this.buf = off === buf.byteLength ? EMPTY : Uint8Array.prototype.slice.call(buf, off)
  }
}
