// A small node:http server for the built dashboard (dashboard/dist) plus `/cell-config.json`, the
// one dynamic document: the full nodes' WebSocket addresses a tab bootstraps from. Everything the
// page shows afterwards comes from the tab's own light peer (gossip and calls), not from here.
// Optionally (`issueGrant`, local demo only) `POST /grant` signs a caller grant for the tab's peer
// id, so a freshly opened tab can call cells without a copy-pasted token.
//
// Who may get a grant. Listening on 127.0.0.1 is not enough: a web page the person visits can
// rebind its own name to 127.0.0.1 (DNS rebinding) and then fetch this server "same-origin", and any
// page can fire a cross-site POST at it. So:
// - every request must name this server in `Host` (an address it listens on, or a name the
//   operator allowed); a rebound name is refused before anything is read or served, which is what
//   keeps the page config (and the secret in it) away from a rebinding page;
// - `POST /grant` needs `Content-Type: application/json` (no simple cross-site form post), an
//   `Origin` (when sent; browsers always send it on POST) equal to the page's own origin
//   `http://<Host>`, and `x-cell-grant-secret`: 32 random bytes made when the server starts and
//   handed to the page only inside cell-config.json (never in a URL: those end up in logs and
//   Referer headers), compared in constant time.
// Refusals are 403 (415 for the content type) with a short reason, counted in `stats.refused`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { HttpGarbageWatch } from '../listener-garbage.ts'
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile, realpath, stat } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { isIP } from 'node:net'
import { extname, posix, resolve, sep } from 'node:path'
import { CellError } from '../../core/errors.ts'
import type { PageConfig } from '../../browser-host/page-config.ts'
import type { Dissemination } from '../../core/fleet/index.ts'
import { DEFAULT_DASHBOARD_DIR, ensureDashboardBuilt } from './build-dashboard.ts'

/** The server could not listen (port taken, bad host) or was given a bad init. */
export class DashboardServerError extends CellError { static override readonly errorName = 'DashboardServerError' }

export const STATIC_LIMITS = {
  urlChars: 2048,
  headerBytes: 16 * 1024,
  fileBytes: 8 * 1024 * 1024,
  grantBodyBytes: 1024,
  /** Grants one server issues at most (a tab asks once per load). */
  grants: 1000,
  connections: 128,
  /** Names the server answers to besides its own addresses (`allowedHosts`). */
  allowedHosts: 16,
  /** Host names computed for a wildcard bind (one per interface address, plus loopback forms). */
  hostNames: 256,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000
} as const

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json'
}

/** The header `POST /grant` carries the per-run secret in (a custom header also forces a CORS preflight). */
export const GRANT_SECRET_HEADER = 'x-cell-grant-secret'

/** libp2p peer ids as text: base58btc (12D3Koo…, Qm…) or CIDv1 base32. */
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$|^b[a-z2-7]{32,128}$/

export interface DashboardServerInit {
  /** Built dashboard directory; default dashboard/dist, built on demand when missing or outdated. */
  root?: string
  /** Build `root` when missing/outdated (default: true for the default root, false otherwise). */
  build?: boolean
  /** Default 127.0.0.1: the page and its grant endpoint are for this machine unless asked otherwise. */
  host?: string
  /** Default 0 (any free port). */
  port?: number
  /**
   * Further `Host` values to answer (`name` or `name:port`; a bare name means this server's port),
   * e.g. the name a reverse proxy forwards with. By default only the listen address is answered
   * (for a loopback bind: 127.0.0.1, localhost and [::1]; for 0.0.0.0/:: every interface address).
   */
  allowedHosts?: string[]
  /** Read on every request, so addresses learnt later are served. */
  config: () => Omit<PageConfig, 'grantUrl' | 'grantSecret' | 'linkTrust'>
  /** Local demo only: sign a caller grant for a tab's peer id; enables `POST /grant`. */
  issueGrant?: (peerId: string, options: { signal?: AbortSignal }) => Promise<string>
  /** Counts (and logs) requests the HTTP parser refuses: garbage, oversized headers (the node's cell_listener_garbage_total). */
  garbage?: HttpGarbageWatch
}

export interface DashboardServer {
  readonly url: string
  readonly port: number
  readonly stats: DashboardServerStats
  /** The last requests (method and path, at most 32), for diagnostics and tests. */
  readonly recent: string[]
  close: () => Promise<void>
}

export interface DashboardServerStats {
  requests: number
  /** Every refused request (bad path, limits, and the refusals below). */
  rejected: number
  grants: number
  /** Requests refused as possibly forged: wrong Host (rebinding), foreign Origin, missing/wrong secret, non-JSON POST. */
  refused: { host: number, origin: number, secret: number, contentType: number }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** `host:port` as a browser writes it in `Host` (IPv6 in brackets, port left out when it is 80). */
function hostValues (name: string, port: number): string[] {
  const n = isIP(name) === 6 ? `[${name}]` : name
  return port === 80 ? [`${n}:80`, n] : [`${n}:${port}`]
}

/** The `Host` values this server answers to: its listen address (all forms of it), plus `extra`. */
export function allowedHostValues (bindHost: string, port: number, extra: string[] = []): Set<string> {
  const names = new Set<string>()
  const bind = bindHost.toLowerCase()
  if (bind === '0.0.0.0' || bind === '::' || bind === '') {
    names.add('127.0.0.1').add('localhost').add('::1')
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (names.size >= STATIC_LIMITS.hostNames) break
        // A link-local IPv6 address needs a zone id, which a Host header cannot carry usefully.
        if (a.family === 'IPv6' && a.scopeid !== 0 && a.scopeid !== undefined) continue
        if (bind === '0.0.0.0' && a.family !== 'IPv4') continue
        names.add(a.address.toLowerCase())
      }
    }
  } else if (isLoopback(bind)) {
    names.add(bind).add('127.0.0.1').add('localhost').add('::1')
  } else {
    names.add(bind)
  }
  const out = new Set<string>()
  for (const n of names) for (const v of hostValues(n, port)) out.add(v)
  if (extra.length > STATIC_LIMITS.allowedHosts) throw new DashboardServerError(`at most ${STATIC_LIMITS.allowedHosts} allowedHosts`)
  for (const e of extra) {
    const v = e.trim().toLowerCase()
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/.test(v)) throw new DashboardServerError(`allowedHosts entry "${e}" is not a host name or host:port`)
    if (/:\d{1,5}$/.test(v) && !v.endsWith(']')) out.add(v)
    else for (const h of hostValues(v.replace(/^\[|\]$/g, ''), port)) out.add(h)
  }
  return out
}

/** Constant-time comparison of a presented secret with ours (hashing first evens out the lengths). */
function sameSecret (presented: string, secret: string): boolean {
  const a = createHash('sha256').update(presented).digest()
  const b = createHash('sha256').update(secret).digest()
  return timingSafeEqual(a, b)
}

export async function serveDashboard (init: DashboardServerInit, options: { signal?: AbortSignal } = {}): Promise<DashboardServer> {
  options.signal?.throwIfAborted()
  const root = resolve(init.root ?? DEFAULT_DASHBOARD_DIR)
  if (init.build ?? init.root === undefined) await ensureDashboardBuilt({ outDir: root, signal: options.signal })
  const realRoot = await realpath(root).catch((err) => { throw new DashboardServerError(`dashboard directory ${root} does not exist`, { cause: err }) })
  const stats: DashboardServerStats = { requests: 0, rejected: 0, grants: 0, refused: { host: 0, origin: 0, secret: 0, contentType: 0 } }
  const recent: string[] = []
  // Made once per run and shown only to pages this server serves (in cell-config.json).
  const grantSecret = randomBytes(32).toString('base64url')
  // Filled in once the port is known; until then nothing is answered.
  let allowedHosts = new Set<string>()

  const refuse = (res: ServerResponse, why: keyof DashboardServerStats['refused'], text: string): void => {
    stats.refused[why]++
    reject(res, why === 'contentType' ? 415 : 403, text)
  }

  const reject = (res: ServerResponse, status: number, text: string): void => {
    stats.rejected++
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
    res.end(text + '\n')
  }

  const sendJson = (res: ServerResponse, status: number, value: unknown, head: boolean): void => {
    const body = JSON.stringify(value)
    res.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(body),
      'x-content-type-options': 'nosniff',
      // Another site's page may not embed it (no-cors reads); the page itself fetches it same-origin.
      'cross-origin-resource-policy': 'same-origin'
    })
    res.end(head ? undefined : body)
  }

  const serveFile = async (res: ServerResponse, pathname: string, head: boolean): Promise<void> => {
    // Reject what a browser never sends rather than normalise it into something else.
    if (pathname.includes('\0') || pathname.includes('\\')) { reject(res, 400, 'bad path'); return }
    const clean = posix.normalize(pathname)
    if (clean.split('/').includes('..')) { reject(res, 403, 'forbidden'); return }
    const file = resolve(realRoot, '.' + (clean.endsWith('/') ? clean + 'index.html' : clean))
    if (file !== realRoot && !file.startsWith(realRoot + sep)) { reject(res, 403, 'forbidden'); return }
    // A symlink inside dist must not lead outside it either.
    const real = await realpath(file).catch(() => undefined)
    if (real === undefined) { reject(res, 404, 'not found'); return }
    if (!real.startsWith(realRoot + sep)) { reject(res, 403, 'forbidden'); return }
    const info = await stat(real)
    if (!info.isFile()) { reject(res, 404, 'not found'); return }
    if (info.size > STATIC_LIMITS.fileBytes) { reject(res, 413, 'file too large'); return }
    const body = await readFile(real)
    res.writeHead(200, {
      'content-type': TYPES[extname(real)] ?? 'application/octet-stream',
      'content-length': body.byteLength,
      'x-content-type-options': 'nosniff',
      // No other site may frame the page: its trust prompt must not be clickjacked.
      'content-security-policy': "frame-ancestors 'none'",
      'x-frame-options': 'DENY',
      // Vite puts content hashes in asset names; the page itself must be re-read to pick them up.
      'cache-control': clean.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache'
    })
    res.end(head ? undefined : body)
  }

  const grant = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (init.issueGrant === undefined) { reject(res, 404, 'not found'); req.resume(); return }
    // Host was checked for every request already. A form or a no-cors fetch cannot send JSON.
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type !== 'application/json') { refuse(res, 'contentType', 'grant requests are application/json'); req.resume(); return }
    // Browsers send Origin on every POST; a page on any other origin (or an opaque one: "null") is refused.
    const origin = req.headers.origin
    if (origin !== undefined && origin.toLowerCase() !== `http://${(req.headers.host ?? '').toLowerCase()}`) { refuse(res, 'origin', 'foreign origin'); req.resume(); return }
    const site = req.headers['sec-fetch-site']
    if (site !== undefined && site !== 'same-origin') { refuse(res, 'origin', 'not a same-origin request'); req.resume(); return }
    const presented = req.headers[GRANT_SECRET_HEADER]
    if (typeof presented !== 'string' || !sameSecret(presented, grantSecret)) { refuse(res, 'secret', 'missing or wrong grant secret'); req.resume(); return }
    if (stats.grants >= STATIC_LIMITS.grants) { reject(res, 429, 'grant limit reached'); return }
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > STATIC_LIMITS.grantBodyBytes) { reject(res, 413, 'body too large'); req.resume(); return }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.byteLength
      if (size > STATIC_LIMITS.grantBodyBytes) { reject(res, 413, 'body too large'); req.destroy(); return }
      chunks.push(chunk)
    }
    let peerId: unknown
    try {
      peerId = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { peerId?: unknown })?.peerId
    } catch {
      reject(res, 400, 'body is not JSON'); return
    }
    if (typeof peerId !== 'string' || !PEER_ID.test(peerId)) { reject(res, 400, 'peerId is not a peer id'); return }
    stats.grants++
    const token = await init.issueGrant(peerId, { signal: AbortSignal.timeout(STATIC_LIMITS.requestTimeoutMs) })
    sendJson(res, 200, { token }, false)
  }

  const server = createServer({ maxHeaderSize: STATIC_LIMITS.headerBytes, requestTimeout: STATIC_LIMITS.requestTimeoutMs, headersTimeout: STATIC_LIMITS.headersTimeoutMs }, (req, res) => {
    stats.requests++
    const url = req.url ?? '/'
    recent.push(`${req.method ?? '?'} ${url.slice(0, 200)}`)
    if (recent.length > 32) recent.shift()
    // Before anything else: a request for another name (a rebound DNS name) gets nothing from here.
    const host = req.headers.host?.toLowerCase()
    if (host === undefined || !allowedHosts.has(host)) { refuse(res, 'host', 'unknown host'); req.resume(); return }
    if (url.length > STATIC_LIMITS.urlChars) { reject(res, 414, 'URL too long'); return }
    let pathname: string
    try {
      pathname = decodeURIComponent(new URL(url, 'http://local').pathname)
    } catch {
      reject(res, 400, 'bad URL'); return
    }
    // new URL() resolves dot segments; a raw "/../x" request line must not slip past that check.
    if (url.split('?')[0].split('/').some(s => s === '..' || s.toLowerCase() === '%2e%2e')) { reject(res, 403, 'forbidden'); return }
    const head = req.method === 'HEAD'
    const done = (p: Promise<void>): void => {
      p.catch((err) => { reject(res, 500, `internal error (${(err as Error).name})`) })
    }
    if (req.method === 'POST' && pathname === '/grant') { done(grant(req, res)); return }
    if (req.method !== 'GET' && !head) { res.setHeader('allow', 'GET, HEAD'); reject(res, 405, 'method not allowed'); req.resume(); return }
    if (pathname === '/cell-config.json') {
      const config: PageConfig = { ...init.config(), ...(init.issueGrant !== undefined ? { grantUrl: 'grant', grantSecret } : {}) }
      sendJson(res, 200, config, head)
      return
    }
    done(serveFile(res, pathname, head))
  })
  server.maxConnections = STATIC_LIMITS.connections
  init.garbage?.watchHttp(server, 'dashboard-http')

  await new Promise<void>((ok, fail) => {
    const onError = (err: Error): void => { fail(new DashboardServerError(`dashboard server cannot listen on ${init.host ?? '127.0.0.1'}:${init.port ?? 0}: ${err.message}`, { cause: err })) }
    server.once('error', onError)
    server.listen(init.port ?? 0, init.host ?? '127.0.0.1', () => { server.off('error', onError); ok() })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const host = init.host ?? '127.0.0.1'
  try {
    allowedHosts = allowedHostValues(host, port, init.allowedHosts)
  } catch (err) {
    server.close()
    throw err
  }
  let closed: Promise<void> | undefined
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/`,
    port,
    stats,
    recent,
    close: async () => {
      closed ??= new Promise<void>((ok) => {
        server.close(() => { ok() })
        server.closeAllConnections()
      })
      await closed
    }
  }
}

/** What a full node (`cell up --dashboard`) knows of itself that a tab joining through it needs. */
export interface PageConfigSource {
  addresses: () => string[]
  readonly trusted: Iterable<string>
  readonly mesh: { readonly gossip: { readonly dissemination: Dissemination } }
}

/**
 * A full node's cell-config.json (without the grant fields): its WebSocket addresses, the
 * authorities it trusts and, on a per-cell fleet, `dissemination: 'per-cell'`, so the tab's light
 * peer uses the fleet's mode. A fleet-mode node names no mode (absent is 'fleet'): its document
 * stays what it always was.
 */
export function nodePageConfig (node: PageConfigSource): Omit<PageConfig, 'grantUrl' | 'grantSecret' | 'linkTrust'> {
  const dissemination = node.mesh.gossip.dissemination
  return { bootstrap: webSocketAddrs(node.addresses()), trust: [...node.trusted], ...(dissemination !== 'fleet' ? { dissemination } : {}) }
}

/** The WebSocket multiaddrs (with /p2p/) a tab can dial, loopback first: what cell-config.json lists. */
export function webSocketAddrs (addrs: string[]): string[] {
  const ws = addrs.filter(a => /\/tcp\/\d+\/(ws|wss|tls\/ws)\/p2p\//.test(a))
  const loopback = ws.filter(a => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/'))
  return loopback.length > 0 ? loopback : ws
}
