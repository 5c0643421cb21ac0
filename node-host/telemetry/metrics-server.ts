// The node's Prometheus endpoint on the address `cell up --metrics` gives: `GET /metrics` (its own),
// and with a fleet proxy `/metrics/nodes/<id>`, `/metrics/cells/<cell>` and `/sd/prometheus`
// (metrics-proxy.ts). Bounded: a few connections, short timeouts; a proxied scrape waits at most the
// proxy's deadline. Errors answer with the error's name in the body.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { HttpGarbageWatch } from '../listener-garbage.ts'
import { CellError, type RetryRule } from '../../core/errors.ts'
import type { SdTargetGroup } from './metrics-proxy.ts'

/** `--metrics` is neither `off`, `HOST:PORT`, `:PORT` nor `:PORT/metrics`. */
export class MetricsAddressError extends CellError {
  static override readonly errorName = 'MetricsAddressError'
  static override readonly retry: RetryRule = 'never'
}

/** The metrics address is taken (or not ours to bind): `cell up` fails and says which. */
export class MetricsPortInUseError extends CellError {
  static override readonly errorName = 'MetricsPortInUseError'
  static override readonly retry: RetryRule = 'never'
}

export interface MetricsAddress { host: string, port: number }

export const DEFAULT_METRICS_ADDRESS: MetricsAddress = { host: '127.0.0.1', port: 9090 }

/**
 * Parses `--metrics`: `off`, `HOST:PORT`, `[V6]:PORT`, `:PORT` (on 127.0.0.1) or a cell's
 * `prometheus = ":9090/metrics"` form (the path must be `/metrics`, the only one served).
 */
export function parseMetricsAddress (text: string): MetricsAddress | 'off' {
  const t = text.trim()
  if (t === 'off') return 'off'
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})(\/metrics)?$/.exec(t)
  if (m === null) throw new MetricsAddressError(`--metrics ${text}: expected HOST:PORT, :PORT, :PORT/metrics or off`)
  const port = Number(m[2])
  if (port > 65535) throw new MetricsAddressError(`--metrics ${text}: port ${port} is over 65535`)
  const host = m[1] === '' ? DEFAULT_METRICS_ADDRESS.host : m[1].replace(/^\[|\]$/g, '')
  return { host, port }
}

export interface MetricsSource {
  text: () => Promise<string>
  readonly contentType: string
}

/** The fleet-wide paths (a MetricsProxy); without one only `/metrics` is served. */
export interface FleetMetricsPort {
  cell: (cell: string, options: { signal?: AbortSignal }) => Promise<{ text: string }>
  node: (nodeId: string, options: { signal?: AbortSignal }) => Promise<string>
  targets: (hostPort: string) => SdTargetGroup[]
}

export interface MetricsServer {
  /** `http://host:port/metrics` as bound (the real port when 0 was asked for). */
  readonly url: string
  readonly port: number
  close: () => Promise<void>
}

const TEXT = 'text/plain; charset=utf-8'

/** The status a fleet path answers an error with: 404 for names nobody knows, 502 for nodes that failed. */
function statusOf (err: unknown): number {
  const name = (err as Error)?.name
  if (name === 'UnknownCellError' || name === 'UnknownNodeError') return 404
  if (name === 'MetricsUnavailableError') return 502
  if (name === 'MetricsBusyError') return 503
  return 500
}

function route (req: IncomingMessage, res: ServerResponse, source: MetricsSource, fleet: FleetMetricsPort | undefined, self: () => string): void {
  const path = (req.url ?? '').split('?')[0]
  const cell = /^\/metrics\/cells\/([^/]{1,255})$/.exec(path)
  const node = /^\/metrics\/nodes\/([A-Za-z0-9]{1,128})$/.exec(path)
  const known = path === '/metrics' || (fleet !== undefined && (cell !== null || node !== null || path === '/sd/prometheus'))
  if (!known) {
    res.writeHead(404, { 'Content-Type': TEXT }).end(`not found: this node serves GET /metrics${fleet !== undefined ? ', /metrics/nodes/<id>, /metrics/cells/<cell> and /sd/prometheus' : ''}\n`)
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': TEXT }).end('method not allowed\n')
    return
  }
  const answer = (body: string, contentType: string): void => {
    res.writeHead(200, { 'Content-Type': contentType })
    res.end(req.method === 'HEAD' ? undefined : body)
  }
  const fail = (err: Error): void => {
    res.writeHead(statusOf(err), { 'Content-Type': TEXT }).end(`${err.name}: ${err.message}\n`)
  }
  // The scrape ends when the client goes away: proxied fetches still running are abandoned.
  const gone = new AbortController()
  res.once('close', () => { gone.abort(new Error('client closed')) })
  let work: Promise<string>
  if (fleet === undefined || path === '/metrics') work = source.text()
  else if (path === '/sd/prometheus') {
    // Targets point back at this server, by the address the client reached it at.
    const hostPort = /^[A-Za-z0-9.:[\]-]{1,300}$/.test(req.headers.host ?? '') ? req.headers.host! : self()
    answer(JSON.stringify(fleet.targets(hostPort)), 'application/json')
    return
  } else if (cell !== null) {
    let name: string
    try { name = decodeURIComponent(cell[1]) } catch { name = cell[1] }
    work = fleet.cell(name, { signal: gone.signal }).then(r => r.text)
  } else work = fleet.node(node![1], { signal: gone.signal })
  work.then((body) => { answer(body, source.contentType) }, fail)
}

export async function serveMetrics (source: MetricsSource, address: MetricsAddress, options: { signal?: AbortSignal, fleet?: FleetMetricsPort, garbage?: HttpGarbageWatch } = {}): Promise<MetricsServer> {
  options.signal?.throwIfAborted()
  let self = `${address.host}:${address.port}`
  const server: Server = createServer((req, res) => { route(req, res, source, options.fleet, () => self) })
  server.maxConnections = 64
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.keepAliveTimeout = 5_000
  // Bad request lines, oversized headers: counted (cell_listener_garbage_total) and answered as Node would.
  options.garbage?.watchHttp(server, 'metrics-http')
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const where = `${address.host}:${address.port}`
      reject(err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL'
        ? new MetricsPortInUseError(`cannot serve metrics on ${where} (${err.code}): another process holds it or it is not this machine's; pass --metrics HOST:PORT with a free port, or --metrics off`, { cause: err })
        : err)
    }
    server.once('error', onError)
    server.listen({ host: address.host, port: address.port, signal: options.signal }, () => {
      server.off('error', onError)
      resolve()
    })
  })
  const bound = server.address()
  const port = typeof bound === 'object' && bound !== null ? bound.port : address.port
  const host = address.host.includes(':') ? `[${address.host}]` : address.host
  self = `${host}:${port}`
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
