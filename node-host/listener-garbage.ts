// Garbage on a node's listeners: inbound libp2p connections that never became connections (random
// bytes, a half multistream or Noise handshake, a stalled upgrade; reported by core/mesh's
// onInboundFailure on TCP, WebSockets and WebRTC-direct) and HTTP requests Node's parser refused on
// the metrics and dashboard ports (bad request lines, oversized headers, timeouts). Each is logged
// and counted; /metrics shows cell_listener_garbage_total{listener, reason}. Neither may crash a node.
import type { Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { logger } from '@libp2p/logger'
import { Counter, type Registry } from 'prom-client'

const log = logger('cell:node:garbage')
/** Distinct (listener, reason) pairs kept; later reasons count as "other" (bounded label values). */
const MAX_SERIES = 64
const MAX_REASON_CHARS = 48

/** HTTP status Node itself would answer for a parse error (what we keep doing, besides counting). */
function statusFor (code: string | undefined): string {
  if (code === 'HPE_HEADER_OVERFLOW') return '431 Request Header Fields Too Large'
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return '413 Payload Too Large'
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return '408 Request Timeout'
  return '400 Bad Request'
}

/** What an HTTP server of the node needs to have its refused requests counted. */
export interface HttpGarbageWatch { watchHttp: (server: Server, listener: string) => void }

export class ListenerGarbage implements HttpGarbageWatch {
  private readonly counts = new Map<string, { listener: string, reason: string, n: number }>()

  /** Counts one piece of garbage on `listener` (tcp, websockets, webrtc-direct, metrics-http, dashboard-http). */
  note (listener: string, reason: string, detail?: string): void {
    const clean = reason.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, MAX_REASON_CHARS) || 'unknown'
    let key = `${listener}\u0000${clean}`
    if (!this.counts.has(key) && this.counts.size >= MAX_SERIES) key = `${listener}\u0000other`
    const entry = this.counts.get(key) ?? { listener, reason: key.endsWith('\u0000other') ? 'other' : clean, n: 0 }
    entry.n++
    this.counts.set(key, entry)
    log('garbage on %s: %s%s', listener, clean, detail !== undefined ? ` (${detail.slice(0, 200)})` : '')
  }

  /** The hook for MeshInit.onInboundFailure. */
  readonly onInboundFailure = (transport: string, err: unknown): void => {
    const e = err as { name?: unknown, message?: unknown } | undefined
    this.note(transport, typeof e?.name === 'string' ? e.name : 'Error', typeof e?.message === 'string' ? e.message : undefined)
  }

  /** Counts what Node's HTTP parser refuses on `server`, then answers as Node would have. */
  watchHttp (server: Server, listener: string): void {
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // A peer that reset or went away is not garbage, just gone.
      if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
      this.note(listener, err.code ?? err.name, err.message)
      socket.end(`HTTP/1.1 ${statusFor(err.code)}\r\nConnection: close\r\n\r\n`)
    })
  }

  /** Total on `listener` (all reasons), or on every listener. */
  total (listener?: string): number {
    let n = 0
    for (const e of this.counts.values()) if (listener === undefined || e.listener === listener) n += e.n
    return n
  }

  register (registry: Registry): void {
    const counts = this.counts
    new Counter({ // eslint-disable-line no-new
      name: 'cell_listener_garbage_total',
      help: 'Inbound garbage this node refused and survived: libp2p connections that failed to upgrade (tcp, websockets, webrtc-direct) and requests the HTTP parser refused (metrics-http, dashboard-http), by listener and reason.',
      labelNames: ['listener', 'reason'],
      registers: [registry],
      collect () {
        this.reset()
        for (const e of counts.values()) this.inc({ listener: e.listener, reason: e.reason }, e.n)
      }
    })
  }
}
