// The node's Prometheus endpoint: `GET /metrics` on the address `cell up --metrics` gives, nothing
// else. Bounded: a few connections, short timeouts; a scrape reads the registry and nothing more.
import { createServer, type Server } from 'node:http'
import { CellError, type RetryRule } from '../../core/errors.ts'

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

export interface MetricsServer {
  /** `http://host:port/metrics` as bound (the real port when 0 was asked for). */
  readonly url: string
  readonly port: number
  close: () => Promise<void>
}

export async function serveMetrics (source: MetricsSource, address: MetricsAddress, options: { signal?: AbortSignal } = {}): Promise<MetricsServer> {
  options.signal?.throwIfAborted()
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: this node serves GET /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n')
      return
    }
    source.text().then((body) => {
      res.writeHead(200, { 'Content-Type': source.contentType })
      res.end(req.method === 'HEAD' ? undefined : body)
    }, (err: Error) => {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${err.name}: ${err.message}\n`)
    })
  })
  server.maxConnections = 64
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.keepAliveTimeout = 5_000
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
  return {
    url: `http://${host}:${port}/metrics`,
    port,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
}
