// The edge's HTTP API, as a function of a Request and the routing node:
//   POST /cells/<cell>/<method>   JSON body → synapse call → JSON result
//   GET  /fleet                   the fleet view the edge holds
//   GET  /healthz                 peer id, joined, connected full nodes
// Failures answer `{ "error": { "name", "message" } }` with a status chosen by the error's class
// name (names survive the wire; see STATUS). The request deadline comes from `x-cell-deadline-ms`,
// clamped to MAX_DEADLINE_MS; the body is read up to MAX_BODY_BYTES and refused beyond.
import { TrustError } from '../core/identity/index.ts'
import { RemoteError } from '../core/synapse/index.ts'
import { isCellName } from '../core/manifest/index.ts'
import { BadDeadlineError, BadJsonError, BodyTooLargeError, HttpMethodNotAllowedError, RouteNotFoundError } from './errors.ts'
import type { EdgeHealth, Route } from './edge-router.ts'

export const DEADLINE_HEADER = 'x-cell-deadline-ms'
/** How much of an oversized body is read and discarded (× the limit) before the stream is cut. */
const DRAIN_FACTOR = 8
/** Method names are identifiers of the cell's handler object; this bounds what reaches the mesh. */
const METHOD = /^[A-Za-z_$][\w$]{0,63}$/

/** What the HTTP layer needs of the routing node (EdgeRouter, or a fake in unit tests). */
export interface EdgeNodeApi {
  call (cell: string, method: string, request: unknown, options: { timeoutMs: number, signal?: AbortSignal }): Promise<{ result: unknown, route?: Route }>
  fleet (): unknown
  health (): EdgeHealth
}

export interface HttpLimits { maxBodyBytes: number, defaultDeadlineMs: number, maxDeadlineMs: number }

/** HTTP status by error name. Errors from a cell's own handler (not listed) are 422. */
export const STATUS: Readonly<Record<string, number>> = {
  BadJsonError: 400,
  BadDeadlineError: 400,
  PayloadEncodingError: 400,
  NoGrantError: 403,
  TrustError: 403,
  UnknownCellError: 404,
  UnknownMethodError: 404,
  RouteNotFoundError: 404,
  HttpMethodNotAllowedError: 405,
  CellNameConflictError: 409,
  BodyTooLargeError: 413,
  FrameTooLargeError: 413,
  EdgeConfigError: 500,
  ReplicaCrashedError: 502,
  ChannelClosedError: 502,
  SynapseProtocolError: 502,
  NoReplicaError: 503,
  FleetNotJoinedError: 503,
  MeshNotStartedError: 503,
  CapsidBusyError: 503,
  CapsidDrainingError: 503,
  CapsidStoppedError: 503,
  TooManyInflightError: 503,
  BackpressureError: 503,
  TooManyChannelsError: 503,
  TooManyHandshakesError: 503,
  DeadlineExceededError: 504,
  HandshakeTimeoutError: 504
}

export function statusOf (err: unknown): number {
  // Every refusal of trust is 403, whichever subclass (UnknownAuthorityError, WrongRoleError, …).
  if (err instanceof TrustError) return 403
  const name = errorNameOf(err)
  const status = STATUS[name]
  if (status !== undefined) return status
  // A name the edge has no class for came from the cell's handler (InvalidAmountError): the request
  // was understood and refused by the cell. Anything else is the edge's own fault.
  return err instanceof RemoteError ? 422 : 500
}

export function errorNameOf (err: unknown): string {
  if (err instanceof RemoteError) return err.remoteName
  if (err instanceof Error) return err.name
  return 'Error'
}

function json (status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers } })
}

export function errorResponse (err: unknown): Response {
  const status = statusOf(err)
  const message = err instanceof Error ? err.message.slice(0, 2000) : String(err).slice(0, 2000)
  return json(status, { error: { name: errorNameOf(err), message } })
}

/** The deadline the caller asked for, clamped to the edge's maximum; BadDeadlineError if malformed. */
export function deadlineOf (request: Request, limits: HttpLimits): number {
  const text = request.headers.get(DEADLINE_HEADER)
  if (text == null) return limits.defaultDeadlineMs
  if (!/^\d{1,9}$/.test(text.trim()) || Number(text) < 1) throw new BadDeadlineError(`${DEADLINE_HEADER}: expected a whole number of milliseconds ≥ 1, got "${text.slice(0, 40)}"`)
  return Math.min(Number(text), limits.maxDeadlineMs)
}

/** Reads at most `maxBytes` of the body, refusing early on Content-Length and while reading beyond it. */
export async function readBodyBytes (request: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
  const declared = request.headers.get('content-length')
  const tooLarge = declared != null && Number(declared) > maxBytes
  if (tooLarge && (request.body == null || !(Number(declared) <= DRAIN_FACTOR * maxBytes))) {
    await request.body?.cancel().catch(() => {})
    throw new BodyTooLargeError(`the body is ${declared} bytes; this edge accepts at most ${maxBytes}`)
  }
  const chunks: Uint8Array[] = []
  let size = 0
  if (request.body != null) {
    const reader = request.body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > maxBytes) {
        // Read on (discarding, bounded) so a client that is still sending gets its answer on a clean
        // connection; past the bound, cut the stream.
        for (let drained = size; drained <= DRAIN_FACTOR * maxBytes;) {
          const more = await reader.read()
          if (more.done) break
          drained += more.value.byteLength
        }
        await reader.cancel().catch(() => {})
        throw new BodyTooLargeError(tooLarge ? `the body is ${declared} bytes; this edge accepts at most ${maxBytes}` : `the body is over ${maxBytes} bytes, the most this edge accepts`)
      }
      chunks.push(value)
    }
  }
  const bytes = new Uint8Array(size)
  let at = 0
  for (const c of chunks) { bytes.set(c, at); at += c.byteLength }
  return bytes
}

/** The body as JSON (empty is null); BadJsonError when it is not UTF-8 JSON. */
export function parseJsonBytes (bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) return null
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch (err) {
    throw new BadJsonError('the body is not UTF-8 text', { cause: err })
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new BadJsonError(`the body is not JSON: ${(err as Error).message.slice(0, 200)}`, { cause: err })
  }
}

export async function readJsonBody (request: Request, maxBytes: number): Promise<unknown> {
  return parseJsonBytes(await readBodyBytes(request, maxBytes))
}

function decodeSegment (segment: string): string | undefined {
  try { return decodeURIComponent(segment) } catch { return undefined }
}

export async function handleHttp (request: Request, node: () => Promise<EdgeNodeApi>, limits: HttpLimits): Promise<Response> {
  try {
    const url = new URL(request.url)
    const path = url.pathname
    if (path === '/healthz' || path === '/fleet') {
      if (request.method !== 'GET' && request.method !== 'HEAD') throw new HttpMethodNotAllowedError(`${path} answers GET`)
      const n = await node()
      return json(200, path === '/healthz' ? n.health() : n.fleet())
    }
    const m = /^\/cells\/([^/]+)\/([^/]+)$/.exec(path)
    if (m == null) throw new RouteNotFoundError(`no route ${path.slice(0, 200)}; the edge answers POST /cells/<cell>/<method>, GET /fleet and GET /healthz`)
    if (request.method !== 'POST') throw new HttpMethodNotAllowedError('calls are POST /cells/<cell>/<method> with a JSON body')
    const cell = decodeSegment(m[1])
    const method = decodeSegment(m[2])
    // A name no cell can have is unknown by definition; it never reaches the mesh.
    if (cell === undefined || !isCellName(cell)) throw new RouteNotFoundError(`"${m[1].slice(0, 80)}" is not a cell name`)
    if (method === undefined || !METHOD.test(method)) throw new RouteNotFoundError(`"${m[2].slice(0, 80)}" is not a method name`)
    const timeoutMs = deadlineOf(request, limits)
    const body = await readJsonBody(request, limits.maxBodyBytes)
    const n = await node()
    const { result, route } = await n.call(cell, method, body, { timeoutMs, signal: request.signal })
    const headers: Record<string, string> = { [DEADLINE_HEADER]: String(timeoutMs) }
    if (route !== undefined) {
      headers['x-cell-node'] = route.nodeId
      headers['x-cell-instance'] = route.instanceId
      headers['x-cell-version'] = route.version
      headers['x-cell-digest'] = route.digest
    }
    return json(200, result ?? null, headers)
  } catch (err) {
    // A body left unread would still be streaming in from the Worker in front when the answer goes
    // out, which fails that stream ("can't read from request stream after response has been sent").
    if (request.body !== null && !request.bodyUsed && !request.body.locked) await request.body.cancel().catch(() => {})
    return errorResponse(err)
  }
}
