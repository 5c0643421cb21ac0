import { FrameTooLargeError, MalformedFrameError } from './errors.ts'
import {
  DEFAULT_MAX_FRAME_BYTES, FLAG_METHOD, FLAG_METHOD_NAME, FLAG_TIMEOUT, FLAG_TRACE, FLAG_TRACE_REPEAT,
  MAX_FRAME_TYPE, MAX_METHOD_NAME_BYTES, MAX_TRACEPARENT_BYTES, RESERVED_FLAGS
} from './frame.ts'
import type { Frame } from './frame.ts'
import { MAX_VARINT_BYTES } from './varint.ts'

export interface FrameDecoderInit {
  /** Largest frame accepted (prefix included). Default 1 MiB. */
  maxFrameBytes?: number
}

/** Anything iterable over Uint8Array chunks (e.g. a Uint8ArrayList) or a single chunk. */
export type Chunk = Uint8Array | Iterable<Uint8Array>

const utf8 = new TextDecoder('utf-8', { fatal: true })

// Streaming decoder. Whole frames inside a chunk are parsed in place with subarray; only a frame
// split across chunks is copied, into a buffer sized exactly from its length prefix (which the
// limit was checked against first). After an error the decoder stays failed: the byte stream has
// lost framing and nothing after it can be trusted.
export class FrameDecoder {
  readonly maxFrameBytes: number
  private readonly onFrame: (frame: Frame) => void
  private readonly frame: Frame = {
    type: 0, flags: 0, id: 0, method: -1, methodName: undefined, timeoutMs: -1, traceparent: undefined, payload: new Uint8Array(0)
  }

  /** Partial body of a split frame, and how much of it has arrived. */
  private partial: Uint8Array | null = null
  private filled = 0
  /** Bytes of a length prefix split across chunks. */
  private readonly prefix = new Uint8Array(MAX_VARINT_BYTES)
  private prefixLength = 0
  private failure: Error | null = null
  /**
   * The last two traceparents and their bytes: a caller's unsampled traceparent repeats, broken by
   * a sampled call's own now and then, so most frames skip the UTF-8 decode and the copy, and the
   * unsampled one comes back as the same string after a sampled call.
   */
  private lastTrace = ''
  private lastTraceBytes = new Uint8Array(0)
  private prevTrace = ''
  private prevTraceBytes = new Uint8Array(0)
  /** The traceparent of the last frame that carried one (what FLAG_TRACE_REPEAT names); undefined before any. */
  private seenTrace: string | undefined

  private traceparent (buf: Uint8Array, p: number, len: number): string {
    if (len > 0 && sameBytes(this.lastTraceBytes, buf, p, len)) return this.lastTrace
    const text = len > 0 && sameBytes(this.prevTraceBytes, buf, p, len) ? this.prevTrace : decodeUtf8(buf.subarray(p, p + len), 'traceparent')
    const bytes = text === this.prevTrace ? this.prevTraceBytes : buf.slice(p, p + len)
    this.prevTrace = this.lastTrace
    this.prevTraceBytes = this.lastTraceBytes
    this.lastTrace = text
    this.lastTraceBytes = bytes
    return text
  }

  constructor (onFrame: (frame: Frame) => void, init: FrameDecoderInit = {}) {
    this.onFrame = onFrame
    this.maxFrameBytes = init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes (): number {
    return this.partial === null ? this.prefixLength : this.filled
  }

  /** Feeds bytes; calls onFrame synchronously per complete frame. Throws the named errors. */
  push (chunk: Chunk): void {
    if (this.failure !== null) throw this.failure
    try {
      if (chunk instanceof Uint8Array) this.pushOne(chunk)
      else for (const c of chunk) this.pushOne(c)
    } catch (err) {
      if (err instanceof FrameTooLargeError || err instanceof MalformedFrameError) this.failure = err
      throw err
    }
  }

  private pushOne (chunk: Uint8Array): void {
    // Frames are views of the chunk. A subclass's view (a Node Buffer's) is built by its own
    // constructor, in JavaScript, per frame: about 5 % of a one-way server's busy time (issue 15).
    // A plain Uint8Array over the same bytes costs one object per chunk instead.
    if (chunk.constructor !== Uint8Array) chunk = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    const n = chunk.length
    let off = 0
    if (this.partial !== null) {
      const partial = this.partial
      const take = Math.min(partial.length - this.filled, n)
      partial.set(take === n ? chunk : chunk.subarray(0, take), this.filled)
      this.filled += take
      if (this.filled < partial.length) return
      this.partial = null
      this.filled = 0
      off = take
      this.parseBody(partial, 0, partial.length)
    } else if (this.prefixLength > 0) {
      let done = false
      while (off < n && !done) {
        const b = chunk[off++]
        this.prefix[this.prefixLength++] = b
        done = (b & 0x80) === 0
        if (!done && this.prefixLength === MAX_VARINT_BYTES) throw new MalformedFrameError('frame length prefix longer than 5 bytes')
      }
      if (!done) return
      const bodyBytes = readPrefix(this.prefix, this.prefixLength)
      const prefixBytes = this.prefixLength
      this.prefixLength = 0
      this.checkSize(bodyBytes, prefixBytes)
      if (n - off >= bodyBytes) {
        this.parseBody(chunk, off, off + bodyBytes)
        off += bodyBytes
      } else {
        this.startPartial(chunk, off, bodyBytes)
        return
      }
    }
    while (off < n) {
      // Inline varint read of the length prefix: this loop runs once per frame.
      let p = off
      let bodyBytes = 0
      let shift = 1
      let b = 0x80
      while (p < n) {
        b = chunk[p++]
        bodyBytes += (b & 0x7f) * shift
        if ((b & 0x80) === 0) break
        shift *= 128
        if (p - off === MAX_VARINT_BYTES) throw new MalformedFrameError('frame length prefix longer than 5 bytes')
      }
      if ((b & 0x80) !== 0) {
        // Prefix itself is split: keep its bytes for the next chunk.
        this.prefix.set(chunk.subarray(off, n), 0)
        this.prefixLength = n - off
        return
      }
      this.checkSize(bodyBytes, p - off)
      if (n - p >= bodyBytes) {
        off = p + bodyBytes
        this.parseBody(chunk, p, off)
      } else {
        this.startPartial(chunk, p, bodyBytes)
        return
      }
    }
  }

  private startPartial (chunk: Uint8Array, from: number, bodyBytes: number): void {
    const partial = new Uint8Array(bodyBytes)
    partial.set(chunk.subarray(from), 0)
    this.partial = partial
    this.filled = chunk.length - from
  }

  private checkSize (bodyBytes: number, prefixBytes: number): void {
    if (bodyBytes + prefixBytes > this.maxFrameBytes) {
      throw new FrameTooLargeError(`frame of ${bodyBytes + prefixBytes} bytes exceeds the limit of ${this.maxFrameBytes}`)
    }
    if (bodyBytes < 3) throw new MalformedFrameError(`frame body of ${bodyBytes} bytes is shorter than a header`)
  }

  private parseBody (buf: Uint8Array, start: number, end: number): void {
    const f = this.frame
    let p = start
    const type = buf[p++]
    const flags = buf[p++]
    if (type === 0 || type > MAX_FRAME_TYPE) throw new MalformedFrameError(`unknown frame type ${type}`)
    if ((flags & RESERVED_FLAGS) !== 0) throw new MalformedFrameError(`reserved flag bits set: 0x${flags.toString(16)}`)
    f.type = type
    f.flags = flags
    // Fast path for the common id-only / id+method headers with single-byte varints.
    let v = buf[p]
    if (v < 0x80) { f.id = v; p++ } else { p = this.varint(buf, p, end); f.id = this.value }
    if ((flags & FLAG_METHOD) !== 0) {
      if (p >= end) throw new MalformedFrameError('frame ends inside its header')
      v = buf[p]
      if (v < 0x80) { f.method = v; p++ } else { p = this.varint(buf, p, end); f.method = this.value }
    } else {
      f.method = -1
    }
    if ((flags & FLAG_METHOD_NAME) !== 0) {
      p = this.varint(buf, p, end)
      const len = this.value
      if (len > MAX_METHOD_NAME_BYTES || p + len > end) throw new MalformedFrameError('method name overruns the frame or the name limit')
      f.methodName = decodeUtf8(buf.subarray(p, p + len), 'method name')
      p += len
    } else {
      f.methodName = undefined
    }
    if ((flags & FLAG_TIMEOUT) !== 0) {
      p = this.varint(buf, p, end)
      f.timeoutMs = this.value
    } else {
      f.timeoutMs = -1
    }
    if ((flags & FLAG_TRACE) !== 0) {
      p = this.varint(buf, p, end)
      const len = this.value
      if (len > MAX_TRACEPARENT_BYTES || p + len > end) throw new MalformedFrameError('traceparent overruns the frame or its limit')
      if ((flags & FLAG_TRACE_REPEAT) !== 0) throw new MalformedFrameError('traceparent both sent and repeated')
      f.traceparent = this.traceparent(buf, p, len)
      this.seenTrace = f.traceparent
      p += len
    } else if ((flags & FLAG_TRACE_REPEAT) !== 0) {
      if (this.seenTrace === undefined) throw new MalformedFrameError('traceparent repeated before any was sent')
      f.traceparent = this.seenTrace
    } else {
      f.traceparent = undefined
    }
    if (p > end) throw new MalformedFrameError('frame ends inside its header')
    f.payload = buf.subarray(p, end)
    this.onFrame(f)
  }

  /** Result of the last varint() call (kept on the instance to avoid returning a tuple). */
  private value = 0

  private varint (buf: Uint8Array, p: number, end: number): number {
    let value = 0
    let shift = 1
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (p >= end) throw new MalformedFrameError('frame ends inside a varint')
      const b = buf[p++]
      value += (b & 0x7f) * shift
      if ((b & 0x80) === 0) {
        if (value > 0xffff_ffff) throw new MalformedFrameError('varint exceeds 32 bits')
        this.value = value
        return p
      }
      shift *= 128
    }
    throw new MalformedFrameError('varint longer than 5 bytes')
  }
}

function readPrefix (bytes: Uint8Array, length: number): number {
  let value = 0
  let shift = 1
  for (let i = 0; i < length; i++) {
    value += (bytes[i] & 0x7f) * shift
    shift *= 128
  }
  return value
}

/** Whether `bytes` equals `buf[p, p + len)`. */
function sameBytes (bytes: Uint8Array, buf: Uint8Array, p: number, len: number): boolean {
  if (bytes.length !== len) return false
  for (let i = 0; i < len; i++) if (bytes[i] !== buf[p + i]) return false
  return true
}

function decodeUtf8 (bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes)
  } catch (err) {
    throw new MalformedFrameError(`${what} is not valid UTF-8`, { cause: err })
  }
}

/** Decodes every complete frame in `bytes` into fresh objects (tests and tools; not the hot path). */
export function decodeFrames (bytes: Uint8Array, init: FrameDecoderInit = {}): Frame[] {
  const out: Frame[] = []
  const decoder = new FrameDecoder((f) => { out.push({ ...f }) }, init)
  decoder.push(bytes)
  if (decoder.bufferedBytes > 0) throw new MalformedFrameError(`${decoder.bufferedBytes} trailing bytes do not form a frame`)
  return out
}
