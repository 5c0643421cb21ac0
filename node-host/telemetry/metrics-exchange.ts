// `/cell/metrics/1`: one full node asks another for Prometheus text, so that any node can serve the
// metrics of the whole fleet (`/metrics/nodes/<id>`, `/metrics/cells/<cell>`). Grant-gated like
// fleet-sync and artifacts (core/fleet/peer-grant.ts: any role from an authority the server trusts).
//   request  = version:u8 (1) chainLength:u16be chain kind:u8 (0 node, 1 cell) cellLength:u8 cell:utf8
//   response = 0x00 Prometheus text (≤ MAX_METRICS_TEXT_BYTES) | 0x02 code:u8 (refused; peer-grant codes)
// A request is at most a few KiB and read within a deadline; a response is bounded and so is the wait.
import { logger } from '@libp2p/logger'
import { Counter, type Registry } from 'prom-client'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { systemClock, type Clock } from '../../core/ports.ts'
import { PeerGrantGate, MAX_REQUEST_CHAIN_BYTES, isRefusal, refusalCode, refusalError } from '../../core/fleet/peer-grant.ts'
import { meshGate } from '../artifacts/artifact-exchange.ts'
import { cellSeries } from './exposition.ts'

export const METRICS_PROTOCOL = '/cell/metrics/1'
export const MAX_METRICS_TEXT_BYTES = 4 * 1024 * 1024
const VERSION = 1
const MAX_CELL_BYTES = 255
const MAX_REQUEST_BYTES = 1 + 2 + MAX_REQUEST_CHAIN_BYTES + 1 + 1 + MAX_CELL_BYTES
const OK = 0
const REFUSED = 2
const CHUNK_BYTES = 64 * 1024
/** Default deadline of one fetch (dial included) and of one serve. */
export const DEFAULT_METRICS_TIMEOUT_MS = 2_000
const SERVE_TIMEOUT_MS = 10_000

const log = logger('cell:metrics')

export class MalformedMetricsRequestError extends CellError {
  static override readonly errorName = 'MalformedMetricsRequestError'
  static override readonly retry: RetryRule = 'never'
}
/** A node did not answer a metrics request within the deadline. */
export class MetricsTimeoutError extends CellError {
  static override readonly errorName = 'MetricsTimeoutError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** A node's answer was cut short, too large or not an answer at all. */
export class MetricsFetchError extends CellError {
  static override readonly errorName = 'MetricsFetchError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
/** serveMetricsProtocol found no grant gate and would serve anyone. */
export class MetricsGateMissingError extends CellError {
  static override readonly errorName = 'MetricsGateMissingError'
  static override readonly retry: RetryRule = 'never'
}

export type MetricsRequest = { kind: 'node' } | { kind: 'cell', cell: string }

export function encodeMetricsRequest (what: MetricsRequest, chain: Uint8Array): Uint8Array {
  if (chain.length > MAX_REQUEST_CHAIN_BYTES) throw new MalformedMetricsRequestError(`chain of ${chain.length} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  const cell = new TextEncoder().encode(what.kind === 'cell' ? what.cell : '')
  if (cell.length > MAX_CELL_BYTES) throw new MalformedMetricsRequestError(`cell name of ${cell.length} bytes exceeds ${MAX_CELL_BYTES}`)
  const out = new Uint8Array(1 + 2 + chain.length + 2 + cell.length)
  out[0] = VERSION
  new DataView(out.buffer).setUint16(1, chain.length)
  out.set(chain, 3)
  out[3 + chain.length] = what.kind === 'cell' ? 1 : 0
  out[4 + chain.length] = cell.length
  out.set(cell, 5 + chain.length)
  return out
}

export function decodeMetricsRequest (bytes: Uint8Array): { chain: Uint8Array, what: MetricsRequest } {
  if (bytes.length < 5 || bytes[0] !== VERSION) throw new MalformedMetricsRequestError(`not a metrics request of version ${VERSION}`)
  const chainLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(1)
  if (chainLength > MAX_REQUEST_CHAIN_BYTES) throw new MalformedMetricsRequestError(`chain of ${chainLength} bytes exceeds ${MAX_REQUEST_CHAIN_BYTES}`)
  if (bytes.length < 5 + chainLength) throw new MalformedMetricsRequestError('request cut short')
  const kind = bytes[3 + chainLength]
  const cellLength = bytes[4 + chainLength]
  if (bytes.length !== 5 + chainLength + cellLength) throw new MalformedMetricsRequestError(`request of ${bytes.length} bytes, expected ${5 + chainLength + cellLength}`)
  const chain = bytes.subarray(3, 3 + chainLength)
  if (kind === 0 && cellLength === 0) return { chain, what: { kind: 'node' } }
  if (kind !== 1 || cellLength === 0) throw new MalformedMetricsRequestError(`unknown request kind ${kind}`)
  let cell: string
  try {
    cell = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(5 + chainLength))
  } catch (err) {
    throw new MalformedMetricsRequestError('cell name is not UTF-8', { cause: err })
  }
  return { chain, what: { kind: 'cell', cell } }
}

/** A signal that aborts with `reason()` after `ms` on `clock`, and the function that cancels its timer. */
function deadlineOf (clock: Clock, ms: number, reason: () => Error): { signal: AbortSignal, clear: () => void } {
  const controller = new AbortController()
  const timer = clock.setTimeout(() => { controller.abort(reason()) }, ms)
  return { signal: controller.signal, clear: () => { clock.clearTimeout(timer) } }
}

/** Reads `stream` to its end, at most `maxBytes`; the signal aborts the stream itself (ending the read). */
async function readAll (stream: Stream, maxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
  signal.throwIfAborted()
  const onAbort = (): void => { stream.abort(signal.reason instanceof Error ? signal.reason : new MetricsTimeoutError('aborted')) }
  signal.addEventListener('abort', onAbort, { once: true })
  const parts: Uint8Array[] = []
  let total = 0
  try {
    for await (const chunk of stream) {
      const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
      total += bytes.byteLength
      if (total > maxBytes) {
        const err = new MetricsFetchError(`more than ${maxBytes} bytes`)
        stream.abort(err)
        throw err
      }
      parts.push(bytes)
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
  signal.throwIfAborted()
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

export interface MetricsServeStats { served: number, refused: number, malformed: number, failed: number }

export function metricsServeStats (): MetricsServeStats {
  return { served: 0, refused: 0, malformed: 0, failed: 0 }
}

export interface ServeMetricsProtocolOptions {
  /** Who may ask; default: the gate of the node's mesh (its fleet-sync service). */
  gate?: PeerGrantGate
  stats?: MetricsServeStats
  /** Deadline of one serve, reading the request included (default 10 s). */
  timeoutMs?: number
  maxInboundStreams?: number
  clock?: Clock
}

/** Answers `/cell/metrics/1` from `text()` (this node's own exposition) for peers the gate admits. */
export async function serveMetricsProtocol (node: Libp2p, text: () => Promise<string>, options: ServeMetricsProtocolOptions = {}): Promise<void> {
  const gate = options.gate ?? meshGate(node)
  if (gate == null) throw new MetricsGateMissingError('serveMetricsProtocol needs a grant gate: pass options.gate or a mesh node whose fleet-sync has `trusted`')
  const counters = options.stats ?? metricsServeStats()
  const timeoutMs = options.timeoutMs ?? SERVE_TIMEOUT_MS
  const clock = options.clock ?? systemClock
  await node.handle(METRICS_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const deadline = deadlineOf(clock, timeoutMs, () => new MetricsTimeoutError(`serving metrics to ${peer} exceeded ${timeoutMs} ms`))
    const signal = deadline.signal
    try {
      let request
      try {
        request = decodeMetricsRequest(await readAll(stream, MAX_REQUEST_BYTES, signal))
      } catch (err) {
        if (err instanceof MalformedMetricsRequestError || err instanceof MetricsFetchError) {
          counters.malformed++
          log('malformed metrics request from %s: %s', peer, (err as Error).message)
          stream.abort(err)
          return
        }
        throw err
      }
      try {
        await gate.check(request.chain, peer, { signal })
      } catch (err) {
        if (!isRefusal(err)) throw err
        counters.refused++
        log('refused metrics to %s: %s', peer, (err as Error).name)
        stream.send(Uint8Array.of(REFUSED, refusalCode(err)))
        await stream.close({ signal })
        return
      }
      const all = await text()
      const body = new TextEncoder().encode(request.what.kind === 'cell' ? cellSeries(all, request.what.cell) : all)
      if (body.byteLength > MAX_METRICS_TEXT_BYTES) throw new MetricsFetchError(`exposition of ${body.byteLength} bytes exceeds ${MAX_METRICS_TEXT_BYTES}`)
      stream.send(Uint8Array.of(OK))
      for (let at = 0; at < body.byteLength; at += CHUNK_BYTES) {
        if (!stream.send(body.subarray(at, at + CHUNK_BYTES))) await stream.onDrain({ signal })
      }
      await stream.close({ signal })
      counters.served++
    } catch (err) {
      counters.failed++
      log('serving metrics to %s failed: %e', peer, err)
      stream.abort(err as Error)
    } finally {
      deadline.clear()
    }
  }, { maxInboundStreams: options.maxInboundStreams ?? 16 })
}

export interface FetchMetricsOptions {
  signal?: AbortSignal
  /** Deadline of the whole fetch, dial included (default 2 s). */
  timeoutMs?: number
  gate?: PeerGrantGate
  maxBytes?: number
  clock?: Clock
}

/** Asks `peer` for its own exposition or one cell's series of it. Refusals throw the server's named trust error. */
export async function fetchMetrics (node: Libp2p, peer: PeerId, what: MetricsRequest, options: FetchMetricsOptions = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_METRICS_TIMEOUT_MS
  const where = `metrics of ${peer.toString()}`
  const deadline = deadlineOf(options.clock ?? systemClock, timeoutMs, () => new MetricsTimeoutError(`${where}: no answer within ${timeoutMs} ms`))
  const signal = options.signal !== undefined ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal
  const gate = options.gate ?? meshGate(node)
  const request = encodeMetricsRequest(what, gate?.chain() ?? new Uint8Array(0))
  let stream: Stream | undefined
  try {
    stream = await node.dialProtocol(peer, METRICS_PROTOCOL, { signal })
    stream.send(request)
    await stream.close({ signal })
    const response = await readAll(stream, 1 + (options.maxBytes ?? MAX_METRICS_TEXT_BYTES), signal)
    if (response.byteLength === 0) throw new MetricsFetchError(`${where}: closed without an answer`)
    if (response[0] === REFUSED) throw refusalError(response[1] ?? 0, where)
    if (response[0] !== OK) throw new MetricsFetchError(`${where}: unknown status ${response[0]}`)
    return new TextDecoder().decode(response.subarray(1))
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new MetricsFetchError(where))
    if (deadline.signal.aborted) throw new MetricsTimeoutError(`${where}: no answer within ${timeoutMs} ms`, { cause: err })
    if (options.signal?.aborted === true) throw options.signal.reason
    if (err instanceof CellError) throw err
    throw new MetricsFetchError(`${where} failed`, { cause: err })
  } finally {
    deadline.clear()
  }
}

/** `cell_metrics_requests_total{outcome}` in `registry`, read from `stats` at each scrape. */
export function registerMetricsServeStats (registry: Registry, stats: MetricsServeStats): void {
  const counter = new Counter({
    name: 'cell_metrics_requests_total',
    help: `Requests of ${METRICS_PROTOCOL} this node answered, by outcome (served, refused: no grant from a trusted authority, malformed, failed).`,
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      counter.reset()
      for (const outcome of ['served', 'refused', 'malformed', 'failed'] as const) counter.inc({ outcome }, stats[outcome])
    }
  })
}
