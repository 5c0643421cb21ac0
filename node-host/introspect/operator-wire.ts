// The framing shared by the operator protocols (`/cell/logs/1`, `/cell/status/1`): the requester
// sends one request and closes its side; the server answers with length-prefixed JSON frames, the
// first of which says admitted or refused.
//   request  = version:u8 (1) chainLength:u16be chain body:utf8 JSON (≤ MAX_BODY_BYTES)
//   response = frames of varint length + utf8 JSON (each ≤ MAX_FRAME_BYTES); the first is
//              {"ok":true} or {"refused":"NotAuthorizedError","message":"…"}
// Every byte is bounded: the request, each frame, the time to read the request. Bodies are plain
// JSON checked field by field by each protocol before use.
import { logger } from '@libp2p/logger'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import { MAX_REQUEST_CHAIN_BYTES } from '../../core/fleet/peer-grant.ts'
import { encodeLengthPrefixed, decodeLengthPrefixed } from '../../core/fleet/index.ts'
import type { VerifiedChain } from '../../core/identity/index.ts'
import { NotAuthorizedError, type OperatorGate } from './operator-gate.ts'

const VERSION = 1
export const MAX_BODY_BYTES = 4096
const MAX_REQUEST_BYTES = 3 + MAX_REQUEST_CHAIN_BYTES + MAX_BODY_BYTES
/** Largest answer frame: a batch of log lines or one node's status. */
export const MAX_FRAME_BYTES = 256 * 1024
const READ_REQUEST_MS = 10_000

const log = logger('cell:introspect')

/** A request that is not one: wrong version, cut short, oversized, not JSON. */
export class MalformedOperatorRequestError extends CellError {
  static override readonly errorName = 'MalformedOperatorRequestError'
  static override readonly retry: RetryRule = 'never'
}
/** An answer that is not one: no first frame, an oversized frame, not JSON. */
export class MalformedOperatorAnswerError extends CellError {
  static override readonly errorName = 'MalformedOperatorAnswerError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

export type Json = Record<string, unknown>

export function encodeOperatorRequest (chain: Uint8Array, body: Json): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(body))
  if (chain.length > MAX_REQUEST_CHAIN_BYTES) throw new MalformedOperatorRequestError(`chain of ${chain.length} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  if (json.length > MAX_BODY_BYTES) throw new MalformedOperatorRequestError(`request of ${json.length} bytes exceeds ${MAX_BODY_BYTES}`)
  const out = new Uint8Array(3 + chain.length + json.length)
  out[0] = VERSION
  new DataView(out.buffer).setUint16(1, chain.length)
  out.set(chain, 3)
  out.set(json, 3 + chain.length)
  return out
}

export function decodeOperatorRequest (bytes: Uint8Array): { chain: Uint8Array, body: Json } {
  if (bytes.length < 3 || bytes[0] !== VERSION) throw new MalformedOperatorRequestError(`not an operator request of version ${VERSION}`)
  const chainLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(1)
  if (chainLength > MAX_REQUEST_CHAIN_BYTES) throw new MalformedOperatorRequestError(`chain of ${chainLength} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  if (bytes.length < 3 + chainLength) throw new MalformedOperatorRequestError('request cut short')
  if (bytes.length - 3 - chainLength > MAX_BODY_BYTES) throw new MalformedOperatorRequestError(`body exceeds ${MAX_BODY_BYTES} bytes`)
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(3 + chainLength)))
  } catch (err) {
    throw new MalformedOperatorRequestError('body is not UTF-8 JSON', { cause: err })
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new MalformedOperatorRequestError('body is not a JSON object')
  return { chain: bytes.subarray(3, 3 + chainLength), body: body as Json }
}

/** Reads the requester's side to its end: at most `maxBytes`, within `ms`. */
async function readRequest (stream: Stream, clock: Clock, ms: number): Promise<Uint8Array> {
  const timer = clock.setTimeout(() => { stream.abort(new MalformedOperatorRequestError(`no complete request within ${ms} ms`)) }, ms)
  const parts: Uint8Array[] = []
  let total = 0
  try {
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      total += bytes.byteLength
      if (total > MAX_REQUEST_BYTES) throw new MalformedOperatorRequestError(`request exceeds ${MAX_REQUEST_BYTES} bytes`)
      parts.push(bytes)
    }
  } finally {
    clock.clearTimeout(timer)
  }
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** Where an answer's frames go. */
export interface FrameSink { send: (frame: Json) => Promise<void> }

/** Writes JSON frames to a stream, waiting for the transport to drain when it asks. */
export class FrameWriter implements FrameSink {
  private readonly stream: Stream
  private readonly signal: AbortSignal

  constructor (stream: Stream, signal: AbortSignal) {
    this.stream = stream
    this.signal = signal
  }

  async send (frame: Json): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(frame))
    if (bytes.length > MAX_FRAME_BYTES) throw new MalformedOperatorAnswerError(`frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`)
    if (!this.stream.send(encodeLengthPrefixed(bytes))) await this.stream.onDrain({ signal: this.signal })
  }
}

export interface OperatorRequest {
  body: Json
  verified: VerifiedChain
  peer: string
  out: FrameSink
  /** Aborts when the requester goes away (its stream closes) or the node stops. */
  signal: AbortSignal
}

export interface ServeOperatorOptions {
  gate: OperatorGate
  /** The cell a request is about (checked by the gate), from its body; undefined: node-wide. */
  cellOf: (body: Json) => string | undefined
  stats?: { served: number, refused: number, malformed: number, failed: number }
  maxInboundStreams?: number
  clock?: Clock
}

/** Serves `protocol`: reads and gates each request, then hands it to `handle` to answer in frames. */
export async function serveOperatorProtocol (node: Libp2p, protocol: string, handle: (req: OperatorRequest) => Promise<void>, options: ServeOperatorOptions): Promise<void> {
  const stats = options.stats ?? { served: 0, refused: 0, malformed: 0, failed: 0 }
  const clock = options.clock ?? systemClock
  await node.handle(protocol, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const controller = new AbortController()
    const onClose = (): void => { controller.abort(new MalformedOperatorAnswerError('stream closed')) }
    stream.addEventListener('close', onClose)
    try {
      let request
      try {
        request = decodeOperatorRequest(await readRequest(stream, clock, READ_REQUEST_MS))
      } catch (err) {
        stats.malformed++
        log('malformed %s request from %s: %s', protocol, peer, (err as Error).message)
        stream.abort(err as Error)
        return
      }
      const out = new FrameWriter(stream, controller.signal)
      let cell: string | undefined
      let verified: VerifiedChain
      try {
        cell = options.cellOf(request.body)
        verified = await options.gate.check(request.chain, peer, cell, { signal: controller.signal })
      } catch (err) {
        if (!(err instanceof NotAuthorizedError) && !(err instanceof MalformedOperatorRequestError)) throw err
        if (err instanceof NotAuthorizedError) stats.refused++
        else stats.malformed++
        log('refused %s to %s: %s', protocol, peer, (err as Error).message)
        await out.send({ refused: (err as CellError).name, message: (err as Error).message.slice(0, 500) })
        await stream.close({ signal: AbortSignal.timeout(5_000) })
        return
      }
      await out.send({ ok: true })
      await handle({ body: request.body, verified, peer, out, signal: controller.signal })
      if (stream.writeStatus === 'writable') await stream.close({ signal: AbortSignal.timeout(5_000) })
      stats.served++
    } catch (err) {
      if (!controller.signal.aborted) {
        stats.failed++
        log('serving %s to %s failed: %s', protocol, peer, (err as Error).message)
      }
      stream.abort(err as Error)
    } finally {
      stream.removeEventListener('close', onClose)
      controller.abort()
    }
  }, { maxInboundStreams: options.maxInboundStreams ?? 32 })
}

/**
 * Sends one request to `peer` and yields the answer's frames after the first; a refusal throws
 * NotAuthorizedError (or the malformed-request error) with the server's message.
 */
export async function * openOperatorStream (node: Libp2p, peer: PeerId, protocol: string, chain: Uint8Array, body: Json, options: { signal?: AbortSignal } = {}): AsyncGenerator<Json> {
  const where = `${protocol} on …${peer.toString().slice(-6)}`
  const stream = await node.dialProtocol(peer, protocol, { signal: options.signal })
  const onAbort = (): void => { stream.abort(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted')) }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    stream.send(encodeOperatorRequest(chain, body))
    await stream.close({ signal: options.signal })
    let first = true
    for await (const frame of decodeLengthPrefixed(stream, MAX_FRAME_BYTES)) {
      let value: unknown
      try {
        value = JSON.parse(new TextDecoder().decode(frame))
      } catch (err) {
        throw new MalformedOperatorAnswerError(`${where}: a frame is not JSON`, { cause: err })
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedOperatorAnswerError(`${where}: a frame is not a JSON object`)
      const json = value as Json
      if (first) {
        first = false
        if (typeof json.refused === 'string') {
          const message = `${where}: ${String(json.message ?? '')}`
          if (json.refused === 'MalformedOperatorRequestError') throw new MalformedOperatorRequestError(message)
          throw new NotAuthorizedError(message)
        }
        if (json.ok !== true) throw new MalformedOperatorAnswerError(`${where}: no admission frame`)
        continue
      }
      yield json
    }
    if (first) throw new MalformedOperatorAnswerError(`${where}: closed without an answer`)
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    // The consumer stopped early (return()): nothing more will be read.
    if (stream.status === 'open') stream.abort(new MalformedOperatorAnswerError(`${where}: reader stopped`))
  }
}
