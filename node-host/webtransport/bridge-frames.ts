// The framed protocol between a full node and its WebTransport sidecar (a Deno process), over one
// Unix socket. Runtime-agnostic (no node:*, no Deno): both sides import this file.
//
// Every frame is a 13-byte header then a payload:
//   type u8 | session u32 | stream u32 | length u32 | payload (length bytes, at most MAX_PAYLOAD_BYTES)
// Control frames (config, listening, certs, rejected) use session 0 and carry UTF-8 JSON.
// Streams are numbered per session: the sidecar numbers the streams a browser opens from 1 upwards
// (below NODE_STREAM_BIT), the node numbers the streams it opens with NODE_STREAM_BIT set, so the two
// never collide. Data flows only against credit: each side starts with INITIAL_CREDIT_BYTES per
// stream and direction, and a `credit` frame (payload: u32 bytes) grants more once the receiver has
// passed data on. A frame over the limit, of an unknown type or breaking credit is a protocol error.
import { CellError, type RetryRule } from '../../core/errors.ts'

export const HEADER_BYTES = 13
export const MAX_PAYLOAD_BYTES = 64 * 1024
export const INITIAL_CREDIT_BYTES = 256 * 1024
export const NODE_STREAM_BIT = 0x8000_0000

export const FRAME = {
  /** node → sidecar: JSON {@link SidecarConfig}; the first frame on the socket. */
  config: 0x01,
  /** sidecar → node: JSON `{ port }` once the QUIC endpoint listens. */
  listening: 0x02,
  /** node → sidecar: JSON `{ cert, key }` (PEM) to serve from now on (rotation). */
  certs: 0x03,
  /** sidecar → node: JSON `{ reason }` for a session refused before it reached the node (wrong path, limits). */
  rejected: 0x04,
  /** sidecar → node: a WebTransport session on the libp2p path; JSON `{ remote }` (ip:port). */
  sessionOpen: 0x10,
  /** either way: the session ended (sidecar) or must end (node); JSON `{ code, reason }`. */
  sessionClose: 0x11,
  /** either way: a new bidirectional stream in that session. */
  streamOpen: 0x20,
  /** either way: stream bytes, within the receiver's credit. */
  data: 0x21,
  /** either way: the sender will write no more on that stream. */
  fin: 0x22,
  /** either way: the stream is aborted in both directions. */
  reset: 0x23,
  /** either way: payload u32, more bytes the sender of this frame accepts on that stream. */
  credit: 0x24
} as const

export type FrameType = typeof FRAME[keyof typeof FRAME]
const TYPES = new Set<number>(Object.values(FRAME))

export interface Frame {
  type: FrameType
  session: number
  stream: number
  payload: Uint8Array
}

export interface SidecarConfig {
  host: string
  port: number
  cert: string
  key: string
  /** Sessions the sidecar accepts at once; more are refused (and reported as `rejected`). */
  maxSessions: number
  /** Bidirectional streams a browser may open at once in one session (QUIC flow control enforces it). */
  maxStreamsPerSession: number
}

/** The bytes from the other side of the bridge break the framing: the bridge is closed and restarted. */
export class BridgeFrameError extends CellError {
  static override readonly errorName = 'BridgeFrameError'
  static override readonly retry: RetryRule = 'never'
}

export function encodeFrame (type: FrameType, session: number, stream: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.byteLength > MAX_PAYLOAD_BYTES) throw new BridgeFrameError(`frame payload of ${payload.byteLength} bytes is over ${MAX_PAYLOAD_BYTES}`)
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, type)
  view.setUint32(1, session >>> 0)
  view.setUint32(5, stream >>> 0)
  view.setUint32(9, payload.byteLength)
  out.set(payload, HEADER_BYTES)
  return out
}

export function encodeJson (type: FrameType, session: number, value: unknown): Uint8Array {
  return encodeFrame(type, session, 0, new TextEncoder().encode(JSON.stringify(value)))
}

export function encodeCredit (session: number, stream: number, bytes: number): Uint8Array {
  const p = new Uint8Array(4)
  new DataView(p.buffer).setUint32(0, bytes >>> 0)
  return encodeFrame(FRAME.credit, session, stream, p)
}

export function creditOf (frame: Frame): number {
  if (frame.payload.byteLength !== 4) throw new BridgeFrameError(`credit frame with ${frame.payload.byteLength} payload bytes, not 4`)
  return new DataView(frame.payload.buffer, frame.payload.byteOffset, 4).getUint32(0)
}

/** A control frame's JSON payload as an object, or a BridgeFrameError. */
export function jsonOf (frame: Frame): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.payload))
  } catch (err) {
    throw new BridgeFrameError(`frame 0x${frame.type.toString(16)} does not carry JSON`, { cause: err })
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BridgeFrameError(`frame 0x${frame.type.toString(16)} does not carry a JSON object`)
  return value as Record<string, unknown>
}

/**
 * Cuts a byte stream into frames. Holds at most one partial frame (header + MAX_PAYLOAD_BYTES);
 * a bad header throws BridgeFrameError and the decoder stays failed.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private buffered = 0
  private failed: BridgeFrameError | undefined

  /** Feeds bytes; returns the complete frames they finish (payloads are copies, safe to keep). */
  push (bytes: Uint8Array): Frame[] {
    if (this.failed !== undefined) throw this.failed
    if (bytes.byteLength > 0) { this.chunks.push(bytes); this.buffered += bytes.byteLength }
    const frames: Frame[] = []
    while (this.buffered >= HEADER_BYTES) {
      const header = this.peek(HEADER_BYTES)
      const view = new DataView(header.buffer, header.byteOffset, HEADER_BYTES)
      const type = view.getUint8(0)
      const length = view.getUint32(9)
      if (!TYPES.has(type)) return this.fail(`unknown frame type 0x${type.toString(16)}`)
      if (length > MAX_PAYLOAD_BYTES) return this.fail(`frame of ${length} bytes is over ${MAX_PAYLOAD_BYTES}`)
      if (this.buffered < HEADER_BYTES + length) break
      const whole = this.take(HEADER_BYTES + length)
      frames.push({ type: type as FrameType, session: view.getUint32(1), stream: view.getUint32(5), payload: whole.slice(HEADER_BYTES) })
    }
    return frames
  }

  /** Bytes held for a frame not complete yet (bounded by HEADER_BYTES + MAX_PAYLOAD_BYTES + the last chunk). */
  get bufferedBytes (): number { return this.buffered }

  private fail (message: string): never {
    this.failed = new BridgeFrameError(message)
    this.chunks = []
    this.buffered = 0
    throw this.failed
  }

  private peek (n: number): Uint8Array {
    if (this.chunks[0].byteLength >= n) return this.chunks[0].subarray(0, n)
    const joined = this.join()
    return joined.subarray(0, n)
  }

  private take (n: number): Uint8Array {
    if (this.chunks[0].byteLength < n) this.join()
    const first = this.chunks[0]
    const out = first.subarray(0, n)
    if (first.byteLength === n) this.chunks.shift()
    else this.chunks[0] = first.subarray(n)
    this.buffered -= n
    return out
  }

  private join (): Uint8Array {
    const joined = new Uint8Array(this.buffered)
    let at = 0
    for (const c of this.chunks) { joined.set(c, at); at += c.byteLength }
    this.chunks = [joined]
    return joined
  }
}
