// Deterministic, bounded binary primitives for identity records. Every field is fixed width or
// length-prefixed, integers are big-endian, strings are UTF-8 and validated on decode, and any
// truncation, overflow or trailing byte is a MalformedRecordError. Because encoding is canonical,
// a decoded record re-encodes to the exact bytes that were signed.
import { MalformedRecordError } from './errors.ts'

const HEX = '0123456789abcdef'
const HEX_RE = /^[0-9a-f]*$/
// Names, versions and reasons end up in logs and CLI output: no terminal control sequences.
const CONTROL_RE = /[\u0000-\u001f\u007f]/
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export function toHex (bytes: Uint8Array): string {
  let out = ''
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i] >> 4] + HEX[bytes[i] & 15]
  return out
}

/** Strict lowercase hex of an exact byte length; anything else is a MalformedRecordError. */
export function fromHex (hex: string, length: number, what: string): Uint8Array {
  if (typeof hex !== 'string' || hex.length !== length * 2 || !HEX_RE.test(hex)) {
    throw new MalformedRecordError(`${what} must be ${length * 2} lowercase hex characters`)
  }
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

export function concatBytes (parts: Uint8Array[]): Uint8Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const p of parts) { out.set(p, offset); offset += p.length }
  return out
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i]
  return diff === 0
}

export function utf8 (s: string): Uint8Array {
  return encoder.encode(s)
}

const TWO_32 = 0x1_0000_0000

/** Growable writer; callers encode small records so a simple chunk list is enough. */
export class Writer {
  private readonly parts: Uint8Array[] = []

  u8 (n: number): this {
    this.parts.push(Uint8Array.of(n & 0xff))
    return this
  }

  /** Non-negative safe integer as 8 bytes big-endian (ms timestamps, sequence numbers). */
  u64 (n: number, what: string): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new MalformedRecordError(`${what} must be a non-negative safe integer`)
    const b = new Uint8Array(8)
    const v = new DataView(b.buffer)
    v.setUint32(0, Math.floor(n / TWO_32))
    v.setUint32(4, n >>> 0)
    this.parts.push(b)
    return this
  }

  fixed (bytes: Uint8Array, length: number, what: string): this {
    if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new MalformedRecordError(`${what} must be ${length} bytes`)
    this.parts.push(bytes)
    return this
  }

  /** u8 length prefix, then bytes; length must be within [min, max] with max <= 255. */
  bytes8 (bytes: Uint8Array, min: number, max: number, what: string): this {
    if (bytes.length < min || bytes.length > max) throw new MalformedRecordError(`${what} must be ${min}..${max} bytes`)
    this.u8(bytes.length)
    this.parts.push(bytes)
    return this
  }

  string8 (s: string, min: number, max: number, what: string): this {
    if (typeof s !== 'string' || CONTROL_RE.test(s)) throw new MalformedRecordError(`${what} must be a string without control characters`)
    return this.bytes8(utf8(s), min, max, what)
  }

  /** u16 length prefix, then bytes. */
  bytes16 (bytes: Uint8Array, max: number, what: string): this {
    if (bytes.length > max || bytes.length > 0xffff) throw new MalformedRecordError(`${what} must be at most ${max} bytes`)
    this.parts.push(Uint8Array.of(bytes.length >> 8, bytes.length & 0xff))
    this.parts.push(bytes)
    return this
  }

  finish (): Uint8Array {
    return concatBytes(this.parts)
  }
}

/** Cursor over untrusted bytes; every read is bounds-checked and throws MalformedRecordError. */
export class Reader {
  private offset = 0
  private readonly buf: Uint8Array
  private readonly what: string

  constructor (buf: Uint8Array, what: string) {
    if (!(buf instanceof Uint8Array)) throw new MalformedRecordError(`${what}: expected bytes`)
    this.buf = buf
    this.what = what
  }

  get remaining (): number {
    return this.buf.length - this.offset
  }

  get position (): number {
    return this.offset
  }

  fail (reason: string, cause?: unknown): never {
    throw new MalformedRecordError(`${this.what}: ${reason} at byte ${this.offset}`, { cause })
  }

  take (length: number): Uint8Array {
    if (length > this.remaining) this.fail(`truncated, need ${length} bytes, have ${this.remaining}`)
    const out = this.buf.subarray(this.offset, this.offset + length)
    this.offset += length
    return out
  }

  /** A detached plain Uint8Array: never a view of the input, never a Node byte-buffer subclass. */
  copy (length: number): Uint8Array {
    return new Uint8Array(this.take(length))
  }

  u8 (): number {
    return this.take(1)[0]
  }

  u16 (): number {
    const b = this.take(2)
    return (b[0] << 8) | b[1]
  }

  u64 (field: string): number {
    const b = this.take(8)
    const v = new DataView(b.buffer, b.byteOffset, 8)
    const hi = v.getUint32(0)
    // Above 2^53 - 1 the number would silently lose precision, so reject it.
    if (hi > 0x1f_ffff) this.fail(`${field} exceeds the safe integer range`)
    return hi * TWO_32 + v.getUint32(4)
  }

  bytes8 (min: number, max: number, field: string): Uint8Array {
    const length = this.u8()
    if (length < min || length > max) this.fail(`${field} length ${length} outside ${min}..${max}`)
    return this.take(length)
  }

  string8 (min: number, max: number, field: string): string {
    const raw = this.bytes8(min, max, field)
    try {
      const s = decoder.decode(raw)
      if (!CONTROL_RE.test(s)) return s
    } catch (err) {
      return this.fail(`${field} is not valid UTF-8`, err)
    }
    return this.fail(`${field} contains control characters`)
  }

  bytes16 (max: number, field: string): Uint8Array {
    const length = this.u16()
    if (length > max) this.fail(`${field} length ${length} exceeds ${max}`)
    return this.take(length)
  }

  /** Records are exact: trailing bytes mean a different (or forged) encoding. */
  end (): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} trailing bytes`)
  }
}
