// Reading Noise's transport messages (a 2-byte big-endian length, then that many bytes) out of what
// the socket delivers. @chainsafe/libp2p-noise 17 reads them with @libp2p/utils' LengthPrefixedDecoder,
// which on every read keeps the bytes in a Uint8ArrayList, reads each length through a DataView
// over a fresh view, throws and catches a RangeError to find the end of the read, and hands Noise a
// list whenever a message spans two reads; Noise then copies that list twice (into the target it
// decrypts in place, and into the cipher's input). In the call path's profiles (issue 15) that was
// 4-5 % of a caller's busy time, and the copies 8 % of a one-way server's.
//
// This decoder yields every message as one Uint8Array: a view of the read when the message lies
// inside it, else one copy into a buffer of the message's exact size (at most 65,535 bytes, the
// most a 2-byte length can say). That is all it ever holds: one partial message, or one byte of a
// split length.
import type { MessageStream } from '@libp2p/interface'

/** The largest Noise transport message (the 2-byte length's limit). */
export const NOISE_MAX_MESSAGE_BYTES = 0xffff

export class NoiseMessageDecoder {
  /** A message split across reads, and how much of it has arrived. */
  private partial: Uint8Array | undefined
  private filled = 0
  /** The first byte of a length split across reads, or -1. */
  private lengthHigh = -1

  /** Bytes held for an incomplete message (or length). */
  get bufferedBytes (): number {
    return this.partial !== undefined ? this.filled : (this.lengthHigh >= 0 ? 1 : 0)
  }

  /** The complete messages in `data` (and what was held before it), in order; empty messages are skipped. */
  * decode (data: Uint8Array | Iterable<Uint8Array>): Generator<Uint8Array, void, undefined> {
    if (data instanceof Uint8Array) {
      yield * this.decodeOne(data)
    } else {
      for (const chunk of data) yield * this.decodeOne(chunk)
    }
  }

  private * decodeOne (chunk: Uint8Array): Generator<Uint8Array, void, undefined> {
    const n = chunk.length
    let off = 0
    if (this.partial !== undefined) {
      const partial = this.partial
      const take = Math.min(partial.length - this.filled, n)
      partial.set(take === n ? chunk : chunk.subarray(0, take), this.filled)
      this.filled += take
      if (this.filled < partial.length) return
      this.partial = undefined
      this.filled = 0
      off = take
      yield partial
    } else if (this.lengthHigh >= 0 && n > 0) {
      const length = (this.lengthHigh << 8) | chunk[0]
      this.lengthHigh = -1
      off = 1
      if (n - off < length) {
        this.hold(chunk, off, length)
        return
      }
      if (length > 0) yield chunk.subarray(off, off + length)
      off += length
    }
    while (off < n) {
      if (n - off < 2) {
        this.lengthHigh = chunk[off]
        return
      }
      const length = (chunk[off] << 8) | chunk[off + 1]
      off += 2
      if (n - off < length) {
        this.hold(chunk, off, length)
        return
      }
      if (length > 0) yield chunk.subarray(off, off + length)
      off += length
    }
  }

  private hold (chunk: Uint8Array, from: number, length: number): void {
    const partial = new Uint8Array(length)
    partial.set(chunk.subarray(from), 0)
    this.partial = partial
    this.filled = chunk.length - from
  }
}

/** What this module relies on in Noise's connection: its decoder, whose `decode` its message listener calls. */
interface NoiseDecoderHolder {
  decoder: { decode: (data: Uint8Array | Iterable<Uint8Array>) => Iterable<Uint8Array>, buffer?: unknown }
}

function holdsDecoder (c: unknown): c is NoiseDecoderHolder {
  const d = (c as { decoder?: { decode?: unknown } } | null)?.decoder
  return d != null && typeof d === 'object' && typeof d.decode === 'function'
}

/**
 * Gives Noise's secured connection this decoder in place of its own. Bytes the old one already
 * holds (none, normally: the swap follows the handshake at once) are carried over. A connection
 * not shaped as expected (another Noise version) is left as it is.
 */
export function useNoiseMessageDecoder (connection: MessageStream): void {
  if (!holdsDecoder(connection)) return
  const old = connection.decoder
  const held = old.buffer
  const decoder = new NoiseMessageDecoder()
  if (held !== undefined) {
    const bytes = held as { byteLength?: unknown, subarray?: () => Uint8Array }
    if (typeof bytes.byteLength !== 'number' || typeof bytes.subarray !== 'function') return
    // Only a partial message can be held there (whole ones were yielded): it goes on from its
    // length in the new decoder. A whole one would mean another shape: keep Noise's own decoder.
    if (bytes.byteLength > 0 && decoder.decode(bytes.subarray()).next().done !== true) return
  }
  connection.decoder = decoder
}
