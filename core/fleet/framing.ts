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
 * Yields each frame from `source`. Chunks are queued without copying and joined once per frame,
 * so many tiny chunks cost linear time; a declared length above `maxFrameBytes` fails before
 * any of the frame is buffered.
 */
export async function * decodeLengthPrefixed (source: AsyncIterable<StreamChunk>, maxFrameBytes: number): AsyncGenerator<Uint8Array> {
  const queue = new ChunkQueue()
  for await (const chunk of source) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    if (bytes.length > 0) queue.push(bytes)
    for (;;) {
      let length = 0
      let prefix = 0
      let complete = false
      while (prefix < queue.length && prefix < 5) {
        const b = queue.peek(prefix++)
        length += (b & 0x7f) * 2 ** (7 * (prefix - 1))
        if ((b & 0x80) === 0) { complete = true; break }
      }
      if (!complete) {
        if (prefix >= 5) throw new FleetSyncError('invalid length prefix')
        break
      }
      if (length > maxFrameBytes) throw new FleetSyncError(`frame of ${length} bytes exceeds ${maxFrameBytes}`)
      if (queue.length - prefix < length) break
      queue.take(prefix)
      yield queue.take(length)
    }
  }
  if (queue.length > 0) throw new FleetSyncError('stream ended inside a frame')
}

class ChunkQueue {
  private chunks: Uint8Array[] = []
  private head = 0
  length = 0

  push (bytes: Uint8Array): void {
    this.chunks.push(bytes)
    this.length += bytes.length
  }

  peek (index: number): number {
    for (let i = this.head; i < this.chunks.length; i++) {
      const c = this.chunks[i]
      if (index < c.length) return c[index]
      index -= c.length
    }
    throw new FleetSyncError('peek past end')
  }

  /** Removes `n` bytes from the front; a view when they lie in one chunk, else one copy. */
  take (n: number): Uint8Array {
    const first = this.chunks[this.head]
    let out: Uint8Array
    if (n === 0) out = new Uint8Array(0)
    else if (first.length >= n) {
      out = first.subarray(0, n)
      this.consumeFront(n)
    } else {
      out = new Uint8Array(n)
      let off = 0
      while (off < n) {
        const c = this.chunks[this.head]
        const k = Math.min(c.length, n - off)
        out.set(c.subarray(0, k), off)
        off += k
        this.consumeFront(k)
      }
    }
    return out
  }

  private consumeFront (k: number): void {
    const c = this.chunks[this.head]
    this.length -= k
    if (k < c.length) this.chunks[this.head] = c.subarray(k)
    else if (++this.head > 1024) {
      // Drop consumed slots now and then so the array stays small without shifting per chunk.
      this.chunks = this.chunks.slice(this.head)
      this.head = 0
    }
  }
}
