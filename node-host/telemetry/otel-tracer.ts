// The core Tracer port on OpenTelemetry JS: parent-based sampling with a ratio, a bounded
// BatchSpanProcessor and OTLP/HTTP (JSON) export. No Node built-ins here: the light peer uses the
// same adapter with sdk-trace-web's WebTracerProvider (browser-host/light-peer.ts).
import { ROOT_CONTEXT, SpanKind as OtelSpanKind, SpanStatusCode, TraceFlags, trace, type Context, type Span, type Tracer as OtelTracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator, ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
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

/** The provider class: BasicTracerProvider in Node, WebTracerProvider in the tab. */
export type TracerProviderClass = new (config: ConstructorParameters<typeof BasicTracerProvider>[0]) => { getTracer: (name: string) => OtelTracer, shutdown: () => Promise<void>, forceFlush: () => Promise<void> }

const KINDS: Record<SpanKind, OtelSpanKind> = { client: OtelSpanKind.CLIENT, server: OtelSpanKind.SERVER, internal: OtelSpanKind.INTERNAL }
const propagator = new W3CTraceContextPropagator()
const setter = { set: (c: Record<string, string>, k: string, v: string) => { c[k] = v } }

export class OtelTracerAdapter implements Tracer {
  readonly stats: TraceExportStats = { exported: 0, failed: 0, dropped: 0 }
  private readonly tracer: OtelTracer
  private readonly provider: InstanceType<TracerProviderClass>
  private readonly ratio: number
  /**
   * What every unsampled new trace sends: one traceparent with the sampled flag clear, so the
   * next hops do not sample it either. Nothing records an unsampled trace, so its id need not be
   * unique, and a repeated header costs the wire codec nothing to encode and decode.
   */
  private readonly unsampled = new UnsampledSpan(randomTraceparent())
  /** The last unsampled parent seen and its span: a caller repeats one, so most checks are one comparison. */
  private lastUnsampledParent: UnsampledSpan = this.unsampled

  constructor (init: OtlpTraceInit, Provider: TracerProviderClass = BasicTracerProvider, exporter?: SpanExporter) {
    const ratio = Math.min(1, Math.max(0, init.ratio ?? 0.01))
    this.ratio = ratio
    const maxQueueSize = Math.max(1, init.maxQueueSize ?? 2048)
    const counting = new CountingExporter(exporter ?? new OTLPTraceExporter({ url: init.url, timeoutMillis: init.exportTimeoutMs ?? 10_000 }), this.stats)
    const batch = new BatchSpanProcessor(counting, { maxQueueSize, maxExportBatchSize: Math.min(512, maxQueueSize), scheduledDelayMillis: init.scheduledDelayMs ?? 1000, exportTimeoutMillis: init.exportTimeoutMs ?? 10_000 })
    this.provider = new Provider({
      resource: resourceFromAttributes({ 'service.name': init.serviceName ?? 'cell-node' }),
      // The ratio is decided in start(), before the SDK sees an unsampled trace at all.
      sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
      spanProcessors: [new DropCounter(batch, counting, maxQueueSize, this.stats)]
    })
    this.tracer = this.provider.getTracer('cellmesh')
  }

  start (name: string, options: { kind: SpanKind, parent?: string, attributes?: Record<string, string | number | boolean> }): TraceSpan {
    // Unsampled traces (99 % at the default ratio) never reach the SDK: a call only pays for a
    // random traceparent, or passes its unsampled parent on unchanged (nothing records either).
    let parent: Context = ROOT_CONTEXT
    if (options.parent === this.lastUnsampledParent.traceparent) return this.lastUnsampledParent
    if (options.parent === undefined || !WELL_FORMED.test(options.parent)) {
      if (this.ratio < 1 && Math.random() >= this.ratio) return this.unsampled
    } else {
      // Well formed (checked above): version 00, trace id, parent span id, flags.
      const flags = parseInt(options.parent.slice(53, 55), 16)
      if ((flags & 1) === 0) {
        this.lastUnsampledParent = new UnsampledSpan(options.parent)
        return this.lastUnsampledParent
      }
      parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: options.parent.slice(3, 35), spanId: options.parent.slice(36, 52), traceFlags: flags, isRemote: true })
    }
    // Explicit start and end times in fractional ms: the SDK's own start time is Date.now(), whole
    // milliseconds, so a child starting within the same millisecond as its parent could appear to
    // end after it.
    const span = this.tracer.startSpan(name, { kind: KINDS[options.kind], attributes: options.attributes, startTime: preciseNowMs() }, parent)
    return new OtelSpan(span)
  }

  /** Exports what is queued (tests, stop); a failed export is counted in `stats`, not thrown. */
  async flush (): Promise<void> { await this.provider.forceFlush().catch(() => {}) }

  /** Exports what is queued and stops; failures are counted, not thrown. */
  async shutdown (): Promise<void> { await this.provider.shutdown().catch(() => {}) }
}

/** Milliseconds since the epoch with sub-millisecond precision, monotonic within the process. */
function preciseNowMs (): number {
  return performance.timeOrigin + performance.now()
}

const WELL_FORMED = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/

/** 8 random hex digits (one Math.random draw: unsampled ids only need to be unlikely to repeat). */
function hex8 (): string {
  return ((Math.random() * 0x1_0000_0000) >>> 0).toString(16).padStart(8, '0')
}

/** A fresh unsampled trace's traceparent (an all-zero id is invalid, hence the leading 1 bit). */
function randomTraceparent (): string {
  return `00-${(((Math.random() * 0x8000_0000) >>> 0) | 0x1000_0000).toString(16)}${hex8()}${hex8()}${hex8()}-${(((Math.random() * 0x8000_0000) >>> 0) | 0x1000_0000).toString(16)}${hex8()}-00`
}

class UnsampledSpan implements TraceSpan {
  readonly recording = false
  readonly traceparent: string
  constructor (traceparent: string) { this.traceparent = traceparent }
  end (): void {}
}

class OtelSpan implements TraceSpan {
  readonly recording = true
  private readonly span: Span
  private header: string | undefined
  constructor (span: Span) { this.span = span }

  get traceparent (): string | undefined {
    if (this.header === undefined) {
      const carrier: Record<string, string> = {}
      propagator.inject(trace.setSpan(ROOT_CONTEXT, this.span), carrier, setter)
      this.header = carrier.traceparent
    }
    return this.header
  }

  end (error?: unknown): void {
    if (error !== undefined) {
      // A cell's own error arrives as a RemoteError naming it: the span says the cell's name.
      const remote = (error as { remoteName?: unknown }).remoteName
      const name = typeof remote === 'string' ? remote : error instanceof Error ? ((error.constructor as { errorName?: string }).errorName ?? error.name) : 'Error'
      const message = error instanceof Error ? error.message : String(error)
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: `${name}: ${message}`.slice(0, 512) })
      this.span.setAttribute('error.type', name)
    }
    this.span.end(preciseNowMs())
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
