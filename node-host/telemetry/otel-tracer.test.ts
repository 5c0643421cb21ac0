import { describe, it, expect } from 'vitest'
import { createServer } from 'node:net'
import { OtelTracerAdapter } from './otel-tracer.ts'
import { traced } from '../../core/telemetry/tracer.ts'
import { SpanKind as OtelSpanKind, SpanStatusCode } from '@opentelemetry/api'
import { ExportResultCode } from '@opentelemetry/core'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'

async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  return port
}

describe('OtelTracerAdapter', () => {
  it('counts export failures when the receiver is down and never slows the traced work', async () => {
    const tracer = new OtelTracerAdapter({ url: `http://127.0.0.1:${await closedPort()}/v1/traces`, ratio: 1, scheduledDelayMs: 10, exportTimeoutMs: 2_000 })
    const started = performance.now()
    for (let i = 0; i < 200; i++) await traced(tracer, 'work', { kind: 'client' }, async () => i)
    const elapsed = performance.now() - started
    // 200 spans through a dead receiver: the work never waits on an export.
    expect(elapsed).toBeLessThan(1_000)
    await tracer.flush()
    expect(tracer.stats.failed).toBe(200)
    expect(tracer.stats.exported).toBe(0)
    await tracer.shutdown()
  })

  it('drops and counts spans past its bounded queue', async () => {
    const tracer = new OtelTracerAdapter({ url: `http://127.0.0.1:${await closedPort()}/v1/traces`, ratio: 1, maxQueueSize: 10, scheduledDelayMs: 60_000, exportTimeoutMs: 2_000 })
    // The first full batch of 10 goes to the exporter at once; 10 more fill the queue while it is
    // in flight, the last 5 are dropped.
    for (let i = 0; i < 25; i++) tracer.start('work', { kind: 'internal' }).end()
    expect(tracer.stats.dropped).toBe(5)
    await tracer.shutdown()
    // Both batches' exports fail (refused), each counted once it has.
    const deadline = Date.now() + 5_000
    while (tracer.stats.failed < 20 && Date.now() < deadline) await new Promise<void>((resolve) => { setTimeout(resolve, 20) })
    expect(tracer.stats.failed).toBe(20)
  })

  it('samples the configured share of new traces (within 5 standard deviations)', () => {
    for (const ratio of [0, 0.01, 0.1, 0.5, 1]) {
      const tracer = new OtelTracerAdapter({ url: 'http://127.0.0.1:9/v1/traces', ratio, maxQueueSize: 1 })
      const n = 100_000
      let sampled = 0
      // Not ended: nothing is queued or exported.
      for (let i = 0; i < n; i++) if (tracer.start('x', { kind: 'client' }).recording) sampled++
      const sd = Math.sqrt(n * ratio * (1 - ratio))
      expect(Math.abs(sampled - n * ratio)).toBeLessThanOrEqual(5 * sd)
    }
  })

  it('samples by parent: an unsampled caller stays unsampled, a sampled one is followed at ratio 0', () => {
    const tracer = new OtelTracerAdapter({ url: 'http://127.0.0.1:9/v1/traces', ratio: 0 })
    const root = tracer.start('root', { kind: 'client' })
    expect(root.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    const sampledParent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const child = tracer.start('child', { kind: 'server', parent: sampledParent })
    expect(child.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/)
    expect(child.traceparent).not.toContain('b7ad6b7169203331')
    root.end(); child.end(new Error('x'))
  })
})

describe('OtelTracerAdapter spans', () => {
  it('exports each sampled span as the OTLP exporter expects it: ids, parent, kind, times, attributes, status, resource', async () => {
    const exported: ReadableSpan[] = []
    const exporter: SpanExporter = {
      export (spans, done) { exported.push(...spans); done({ code: ExportResultCode.SUCCESS }) },
      async shutdown () {}
    }
    const tracer = new OtelTracerAdapter({ url: 'http://127.0.0.1:9/v1/traces', ratio: 1, serviceName: 'svc' }, exporter)
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    const before = Date.now()
    const server = tracer.start('billing/charge', { kind: 'server', parent, attributes: { 'rpc.system': 'cell', 'rpc.method': 'charge' } })
    const root = tracer.start('billing/charge', { kind: 'client' })
    const unsampled = tracer.start('x', { kind: 'client', parent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' })
    expect(unsampled.recording).toBe(false)
    unsampled.end()
    const err = Object.assign(new Error('amount -1'), { remoteName: 'InvalidAmountError' })
    server.end(err)
    root.end()
    root.end()
    await tracer.flush()
    expect(exported).toHaveLength(2)
    const [s, r] = exported
    expect(s.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c')
    expect(s.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/)
    expect(server.traceparent).toBe(`00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`)
    expect(s.parentSpanContext).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', isRemote: true })
    expect(r.parentSpanContext).toBeUndefined()
    expect(r.spanContext().traceId).toMatch(/^(?!0{32})[0-9a-f]{32}$/)
    expect(r.spanContext().traceId).not.toBe(s.spanContext().traceId)
    expect([s.kind, r.kind]).toEqual([OtelSpanKind.SERVER, OtelSpanKind.CLIENT])
    expect(s.attributes).toEqual({ 'rpc.system': 'cell', 'rpc.method': 'charge', 'error.type': 'InvalidAmountError' })
    expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: 'InvalidAmountError: amount -1' })
    expect(r.status.code).toBe(SpanStatusCode.UNSET)
    expect(s.resource.attributes['service.name']).toBe('svc')
    expect(s.resource.attributes['telemetry.sdk.language']).toBe('nodejs')
    const startMs = s.startTime[0] * 1000 + s.startTime[1] / 1e6
    const endMs = s.endTime[0] * 1000 + s.endTime[1] / 1e6
    expect(startMs).toBeGreaterThanOrEqual(before - 1)
    expect(endMs).toBeGreaterThanOrEqual(startMs)
    expect(s.duration[0] * 1000 + s.duration[1] / 1e6).toBeCloseTo(endMs - startMs, 3)
    // Through the exporter's own JSON serializer: what the receiver gets.
    const body = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(exported))) as { resourceSpans: Array<{ scopeSpans: Array<{ scope: { name: string }, spans: Array<{ name: string, parentSpanId?: string, kind: number, startTimeUnixNano: string, endTimeUnixNano: string, status: { code: number } }> }> }> }
    const spans = body.resourceSpans[0].scopeSpans[0].spans
    expect(body.resourceSpans[0].scopeSpans[0].scope.name).toBe('cellmesh')
    expect(spans.map(x => [x.name, x.kind, x.parentSpanId, x.status.code])).toEqual([['billing/charge', 2, 'b7ad6b7169203331', 2], ['billing/charge', 3, undefined, 0]])
    expect(BigInt(spans[0].endTimeUnixNano) >= BigInt(spans[0].startTimeUnixNano)).toBe(true)
    expect(Number(BigInt(spans[0].startTimeUnixNano) / 1_000_000n)).toBeGreaterThanOrEqual(before - 1)
    await tracer.shutdown()
  })
})
