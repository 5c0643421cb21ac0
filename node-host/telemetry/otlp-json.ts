// OTLP/HTTP JSON trace export for the spans the adapter records (otel-tracer.ts), usable in the tab
// too (no Node built-in is imported statically). The SDK's exporter turns each span into an object
// tree (ids, times as strings, attributes, empty events and links, zero counts) for JSON.stringify
// and TextEncoder; at 1 % sampling that export was most of what sampled calls cost a node. Here a
// request is written as UTF-8 straight into a reused buffer, with only the fields that carry
// something (proto3 JSON: an absent field is zero or empty), the resource and scope encoded once,
// repeated strings from a cache of their bytes: about 400 instead of 520 bytes per span, and less
// CPU to encode. Receivers see the same OTLP JSON (ids in hex, times as decimal strings).
import { SpanStatusCode, TraceFlags, type Attributes, type AttributeValue, type HrTime } from '@opentelemetry/api'
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { Resource } from '@opentelemetry/resources'
import { CellError, type RetryRule } from '../../core/errors.ts'

/** A batch of spans that did not reach the OTLP receiver (refused, non-2xx, timed out, too many in flight): counted, never thrown to a call. */
export class OtlpExportError extends CellError {
  static override readonly errorName = 'OtlpExportError'
  static override readonly retry: RetryRule = 'never'
}

/** A span that keeps its times as epoch milliseconds (the adapter's own spans): no HrTime arrays to build. */
interface MillisecondSpan { readonly startMs: number, readonly endMs: number }

function hasMs (span: ReadableSpan): span is ReadableSpan & MillisecondSpan {
  return typeof (span as Partial<MillisecondSpan>).startMs === 'number'
}

const MAX_QUOTED = 4096

/** A non-string attribute value as OTLP JSON's AnyValue (rare on the call path: the adapter's attributes are strings). */
function anyValue (v: AttributeValue): string {
  switch (typeof v) {
    case 'string': return `{"stringValue":${JSON.stringify(v)}}`
    case 'boolean': return `{"boolValue":${v}}`
    case 'number': return Number.isInteger(v) ? `{"intValue":${v}}` : Number.isFinite(v) ? `{"doubleValue":${v}}` : `{"doubleValue":${JSON.stringify(String(v))}}`
    default: return `{"arrayValue":{"values":[${(v as unknown[]).filter(x => x != null).map(x => anyValue(x as AttributeValue)).join(',')}]}}`
  }
}

/** An attribute object's encoded `{"key":…,"value":{…}}` entries, comma-separated. */
function attributes (attrs: Attributes): string {
  let out = ''
  for (const key in attrs) {
    const v = attrs[key]
    if (v === undefined || v === null) continue
    out += `${out === '' ? '' : ','}{"key":${JSON.stringify(key)},"value":${anyValue(v)}}`
  }
  return out
}

/** The request's opening up to the first span, for one resource and scope (encoded once). */
export function requestPrefix (resource: Resource, scope: { name: string, version?: string }): string {
  const attrs = attributes(resource.attributes)
  return `{"resourceSpans":[{"resource":{${attrs === '' ? '' : `"attributes":[${attrs}]`}},"scopeSpans":[{"scope":{"name":${JSON.stringify(scope.name)}${scope.version !== undefined ? `,"version":${JSON.stringify(scope.version)}` : ''}},"spans":[`
}

const SUFFIX = ']}]}]}'

const utf8 = new TextEncoder()
const bytesOf = (s: string): Uint8Array => utf8.encode(s)
const F = {
  traceId: bytesOf('{"traceId":"'),
  spanId: bytesOf('","spanId":"'),
  parentSpanId: bytesOf('","parentSpanId":"'),
  flags: bytesOf('","flags":'),
  name: bytesOf(',"name":'),
  kind: bytesOf(',"kind":'),
  start: bytesOf(',"startTimeUnixNano":"'),
  end: bytesOf('","endTimeUnixNano":"'),
  quote: bytesOf('"'),
  attributes: bytesOf(',"attributes":['),
  comma: bytesOf(','),
  key: bytesOf('{"key":'),
  stringValue: bytesOf(',"value":{"stringValue":'),
  value: bytesOf(',"value":'),
  close2: bytesOf('}}'),
  close1: bytesOf('}'),
  closeArray: bytesOf(']'),
  status: bytesOf(',"status":{"code":'),
  message: bytesOf(',"message":')
}

/** UTF-8 of JSON-quoted strings already seen (names, attribute keys and values repeat); bounded. */
const quotedBytes = new Map<string, Uint8Array>()

/**
 * Writes an export request as UTF-8 straight into a growing buffer: ids and digits as bytes,
 * repeated strings from a cache of their encoded JSON. Building one string for the request and
 * encoding it cost about three times as much (flattening a tree of some 20,000 pieces per batch).
 */
export class OtlpJsonWriter {
  private buf: Uint8Array
  private off = 0
  private readonly prefix: Uint8Array
  private readonly suffix = bytesOf(SUFFIX)

  constructor (prefix: string, initialBytes = 64 * 1024) {
    this.prefix = bytesOf(prefix)
    this.buf = new Uint8Array(Math.max(initialBytes, 1024))
  }

  /** Spans added since the last take(). */
  count = 0

  /** The request body for `spans`, in a buffer of its own (drops what add() had gathered). */
  encode (spans: readonly ReadableSpan[]): Uint8Array {
    this.off = 0
    this.count = 0
    for (const s of spans) this.add(s)
    return this.take()
  }

  /** Appends one span to the request being gathered: the span object itself is not kept. */
  add (span: ReadableSpan): void {
    if (this.count === 0) { this.off = 0; this.raw(this.prefix) } else { this.room(1); this.buf[this.off++] = 44 }
    this.span(span)
    this.count++
  }

  /** The gathered request body, in a buffer of its own; the writer starts over. */
  take (): Uint8Array {
    if (this.count === 0) { this.off = 0; this.raw(this.prefix) }
    this.raw(this.suffix)
    this.count = 0
    const body = this.buf.slice(0, this.off)
    this.off = 0
    return body
  }

  private room (n: number): void {
    if (this.off + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.off + n))
    next.set(this.buf.subarray(0, this.off))
    this.buf = next
  }

  private raw (b: Uint8Array): void {
    this.room(b.length)
    const buf = this.buf
    let off = this.off
    if (b.length > 64) { buf.set(b, off); off += b.length } else for (let i = 0; i < b.length; i++) buf[off++] = b[i]
    this.off = off
  }

  /** A string known to be ASCII (hex ids). */
  private ascii (s: string): void {
    this.room(s.length)
    const buf = this.buf
    let off = this.off
    for (let i = 0; i < s.length; i++) buf[off++] = s.charCodeAt(i)
    this.off = off
  }

  /** A non-negative integer below 2^53 in decimal; `width` pads with leading zeros. */
  private digits (n: number, width = 1): void {
    let len = 1
    for (let p = 10; p <= n && len < 17; p *= 10) len++
    if (len < width) len = width
    this.room(len)
    const buf = this.buf
    // Division, not %: n may pass 2^31 (seconds since the epoch), where % is a slow floating-point remainder.
    for (let i = this.off + len - 1; i >= this.off; i--) { const q = Math.floor(n / 10); buf[i] = 48 + n - q * 10; n = q }
    this.off += len
  }

  private nanos (ms: number): void {
    let seconds = Math.floor(ms / 1000)
    let nanos = Math.round((ms - seconds * 1000) * 1_000_000)
    if (nanos >= 1_000_000_000) { seconds++; nanos -= 1_000_000_000 }
    if (seconds === 0) { this.digits(nanos); return }
    this.digits(seconds)
    this.digits(nanos, 9)
  }

  private hr (t: HrTime): void {
    if (t[0] === 0) { this.digits(t[1]); return }
    this.digits(t[0])
    this.digits(t[1], 9)
  }

  private quoted (s: string): void {
    let q = quotedBytes.get(s)
    if (q === undefined) {
      q = bytesOf(JSON.stringify(s))
      if (quotedBytes.size < MAX_QUOTED && s.length <= 256) quotedBytes.set(s, q)
    }
    this.raw(q)
  }

  private span (s: ReadableSpan): void {
    const ctx = s.spanContext()
    const parent = s.parentSpanContext
    this.raw(F.traceId); this.ascii(ctx.traceId)
    this.raw(F.spanId); this.ascii(ctx.spanId)
    if (parent?.spanId !== undefined && parent.spanId !== '') { this.raw(F.parentSpanId); this.ascii(parent.spanId) }
    this.raw(F.flags); this.digits((ctx.traceFlags & 0xff) | 0x100 | (parent?.isRemote === true ? 0x200 : 0))
    this.raw(F.name); this.quoted(s.name)
    this.raw(F.kind); this.digits(s.kind + 1)
    this.raw(F.start)
    if (hasMs(s)) this.nanos(s.startMs); else this.hr(s.startTime)
    this.raw(F.end)
    if (hasMs(s)) this.nanos(s.endMs); else this.hr(s.endTime)
    this.raw(F.quote)
    let first = true
    const attrs = s.attributes
    for (const key in attrs) {
      const v = attrs[key]
      if (v === undefined || v === null) continue
      this.raw(first ? F.attributes : F.comma)
      first = false
      this.raw(F.key); this.quoted(key)
      if (typeof v === 'string') { this.raw(F.stringValue); this.quoted(v); this.raw(F.close2) } else { this.raw(F.value); this.raw(bytesOf(anyValue(v))); this.raw(F.close1) }
    }
    if (!first) this.raw(F.closeArray)
    if (s.status.code !== SpanStatusCode.UNSET) {
      this.raw(F.status); this.digits(s.status.code)
      if (s.status.message !== undefined && s.status.message !== '') { this.raw(F.message); this.raw(bytesOf(JSON.stringify(s.status.message))) }
      this.raw(F.close1)
    }
    this.raw(F.close1)
  }
}

type Post = (url: string, body: Uint8Array, timeoutMs: number) => Promise<void>

const isNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string'

/**
 * In Node, posts with node:http and a keep-alive agent: the bench measured fetch (undici) at about
 * 0.07 µs more per call at 1 % sampling (its body copies, streams and response objects). The module
 * is named at run time so browser bundles neither resolve nor include it (the tab uses fetch).
 */
async function nodeHttp (): Promise<Post> {
  const name = 'node:http'
  const http = await import(/* @vite-ignore */ name) as typeof import('node:http')
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  return async (url, body, timeoutMs) => {
    await new Promise<void>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': body.byteLength } }, (res) => {
        res.resume()
        res.on('end', () => { if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) resolve(); else reject(new OtlpExportError(`OTLP receiver answered ${res.statusCode}`)) })
        res.on('error', reject)
      })
      req.setTimeout(timeoutMs, () => { req.destroy(new OtlpExportError(`OTLP export timed out after ${timeoutMs} ms`)) })
      req.on('error', reject)
      req.end(body)
    })
  }
}

export interface OtlpJsonBatcherInit {
  url: string
  resource: Resource
  scope: { name: string, version?: string }
  /** Give up an export after this long. */
  timeoutMs: number
  /** Spans waiting for export at most (one export is in flight at a time); more are dropped and counted. */
  maxQueueSize: number
  /** A request goes out once this many spans wait, or `scheduledDelayMs` after the first one. */
  maxBatch: number
  scheduledDelayMs: number
}

/** Spans exported, failed and dropped (the adapter's TraceExportStats). */
export interface BatchStats { exported: number, failed: number, dropped: number }

/**
 * The span processor of the OTLP/HTTP path: each sampled span is written as OTLP JSON into the
 * pending request as it ends, so the span object dies young. Queued as objects (the SDK's
 * BatchSpanProcessor) they lived until the next export, long enough to be copied by the young
 * generation's collections and promoted: at 1 % sampling that cost a call about as much as
 * creating its spans (telemetry-cost, processor swapped for a no-op). Bounded like the SDK's
 * processor: one export in flight, at most `maxQueueSize` spans waiting, more dropped and counted.
 */
export class OtlpJsonBatcher implements SpanProcessor {
  private readonly init: OtlpJsonBatcherInit
  private readonly stats: BatchStats
  private readonly writer: OtlpJsonWriter
  private http: Promise<Post> | undefined
  private inflight: Promise<void> | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private stopped = false

  constructor (init: OtlpJsonBatcherInit, stats: BatchStats) {
    this.init = init
    this.stats = stats
    this.writer = new OtlpJsonWriter(requestPrefix(init.resource, init.scope))
  }

  onStart (): void {}

  onEnd (span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return
    if (this.stopped || this.writer.count >= this.init.maxQueueSize) { this.stats.dropped++; return }
    this.writer.add(span)
    if (this.writer.count >= this.init.maxBatch) this.send()
    else this.timer ??= unref(setTimeout(() => { this.timer = undefined; this.send() }, this.init.scheduledDelayMs))
  }

  /** Posts what waits unless an export is in flight (its end sends the rest). */
  private send (): void {
    if (this.inflight !== undefined || this.writer.count === 0) return
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined }
    const n = this.writer.count
    const body = this.writer.take()
    this.inflight = this.post(body).then(
      () => { this.stats.exported += n },
      () => { this.stats.failed += n }
    ).finally(() => {
      this.inflight = undefined
      if (this.writer.count >= this.init.maxBatch) this.send()
      else if (this.writer.count > 0) this.timer ??= unref(setTimeout(() => { this.timer = undefined; this.send() }, this.init.scheduledDelayMs))
    })
  }

  private async post (body: Uint8Array): Promise<void> {
    this.http ??= isNode ? nodeHttp() : Promise.resolve(fetchPost)
    await (await this.http)(this.init.url, body, this.init.timeoutMs)
  }

  /** Exports everything waiting, one request after another; failures are counted. */
  async forceFlush (): Promise<void> {
    for (;;) {
      if (this.inflight !== undefined) { await this.inflight; continue }
      if (this.writer.count === 0) return
      this.send()
    }
  }

  async shutdown (): Promise<void> {
    await this.forceFlush()
    this.stopped = true
  }
}

function unref (timer: ReturnType<typeof setTimeout>): ReturnType<typeof setTimeout> {
  (timer as { unref?: () => void }).unref?.()
  return timer
}

const fetchPost: Post = async (url, body, timeoutMs) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(timeoutMs) })
  // Read the (small) answer so the connection goes back to the pool.
  await res.arrayBuffer().catch(() => {})
  if (!res.ok) throw new OtlpExportError(`OTLP receiver answered ${res.status}`)
}
