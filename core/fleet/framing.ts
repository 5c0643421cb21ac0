// Unsigned-varint length-prefixed frames over a libp2p message stream. Written here (a dozen
// lines) rather than importing it-length-prefixed, which is only a transitive dependency.
import { FleetSyncError } from './errors.ts'

/** Stream chunks are Uint8Array or Uint8ArrayList; both expose `subarray()` returning contiguous bytes. */
export type StreamChunk = Uint8Array | { subarray: () => Uint8Array }

export function encodeLengthPrefixed (frame: Uint8Array): Uint8Array {
  const prefix: number[] = []
  let n = frame.length
  while (n >= 0x80) { prefix.push((n & 0x7f) | 0x80); n >>>= 7 }
  prefix.push(n)
  const out = new Uint8Array(prefix.length + frame.length)
  out.set(prefix, 0)
  out.set(frame, prefix.length)
  return out
}

/**
 * Yields each frame from `source`. Buffers at most one frame plus its prefix: a declared length
 * above `maxFrameBytes` fails before any of it is read.
 */
export async function * decodeLengthPrefixed (source: AsyncIterable<StreamChunk>, maxFrameBytes: number): AsyncGenerator<Uint8Array> {
  let buf: Uint8Array = new Uint8Array(0)
  for await (const chunk of source) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    if (buf.length === 0) buf = bytes
    else {
      const joined = new Uint8Array(buf.length + bytes.length)
      joined.set(buf, 0)
      joined.set(bytes, buf.length)
      buf = joined
    }
    for (;;) {
      let length = 0
      let shift = 0
      let offset = 0
      let complete = false
      while (offset < buf.length && offset < 5) {
        const b = buf[offset++]
        length += (b & 0x7f) * 2 ** shift
        shift += 7
        if ((b & 0x80) === 0) { complete = true; break }
      }
      if (!complete) {
        if (offset >= 5) throw new FleetSyncError('invalid length prefix')
        break
      }
      if (length > maxFrameBytes) throw new FleetSyncError(`frame of ${length} bytes exceeds ${maxFrameBytes}`)
      if (buf.length - offset < length) break
      yield buf.subarray(offset, offset + length)
      buf = buf.subarray(offset + length)
    }
    if (buf.length > maxFrameBytes + 5) throw new FleetSyncError('frame buffer overflow')
  }
  if (buf.length > 0) throw new FleetSyncError('stream ended inside a frame')
}
