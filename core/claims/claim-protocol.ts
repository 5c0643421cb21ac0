// `/cell/claim/1` over libp2p: one request frame and one answer frame per stream, each read to
// its end within a deadline and at most MAX_CLAIM_FRAME_BYTES. The stream's remote peer is the one
// Noise authenticated; the acceptor and the client check its host grant inside the frames.
//   serveClaimProtocol(node, acceptor)      the voter side
//   libp2pClaimTransport(node, { local })   the proposer side (`local`: this node's own acceptor)
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { AbortOptions, Connection, PeerId, Stream, StreamHandlerOptions } from '@libp2p/interface'
import { systemClock, type Clock } from '../ports.ts'
import { ClaimTimeoutError, MalformedClaimFrameError } from './errors.ts'
import { CLAIM_PROTOCOL, MAX_CLAIM_FRAME_BYTES } from './codec.ts'
import type { ClaimAcceptor } from './acceptor.ts'
import type { ClaimTransport } from './client.ts'

const log = logger('cell:claims:protocol')
const SERVE_TIMEOUT_MS = 5_000

/** The part of a libp2p node the voter side needs. */
export interface ClaimRegistrar {
  handle: (protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: StreamHandlerOptions) => Promise<void>
  unhandle: (protocol: string, options?: AbortOptions) => Promise<void>
}

/** The part of a libp2p node the proposer side needs. */
export interface ClaimDialer {
  dialProtocol: (peer: PeerId, protocols: string | string[], options?: AbortOptions) => Promise<Stream>
}

export interface ClaimServeStats { served: number, malformed: number, failed: number }

export interface ServeClaimProtocolOptions {
  clock?: Clock
  /** Deadline of one serve, reading the request included (default 5 s). */
  timeoutMs?: number
  maxInboundStreams?: number
  stats?: ClaimServeStats
}

/** Answers `/cell/claim/1` with `acceptor`; returns a function that unregisters the protocol. */
export async function serveClaimProtocol (node: ClaimRegistrar, acceptor: ClaimAcceptor, options: ServeClaimProtocolOptions = {}): Promise<() => Promise<void>> {
  const clock = options.clock ?? systemClock
  const timeoutMs = options.timeoutMs ?? SERVE_TIMEOUT_MS
  const stats = options.stats ?? { served: 0, malformed: 0, failed: 0 }
  await acceptor.start()
  await node.handle(CLAIM_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const controller = new AbortController()
    const timer = clock.setTimeout(() => { controller.abort(new ClaimTimeoutError(`serving ${peer} exceeded ${timeoutMs} ms`)) }, timeoutMs)
    const signal = controller.signal
    const started = clock.now()
    let readMs = -1
    let decidedMs = -1
    try {
      const request = await readFrame(stream, signal)
      readMs = clock.now() - started
      const answer = await acceptor.handle(peer, request, { signal })
      decidedMs = clock.now() - started
      stream.send(answer)
      await stream.close({ signal })
      stats.served++
      if (clock.now() - started > 1_000) log('slow claim request from %s: read after %d ms, decided after %d ms, answered after %d ms', peer, readMs, decidedMs, clock.now() - started)
    } catch (err) {
      if (err instanceof MalformedClaimFrameError) stats.malformed++
      else stats.failed++
      log('claim request from %s: %s (read after %d ms, decided after %d ms, failed after %d ms)', peer, (err as Error).message, readMs, decidedMs, clock.now() - started)
      stream.abort(err instanceof Error ? err : new MalformedClaimFrameError('serve failed'))
    } finally {
      clock.clearTimeout(timer)
    }
  }, { maxInboundStreams: options.maxInboundStreams ?? 32, maxOutboundStreams: 32 })
  return async () => { await node.unhandle(CLAIM_PROTOCOL) }
}

export interface Libp2pClaimTransportOptions {
  /** This node's own acceptor, reached without a stream when it is one of the voters. */
  local?: { selfId: string, acceptor: ClaimAcceptor }
}

/** A ClaimTransport over `/cell/claim/1` streams. */
export function libp2pClaimTransport (node: ClaimDialer, options: Libp2pClaimTransportOptions = {}): ClaimTransport {
  return {
    async send (peerId, frame, { signal }) {
      if (options.local != null && peerId === options.local.selfId) return await options.local.acceptor.handle(peerId, frame, { signal })
      const started = Date.now()
      const stream = await node.dialProtocol(peerIdFromString(peerId), CLAIM_PROTOCOL, { signal })
      const openedMs = Date.now() - started
      try {
        stream.send(frame)
        await stream.close({ signal })
        const answer = await readFrame(stream, signal)
        if (Date.now() - started > 1_000) log('slow claim answer from %s: stream open after %d ms, answer after %d ms', peerId, openedMs, Date.now() - started)
        return answer
      } catch (err) {
        log('claim request to %s: %s (stream open after %d ms, failed after %d ms)', peerId, (err as Error).name, openedMs, Date.now() - started)
        stream.abort(err instanceof Error ? err : new ClaimTimeoutError('claim request failed'))
        throw err
      }
    }
  }
}

/** Reads `stream` to its end: at most one frame of MAX_CLAIM_FRAME_BYTES, within `signal`. */
export async function readFrame (stream: Stream, signal: AbortSignal): Promise<Uint8Array> {
  signal.throwIfAborted()
  const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new ClaimTimeoutError('aborted')) }
  signal.addEventListener('abort', onAbort, { once: true })
  const parts: Uint8Array[] = []
  let total = 0
  try {
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      total += bytes.byteLength
      if (total > MAX_CLAIM_FRAME_BYTES) throw new MalformedClaimFrameError(`frame longer than ${MAX_CLAIM_FRAME_BYTES} bytes`)
      parts.push(bytes)
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  signal.throwIfAborted()
  if (total === 0) throw new MalformedClaimFrameError('stream ended without a frame')
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}
