// The tracing port. Hosts implement it with OpenTelemetry JS (node-host/telemetry/otel-tracer.ts,
// the light peer with the same adapter and OTLP/HTTP exporter); core only starts spans, ends them with a status and carries
// the W3C traceparent in synapse call frames, so it stays free of any SDK.
import type { SynapseHandler, CallContext } from '../synapse/index.ts'

export type SpanKind = 'client' | 'server' | 'internal'

export interface TraceSpan {
  /** The W3C traceparent naming this span as the parent of the next hop (undefined when not recorded). */
  readonly traceparent: string | undefined
  /** False for an unsampled span: ending it records nothing. */
  readonly recording: boolean
  /** Ends the span: OK without `error`, ERROR with the error's name and message otherwise. */
  end (error?: unknown): void
}

export interface Tracer {
  /** Starts a span, a child of `parent` (a W3C traceparent) when given; sampling follows the parent. */
  start (name: string, options: { kind: SpanKind, parent?: string, attributes?: Record<string, string | number | boolean> }): TraceSpan
}

/**
 * Runs `fn` inside a span handed the span's traceparent; the span ends with the outcome. An
 * unrecorded span adds no promise reaction: the answer leaves in the same turn as without tracing.
 */
export function traced<T> (tracer: Tracer | undefined, name: string, options: { kind: SpanKind, parent?: string, attributes?: Record<string, string | number | boolean> }, fn: (traceparent: string | undefined) => Promise<T>): Promise<T> { // eslint-disable-line @typescript-eslint/promise-function-async
  if (tracer === undefined) return fn(options.parent)
  const span = tracer.start(name, options)
  if (!span.recording) return fn(span.traceparent ?? options.parent)
  let result: Promise<T>
  try {
    result = fn(span.traceparent ?? options.parent)
  } catch (err) {
    span.end(err)
    return Promise.reject(err) // eslint-disable-line @typescript-eslint/prefer-promise-reject-errors
  }
  return result.then((value) => { span.end(); return value }, (err: unknown) => { span.end(err); throw err })
}

const TRACEPARENT = /^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/

/** A well-formed W3C traceparent (version 00) whose sampled flag is clear. */
export function isUnsampledTraceparent (traceparent: string): boolean {
  return TRACEPARENT.test(traceparent) && (parseInt(traceparent.slice(53, 55), 16) & 1) === 0
}

/**
 * A check "is this caller's traceparent unsampled?" for one serving path. Callers repeat one
 * unsampled traceparent, which the frame decoder hands over as the same string, so the check is
 * usually one comparison with the last one seen.
 */
export function unsampledParentCheck (): (traceparent: string | undefined) => boolean {
  let lastUnsampled: string | undefined
  return (traceparent) => {
    if (traceparent === undefined) return false
    if (traceparent === lastUnsampled) return true
    if (!isUnsampledTraceparent(traceparent)) return false
    lastUnsampled = traceparent
    return true
  }
}

/**
 * A synapse handler whose calls each run in a server span, the child of the caller's traceparent.
 * A call whose parent is unsampled skips the tracer altogether (sampling follows the parent, so
 * no span would record): no span name or attributes are built for it (unsampledParentCheck).
 */
export function tracedHandler (tracer: Tracer | undefined, handler: SynapseHandler): SynapseHandler {
  if (tracer === undefined) return handler
  const unsampled = unsampledParentCheck()
  return {
    ...handler,
    call: (ctx: CallContext) => { // eslint-disable-line @typescript-eslint/promise-function-async
      const parent = ctx.traceparent
      if (unsampled(parent)) return handler.call(ctx)
      return traced(
        tracer, `${ctx.cell}/${ctx.method}`, { kind: 'server', parent, attributes: { 'rpc.system': 'cell', 'rpc.service': ctx.cell, 'rpc.method': ctx.method } },
        // eslint-disable-next-line @typescript-eslint/promise-function-async
        (traceparent) => handler.call(traceparent === parent ? ctx : withTraceparent(ctx, traceparent)))
    }
  }
}

/** `ctx` seen with another traceparent (the signal stays the lazily created one of the call). */
function withTraceparent (ctx: CallContext, traceparent: string | undefined): CallContext {
  return new RetracedContext(ctx, traceparent)
}

class RetracedContext implements CallContext {
  readonly cell: string
  readonly method: string
  readonly payload: Uint8Array
  readonly principal: CallContext['principal']
  readonly remotePeer: string
  readonly deadlineMs: number
  readonly traceparent: string | undefined
  private readonly inner: CallContext

  constructor (inner: CallContext, traceparent: string | undefined) {
    this.inner = inner
    this.cell = inner.cell
    this.method = inner.method
    this.payload = inner.payload
    this.principal = inner.principal
    this.remotePeer = inner.remotePeer
    this.deadlineMs = inner.deadlineMs
    this.traceparent = traceparent
  }

  get signal (): AbortSignal { return this.inner.signal }
}
