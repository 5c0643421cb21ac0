// Minimal deterministic byte writer/reader for the fleet codec. Deterministic means one encoding
// per value: minimal LEB128 varints, big-endian float64, length-prefixed UTF-8 strings, so a
// signature over the bytes is a signature over the value.
import { MalformedFleetRecordError } from './errors.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export class ByteWriter {
  private buf: Uint8Array
  private view: DataView
  private length = 0
  private readonly maxBytes: number

  constructor (maxBytes: number, initialBytes = 256) {
    this.maxBytes = maxBytes
    this.buf = new Uint8Array(Math.min(initialBytes, maxBytes))
    this.view = new DataView(this.buf.buffer)
  }

  private reserve (n: number): void {
    const need = this.length + n
    if (need > this.maxBytes) throw new MalformedFleetRecordError(`record exceeds ${this.maxBytes} bytes`)
    if (need <= this.buf.length) return
    const next = new Uint8Array(Math.min(this.maxBytes, Math.max(need, this.buf.length * 2)))
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }

  u8 (v: number): this {
    this.reserve(1)
    this.buf[this.length++] = v & 0xff
    return this
  }

  uvarint (v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new MalformedFleetRecordError('varint out of range')
    // Division instead of bit ops: values go up to 2^53, beyond 32-bit shifts.
    while (v >= 0x80) {
      this.u8((v % 0x80) | 0x80)
      v = Math.floor(v / 0x80)
    }
    return this.u8(v)
  }

  f64 (v: number): this {
    this.reserve(8)
    this.view.setFloat64(this.length, v, false)
    this.length += 8
    return this
  }

  bytes (b: Uint8Array, maxBytes: number): this {
    if (b.length > maxBytes) throw new MalformedFleetRecordError('byte field too long')
    this.uvarint(b.length)
    this.reserve(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  raw (b: Uint8Array): this {
    this.reserve(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  string (s: string, maxBytes: number): this {
    return this.bytes(encoder.encode(s), maxBytes)
  }

  get byteLength (): number {
    return this.length
  }

  finish (): Uint8Array {
    return this.buf.slice(0, this.length)
  }
}

export class ByteReader {
  private readonly buf: Uint8Array
  private readonly view: DataView
  private offset = 0

  constructor (buf: Uint8Array) {
    this.buf = buf
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  }

  private need (n: number): void {
    if (this.offset + n > this.buf.length) throw new MalformedFleetRecordError('truncated record')
  }

  u8 (): number {
    this.need(1)
    return this.buf[this.offset++]
  }

  uvarint (): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      value += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        // A trailing zero byte would be a second encoding of the same value.
        if (b === 0 && i > 0) throw new MalformedFleetRecordError('non-minimal varint')
        if (!Number.isSafeInteger(value)) throw new MalformedFleetRecordError('varint out of range')
        return value
      }
      scale *= 0x80
    }
    throw new MalformedFleetRecordError('varint too long')
  }

  f64 (): number {
    this.need(8)
    const v = this.view.getFloat64(this.offset, false)
    this.offset += 8
    return v
  }

  /** A view into the input (no copy); callers copy what they keep. */
  bytes (maxBytes: number): Uint8Array {
    const n = this.uvarint()
    if (n > maxBytes) throw new MalformedFleetRecordError('byte field too long')
    this.need(n)
    const out = this.buf.subarray(this.offset, this.offset + n)
    this.offset += n
    return out
  }

  string (maxBytes: number): string {
    const b = this.bytes(maxBytes)
    try {
      return decoder.decode(b)
    } catch (err) {
      throw new MalformedFleetRecordError('invalid utf-8', { cause: err })
    }
  }

  count (max: number, what: string): number {
    const n = this.uvarint()
    if (n > max) throw new MalformedFleetRecordError(`too many ${what}`)
    return n
  }

  get remaining (): number {
    return this.buf.length - this.offset
  }

  end (): void {
    if (this.offset !== this.buf.length) throw new MalformedFleetRecordError('trailing bytes')
  }
}
