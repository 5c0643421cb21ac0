// The core Tracer port on OpenTelemetry JS: parent-based sampling with a ratio, and OTLP/HTTP
// (JSON) export through a bounded batch of spans written as JSON as they end (otlp-json.ts). No Node built-ins here: the light
// peer uses the same adapter in the tab (sdk-trace-base's browser build of the processor, fetch).
//
// Sampled spans do not go through the SDK's Tracer and Span: a call's span needs no context
// manager, sampler chain, span limits, attribute sanitizing, self-metrics or events, and those cost
// each process about 30 µs per sampled call (startSpan alone ~20 µs; profiled with `npm run bench`).
// A span here is a small ReadableSpan of its own, the record the SDK would hand its processors,
// written as OTLP JSON when it ends (otlp-json.ts reads its millisecond times directly), or, with
// an exporter of the caller's (tests), queued by the SDK's BatchSpanProcessor (2-3 µs to start and end).
import { SpanKind as OtelSpanKind, SpanStatusCode, TraceFlags, type Attributes, type Context, type HrTime, type Link, type SpanContext, type SpanStatus } from '@opentelemetry/api'
import { ExportResultCode, type ExportResult, type InstrumentationScope } from '@opentelemetry/core'
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor, type TimedEvent } from '@opentelemetry/sdk-trace-base'
import { OtlpJsonBatcher } from './otlp-json.ts'
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import type { SpanKind, TraceSpan, Tracer } from '../../core/telemetry/tracer.ts'

export interface OtlpTraceInit {
  /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. */
  url: string
  /** Share of new traces recorded (0..1, default 0.01); a call that arrives sampled stays sampled. */
  ratio?: number
  /** `service.name` of the spans (default "cell-node"). */
  serviceName?: string
  /** Spans waiting for export at most (default 2048); more are dropped and counted. */
  maxQueueSize?: number
  /** How long spans wait before a batch goes out (default 1000 ms). */
  scheduledDelayMs?: number
  /** Give up an export after this long (default 10 s). */
  exportTimeoutMs?: number
}

/** What an export costs the node: counted, never waited for by a call. */
export interface TraceExportStats {
  /** Spans handed to the exporter. */
  exported: number
  /** Spans whose export failed (receiver down, refused, timed out). */
  failed: number
  /** Spans dropped because the bounded queue was full. */
  dropped: number
}

const KINDS: Record<SpanKind, OtelSpanKind> = { client: OtelSpanKind.CLIENT, server: OtelSpanKind.SERVER, internal: OtelSpanKind.INTERNAL }
const SCOPE: InstrumentationScope = { name: 'cellmesh' }

export class OtelTracerAdapter implements Tracer {
  readonly stats: TraceExportStats = { exported: 0, failed: 0, dropped: 0 }
  private readonly processor: SpanProcessor
  private readonly resource: Resource
  private readonly ratio: number
  /**
   * New traces left unsampled before the next sampled one: drawn once per sampled trace from the
   * geometric distribution of the gap between successes of independent draws at `ratio` (the same
   * sampling as one Math.random per call, which cost an unsampled call ~10 ns).
   */
  private skip: number
  /**
   * What every unsampled new trace sends: one traceparent with the sampled flag clear, so the
   * next hops do not sample it either. Nothing records an unsampled trace, so its id need not be
   * unique, and a repeated header costs the wire codec nothing to encode and decode.
   */
  private readonly unsampled = new UnsampledSpan(randomTraceparent())
  /** The last unsampled parent seen and its span: a caller repeats one, so most checks are one comparison. */
  private lastUnsampledParent: UnsampledSpan = this.unsampled

  constructor (init: OtlpTraceInit, exporter?: SpanExporter) {
    const ratio = Math.min(1, Math.max(0, init.ratio ?? 0.01))
    this.ratio = ratio
    this.skip = nextSkip(ratio)
    const maxQueueSize = Math.max(1, init.maxQueueSize ?? 2048)
    // What a TracerProvider would give its spans: the SDK's default resource (telemetry.sdk.*) with our service name.
    this.resource = defaultResource().merge(resourceFromAttributes({ 'service.name': init.serviceName ?? 'cell-node' }))
    const maxBatch = Math.min(512, maxQueueSize)
    const scheduledDelayMs = init.scheduledDelayMs ?? 1000
    const timeoutMs = init.exportTimeoutMs ?? 10_000
    if (exporter === undefined) {
      // OTLP/HTTP: spans are written as JSON as they end (otlp-json.ts), not queued as objects.
      this.processor = new OtlpJsonBatcher({ url: init.url, resource: this.resource, scope: SCOPE, timeoutMs, maxQueueSize, maxBatch, scheduledDelayMs }, this.stats)
    } else {
      // Another exporter (tests): the SDK's BatchSpanProcessor hands it the span objects.
      const counting = new CountingExporter(exporter, this.stats)
      const batch = new BatchSpanProcessor(counting, { maxQueueSize, maxExportBatchSize: maxBatch, scheduledDelayMillis: scheduledDelayMs, exportTimeoutMillis: timeoutMs })
      this.processor = new DropCounter(batch, counting, maxQueueSize, this.stats)
    }
  }

  start (name: string, options: { kind: SpanKind, parent?: string, attributes?: Record<string, string | number | boolean> }): TraceSpan {
    // Unsampled traces (99 % at the default ratio) record nothing: a call only counts down to the
    // next sampled trace, or passes its unsampled parent on unchanged.
    const parent = options.parent
    if (parent === this.lastUnsampledParent.traceparent) return this.lastUnsampledParent
    if (parent === undefined || !WELL_FORMED.test(parent)) {
      if (this.skip > 0) { this.skip--; return this.unsampled }
      this.skip = nextSkip(this.ratio)
      return new RecordedSpan(this.processor, this.resource, name, KINDS[options.kind], randomId(4), undefined, options.attributes)
    }
    // Well formed (checked above): version 00, trace id, parent span id, flags.
    const flags = parseInt(parent.slice(53, 55), 16)
    if ((flags & 1) === 0) {
      this.lastUnsampledParent = new UnsampledSpan(parent)
      return this.lastUnsampledParent
    }
    const parentContext: SpanContext = { traceId: parent.slice(3, 35), spanId: parent.slice(36, 52), traceFlags: flags, isRemote: true }
    return new RecordedSpan(this.processor, this.resource, name, KINDS[options.kind], parentContext.traceId, parentContext, options.attributes)
  }

/** Exports what is queued (tests, stop); a failed export is counted in `stats`, not thrown. */
  async flush (): Promise<void> { await this.processor.forceFlush().catch(() => {}) }

  /** Exports what is queued and stops; failures are counted, not thrown. */
  async shutdown (): Promise<void> { await this.processor.shutdown().catch(() => {}) }
}

/** How many new traces to leave unsampled before the next sampled one, at `ratio` (Infinity at 0). */
export function nextSkip (ratio: number): number {
  if (ratio >= 1) return 0
  if (ratio <= 0) return Infinity
  // 1 - Math.random() is in (0, 1]: the log is finite.
  return Math.floor(Math.log(1 - Math.random()) / Math.log1p(-ratio))
}

/** Milliseconds since the epoch with sub-millisecond precision, monotonic within the process. */
function preciseNowMs (): number {
  return performance.timeOrigin + performance.now()
}

const WELL_FORMED = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/

/** Two hex digits per byte value. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
/** Character codes of the hex digits. */
const HEX_CODES = Array.from('0123456789abcdef', c => c.charCodeAt(0))

/**
 * 8 random hex digits (one Math.random draw, as the SDK's own id generator draws its ids), by
 * table: Number#toString(16) of a value past 2^31 takes V8's slow double-to-radix path, a few
 * hundred nanoseconds per call (it showed in the bench's profile).
 */
function hex8 (n: number = (Math.random() * 0x1_0000_0000) >>> 0): string {
  return HEX[n >>> 24] + HEX[(n >>> 16) & 0xff] + HEX[(n >>> 8) & 0xff] + HEX[n & 0xff]
}

const idCodes: number[] = new Array<number>(32).fill(0)

/**
 * A random id of `words` × 8 hex digits, never all zeros (invalid in W3C trace context), built as
 * one flat string (concatenated pieces would stay a tree of cons strings while the span is queued).
 */
function randomId (words: 2 | 4): string {
  let any = 0
  for (let w = 0; w < words; w++) {
    const n = (Math.random() * 0x1_0000_0000) >>> 0
    any |= n
    for (let d = 0; d < 8; d++) idCodes[w * 8 + d] = HEX_CODES[(n >>> (28 - 4 * d)) & 0xf]
  }
  if (any === 0) return randomId(words)
  return words === 2
    ? String.fromCharCode(idCodes[0], idCodes[1], idCodes[2], idCodes[3], idCodes[4], idCodes[5], idCodes[6], idCodes[7], idCodes[8], idCodes[9], idCodes[10], idCodes[11], idCodes[12], idCodes[13], idCodes[14], idCodes[15])
    : String.fromCharCode(...idCodes)
}

/** A fresh unsampled trace's traceparent (an all-zero id is invalid, hence the leading 1 bit). */
function randomTraceparent (): string {
  return `00-${(((Math.random() * 0x8000_0000) >>> 0) | 0x1000_0000).toString(16)}${hex8()}${hex8()}${hex8()}-${(((Math.random() * 0x8000_0000) >>> 0) | 0x1000_0000).toString(16)}${hex8()}-00`
}

/** Epoch milliseconds as an OpenTelemetry HrTime ([seconds, nanoseconds]). */
function hrTime (ms: number): HrTime {
  const seconds = Math.floor(ms / 1000)
  const nanos = Math.round((ms - seconds * 1000) * 1_000_000)
  return nanos >= 1_000_000_000 ? [seconds + 1, nanos - 1_000_000_000] : [seconds, nanos]
}

class UnsampledSpan implements TraceSpan {
  readonly recording = false
  readonly traceparent: string
  constructor (traceparent: string) { this.traceparent = traceparent }
  end (): void {}
}

const NO_LINKS: Link[] = []
const NO_EVENTS: TimedEvent[] = []
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET }

/**
 * A sampled span: the ReadableSpan the SDK's processors and OTLP exporter read, built directly.
 * Start and end times are fractional milliseconds (the SDK's default start time is Date.now(),
 * whole milliseconds, so a child starting within its parent's millisecond could appear to end
 * after it).
 */
class RecordedSpan implements TraceSpan, ReadableSpan {
  readonly recording = true
  readonly name: string
  readonly kind: OtelSpanKind
  readonly parentSpanContext: SpanContext | undefined
  status: SpanStatus = UNSET
  attributes: Attributes
  readonly links: Link[] = NO_LINKS
  readonly events: TimedEvent[] = NO_EVENTS
  ended = false
  readonly resource: Resource
  readonly instrumentationScope: InstrumentationScope = SCOPE
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  private readonly context: SpanContext
  private readonly processor: SpanProcessor
  /** Epoch milliseconds, fractional (the exporter encodes these, not the HrTime getters). */
  readonly startMs: number
  endMs = 0
  private header: string | undefined

  constructor (processor: SpanProcessor, resource: Resource, name: string, kind: OtelSpanKind, traceId: string, parent: SpanContext | undefined, attributes: Attributes | undefined) {
    this.startMs = preciseNowMs()
    this.processor = processor
    this.resource = resource
    this.name = name
    this.kind = kind
    this.parentSpanContext = parent
    this.context = { traceId, spanId: randomId(2), traceFlags: TraceFlags.SAMPLED }
    this.attributes = attributes ?? {}
  }

  spanContext (): SpanContext { return this.context }

  // Times as HrTime only when the exporter reads them: a queued span keeps two numbers, not three arrays.
  get startTime (): HrTime { return hrTime(this.startMs) }
  get endTime (): HrTime { return hrTime(this.endMs) }
  get duration (): HrTime { return hrTime(this.endMs - this.startMs) }

  get traceparent (): string {
    this.header ??= `00-${this.context.traceId}-${this.context.spanId}-01`
    return this.header
  }

  end (error?: unknown): void {
    if (this.ended) return
    if (error !== undefined) {
      // A cell's own error arrives as a RemoteError naming it: the span says the cell's name.
      const remote = (error as { remoteName?: unknown }).remoteName
      const name = typeof remote === 'string' ? remote : error instanceof Error ? ((error.constructor as { errorName?: string }).errorName ?? error.name) : 'Error'
      const message = error instanceof Error ? error.message : String(error)
      this.status = { code: SpanStatusCode.ERROR, message: `${name}: ${message}`.slice(0, 512) }
      this.attributes = { ...this.attributes, 'error.type': name }
    }
    this.endMs = Math.max(this.startMs, preciseNowMs())
    this.ended = true
    this.processor.onEnd(this)
  }
}

/** Counts exported and failed spans; the batch processor never waits on a call for it. */
class CountingExporter implements SpanExporter {
  private readonly inner: SpanExporter
  private readonly stats: TraceExportStats
  handed = 0
  constructor (inner: SpanExporter, stats: TraceExportStats) { this.inner = inner; this.stats = stats }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.handed += spans.length
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.stats.exported += spans.length
      else this.stats.failed += spans.length
      done(result)
    })
  }

  async shutdown (): Promise<void> { await this.inner.shutdown() }
  async forceFlush (): Promise<void> { await this.inner.forceFlush?.() }
}

/** Counts the spans the bounded BatchSpanProcessor drops when its queue is full. */
class DropCounter implements SpanProcessor {
  private readonly inner: SpanProcessor
  private readonly exporter: CountingExporter
  private readonly maxQueueSize: number
  private readonly stats: TraceExportStats
  private queued = 0
  constructor (inner: SpanProcessor, exporter: CountingExporter, maxQueueSize: number, stats: TraceExportStats) {
    this.inner = inner; this.exporter = exporter; this.maxQueueSize = maxQueueSize; this.stats = stats
  }

  onStart (span: Parameters<SpanProcessor['onStart']>[0], parent: Context): void { this.inner.onStart(span, parent) }
  onEnd (span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0) {
      // Spans leave the processor's queue as they are handed to the exporter.
      if (this.queued - this.exporter.handed >= this.maxQueueSize) this.stats.dropped++
      else this.queued++
    }
    this.inner.onEnd(span)
  }

  async forceFlush (): Promise<void> { await this.inner.forceFlush() }
  async shutdown (): Promise<void> { await this.inner.shutdown() }
}
