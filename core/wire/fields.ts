import { MalformedFrameError } from './errors.ts'
import { varintLength, writeVarint } from './varint.ts'

// Control payloads (HELLO, HELLO_ACK, REJECT, ERROR, CREDIT) are a fixed sequence of fields:
// varints, and byte strings prefixed with their varint length. Only control frames use these,
// so clarity wins over speed here.

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

export type Field = number | string | Uint8Array

export function encodeFields (fields: Field[]): Uint8Array {
  const parts: Array<number | Uint8Array> = fields.map(f => typeof f === 'string' ? utf8Encoder.encode(f) : f)
  let size = 0
  for (const p of parts) size += typeof p === 'number' ? varintLength(p) : varintLength(p.length) + p.length
  const out = new Uint8Array(size)
  let o = 0
  for (const p of parts) {
    if (typeof p === 'number') {
      o = writeVarint(out, o, p)
    } else {
      o = writeVarint(out, o, p.length)
      out.set(p, o)
      o += p.length
    }
  }
  return out
}

/** Sequential reader; every read checks bounds and throws MalformedFrameError. */
export class FieldReader {
  private readonly buf: Uint8Array
  private pos = 0

  constructor (buf: Uint8Array) {
    this.buf = buf
  }

  get remaining (): number {
    return this.buf.length - this.pos
  }

  varint (): number {
    let value = 0
    let shift = 1
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.buf.length) throw new MalformedFrameError('payload ends inside a varint')
      const b = this.buf[this.pos++]
      value += (b & 0x7f) * shift
      if ((b & 0x80) === 0) return value
      shift *= 128
    }
    throw new MalformedFrameError('varint longer than 5 bytes')
  }

  bytes (maxBytes: number): Uint8Array {
    const len = this.varint()
    if (len > maxBytes) throw new MalformedFrameError(`field of ${len} bytes exceeds ${maxBytes}`)
    if (this.pos + len > this.buf.length) throw new MalformedFrameError('field overruns the payload')
    const out = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return out
  }

  string (maxBytes: number): string {
    const bytes = this.bytes(maxBytes)
    try {
      return utf8Decoder.decode(bytes)
    } catch (err) {
      throw new MalformedFrameError('field is not valid UTF-8', { cause: err })
    }
  }

  /** Optional trailing varint: later protocol versions may append fields. */
  optionalVarint (fallback: number): number {
    return this.remaining > 0 ? this.varint() : fallback
  }
}
