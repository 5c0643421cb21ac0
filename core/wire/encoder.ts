import { FrameTooLargeError } from './errors.ts'
import {
  DEFAULT_MAX_FRAME_BYTES, FLAG_METHOD, FLAG_METHOD_NAME, FLAG_TIMEOUT, FLAG_TRACE, FLAG_TRACE_REPEAT,
  MAX_METHOD_NAME_BYTES, MAX_TRACEPARENT_BYTES
} from './frame.ts'
import type { FrameInit } from './frame.ts'
import { MAX_U32, varintLength, writeVarint } from './varint.ts'
import { utf8Bytes } from './utf8.ts'

export interface FrameEncoderInit {
  /** Largest frame (prefix included) this encoder will produce. Default 1 MiB. */
  maxFrameBytes?: number
  /** Size of each slab frames are written into. Default 256 KiB. */
  slabBytes?: number
  /** Most distinct strings whose UTF-8 form is cached (method names). Default 256. */
  maxCachedStrings?: number
}

const EMPTY: Uint8Array = new Uint8Array(0)
const utf8 = new TextEncoder()

/** Traceparents (W3C, ASCII, 55 characters) are encoded by hand (utf8Bytes). */
const TRACE_BY_HAND = 64

// Frames are written back to back into a slab; take() hands out a view of everything written
// since the last take() and later frames continue after it. A slab is never rewritten, so a view
// handed to a transport that queues it stays intact; a full slab is replaced, not reused. That
// keeps the per-frame cost at a few byte stores and makes many small frames one Uint8Array.
export class FrameEncoder {
  maxFrameBytes: number
  private readonly slabBytes: number
  private readonly maxCachedStrings: number
  private slab: Uint8Array
  private start = 0
  private pos = 0
  /** Views of earlier slabs not yet taken (only when a batch outgrows one slab). */
  private readonly chunks: Uint8Array[] = []
  private chunkBytes = 0
  private readonly strings = new Map<string, Uint8Array>()
  /** Frames written since the last take(). */
  pendingFrames = 0

  /** The last two traceparents encoded and their bytes (a caller's unsampled one, and a sampled call's now and then). */
  private lastTrace = ''
  private lastTraceBytes: Uint8Array = EMPTY
  private prevTrace = ''
  private prevTraceBytes: Uint8Array = EMPTY
  /** The traceparent of the last frame written with one: the next frame with the same one says FLAG_TRACE_REPEAT. */
  private sentTrace: string | undefined

  constructor (init: FrameEncoderInit = {}) {
    this.maxFrameBytes = init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    this.slabBytes = init.slabBytes ?? 256 * 1024
    this.maxCachedStrings = init.maxCachedStrings ?? 256
    this.slab = new Uint8Array(this.slabBytes)
  }

  /** Bytes written and not yet taken. */
  get pendingBytes (): number {
    return this.chunkBytes + this.pos - this.start
  }

  /**
   * The hot path: a frame with an id, an optional interned method id, an optional relative
   * timeout and a payload. Throws FrameTooLargeError (and writes nothing) above maxFrameBytes.
   */
  frame (type: number, id: number, payload: Uint8Array, method: number = -1, timeoutMs: number = -1, repeatTrace: boolean = false): void {
    // `repeatTrace`: the frame's traceparent is the last one sent (see repeatsTrace), no bytes of it.
    let flags = repeatTrace ? FLAG_TRACE_REPEAT : 0
    let body = 2 + varintLength(id) + payload.length
    if (method >= 0) { flags |= FLAG_METHOD; body += varintLength(method) }
    if (timeoutMs >= 0) {
      timeoutMs = timeoutMs > MAX_U32 ? MAX_U32 : Math.ceil(timeoutMs)
      flags |= FLAG_TIMEOUT
      body += varintLength(timeoutMs)
    }
    const total = varintLength(body) + body
    if (total > this.maxFrameBytes) {
      throw new FrameTooLargeError(`frame of ${total} bytes exceeds the limit of ${this.maxFrameBytes} bytes per call frame; stream larger data in smaller chunks`)
    }
    const buf = this.reserve(total)
    let p = writeVarint(buf, this.pos, body)
    buf[p++] = type
    buf[p++] = flags
    p = writeVarint(buf, p, id)
    if (method >= 0) p = writeVarint(buf, p, method)
    if (timeoutMs >= 0) p = writeVarint(buf, p, timeoutMs)
    if (payload.length > 0) buf.set(payload, p)
    this.pos = p + payload.length
    this.pendingFrames++
  }

  /** Whether a frame with this traceparent goes out as FLAG_TRACE_REPEAT (it is the last one sent). */
  repeatsTrace (traceparent: string): boolean {
    return traceparent === this.sentTrace
  }

  /** Any frame, with whichever optional header fields `init` sets. */
  encode (init: FrameInit): void {
    const id = init.id ?? 0
    const payload = init.payload ?? EMPTY
    let flags = 0
    let body = 2 + varintLength(id) + payload.length
    const method = init.method ?? -1
    if (method >= 0) {
      checkU32(method, 'method id')
      flags |= FLAG_METHOD
      body += varintLength(method)
    }
    let name: Uint8Array = EMPTY
    if (init.methodName !== undefined) {
      name = this.cachedUtf8(init.methodName)
      if (name.length > MAX_METHOD_NAME_BYTES) throw new FrameTooLargeError(`method name longer than ${MAX_METHOD_NAME_BYTES} bytes`)
      flags |= FLAG_METHOD_NAME
      body += varintLength(name.length) + name.length
    }
    const timeoutMs = init.timeoutMs ?? -1
    if (timeoutMs >= 0) {
      flags |= FLAG_TIMEOUT
      body += varintLength(Math.min(Math.ceil(timeoutMs), MAX_U32))
    }
    let trace: Uint8Array = EMPTY
    if (init.traceparent !== undefined && init.traceparent === this.sentTrace) {
      flags |= FLAG_TRACE_REPEAT
    } else if (init.traceparent !== undefined) {
      // A caller's unsampled traceparent repeats call after call, and comes back after each
      // sampled call: encode it once.
      if (init.traceparent !== this.lastTrace) {
        const bytes = init.traceparent === this.prevTrace ? this.prevTraceBytes : utf8Bytes(init.traceparent, TRACE_BY_HAND)
        this.prevTrace = this.lastTrace
        this.prevTraceBytes = this.lastTraceBytes
        this.lastTrace = init.traceparent
        this.lastTraceBytes = bytes
      }
      trace = this.lastTraceBytes
      if (trace.length > MAX_TRACEPARENT_BYTES) throw new FrameTooLargeError(`traceparent longer than ${MAX_TRACEPARENT_BYTES} bytes`)
      flags |= FLAG_TRACE
      body += varintLength(trace.length) + trace.length
    }
    checkU32(id, 'id')
    const total = varintLength(body) + body
    if (total > this.maxFrameBytes) {
      throw new FrameTooLargeError(`frame of ${total} bytes exceeds the limit of ${this.maxFrameBytes} bytes per call frame; stream larger data in smaller chunks`)
    }
    const buf = this.reserve(total)
    let p = writeVarint(buf, this.pos, body)
    buf[p++] = init.type
    buf[p++] = flags
    p = writeVarint(buf, p, id)
    if ((flags & FLAG_METHOD) !== 0) p = writeVarint(buf, p, method)
    if ((flags & FLAG_METHOD_NAME) !== 0) {
      p = writeVarint(buf, p, name.length)
      buf.set(name, p)
      p += name.length
    }
    if ((flags & FLAG_TIMEOUT) !== 0) p = writeVarint(buf, p, Math.min(Math.ceil(timeoutMs), MAX_U32))
    if ((flags & FLAG_TRACE) !== 0) {
      p = writeVarint(buf, p, trace.length)
      buf.set(trace, p)
      p += trace.length
      // Only now, with nothing left to throw: the decoder has this one once the frame is read.
      this.sentTrace = init.traceparent
    }
    buf.set(payload, p)
    this.pos = p + payload.length
    this.pendingFrames++
  }

  /** Everything written since the last take(), as one Uint8Array (empty when nothing). */
  take (): Uint8Array {
    let out: Uint8Array
    if (this.chunks.length === 0) {
      out = this.slab.subarray(this.start, this.pos)
    } else {
      // Only after a batch outgrew a slab (a saturated transport): one copy to keep the
      // promise of a single Uint8Array per batch.
      out = new Uint8Array(this.pendingBytes)
      let o = 0
      for (const c of this.chunks) { out.set(c, o); o += c.length }
      out.set(this.slab.subarray(this.start, this.pos), o)
      this.chunks.length = 0
      this.chunkBytes = 0
    }
    this.start = this.pos
    this.pendingFrames = 0
    return out
  }

  /** Drops everything not yet taken. */
  reset (): void {
    this.chunks.length = 0
    this.chunkBytes = 0
    this.start = this.pos
    this.pendingFrames = 0
  }

  private reserve (total: number): Uint8Array {
    if (this.slab.length - this.pos >= total) return this.slab
    if (this.pos > this.start) {
      const view = this.slab.subarray(this.start, this.pos)
      this.chunks.push(view)
      this.chunkBytes += view.length
    }
    this.slab = new Uint8Array(Math.max(this.slabBytes, total))
    this.start = 0
    this.pos = 0
    return this.slab
  }

  private cachedUtf8 (s: string): Uint8Array {
    let bytes = this.strings.get(s)
    if (bytes === undefined) {
      bytes = utf8.encode(s)
      if (this.strings.size < this.maxCachedStrings) this.strings.set(s, bytes)
    }
    return bytes
  }
}

function checkU32 (value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw new RangeError(`${what} ${value} is not an unsigned 32-bit integer`)
  }
}
