import { describe, it, expect } from 'vitest'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { ExportResultCode } from '@opentelemetry/core'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { OtelTracerAdapter } from './otel-tracer.ts'
import { OtlpJsonBatcher, OtlpJsonWriter, requestPrefix, type BatchStats, type OtlpJsonBatcherInit } from './otlp-json.ts'

/** Spans as the adapter records them: a root, a remote child with an error, odd attribute values. */
async function recordedSpans (): Promise<ReadableSpan[]> {
  const exported: ReadableSpan[] = []
  const exporter: SpanExporter = { export (spans, done) { exported.push(...spans); done({ code: ExportResultCode.SUCCESS }) }, async shutdown () {} }
  const tracer = new OtelTracerAdapter({ url: 'http://127.0.0.1:9/v1/traces', ratio: 1, serviceName: 'svc "q"' }, exporter)
  const root = tracer.start('billing/charge', { kind: 'client', attributes: { 'rpc.system': 'cell', 'rpc.service': 'billing', 'rpc.method': 'charge' } })
  const server = tracer.start('billing/charge', { kind: 'server', parent: root.traceparent, attributes: { 'rpc.system': 'cell', n: 42, ratio: 0.5, ok: true, 'ünï "quoted"\n': 'välue\u0001' } })
  const inner = tracer.start('späm ✓', { kind: 'internal', parent: server.traceparent })
  inner.end()
  server.end(Object.assign(new Error('amount "-1"\nbad'), { remoteName: 'InvalidAmountError' }))
  root.end()
  await tracer.flush()
  return exported
}

/** The SDK serializer's JSON without the fields proto3 JSON lets a writer leave out (zero, empty, absent). */
function withoutDefaults (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutDefaults)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined || (Array.isArray(x) && x.length === 0)) continue
      if (x === 0 && (k.startsWith('dropped') || k === 'code')) continue
      const y = withoutDefaults(x)
      if (k === 'status' && Object.keys(y as object).length === 0) continue
      out[k] = y
    }
    return out
  }
  return v
}

describe('OtlpJsonWriter', () => {
  it('writes the OTLP JSON the SDK serializer writes, less the default fields', async () => {
    const spans = await recordedSpans()
    expect(spans).toHaveLength(3)
    const writer = new OtlpJsonWriter(requestPrefix(spans[0].resource, spans[0].instrumentationScope), 16)
    const mine = JSON.parse(new TextDecoder().decode(writer.encode(spans))) as unknown
    const sdk = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans))) as unknown
    expect(mine).toEqual(withoutDefaults(sdk))
    // The buffer is reused: a second, smaller request is whole and independent of the first.
    const first = writer.encode(spans)
    const one = writer.encode(spans.slice(0, 1))
    expect(JSON.parse(new TextDecoder().decode(first))).toEqual(mine)
    expect((JSON.parse(new TextDecoder().decode(one)) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: unknown[] }> }> }).resourceSpans[0].scopeSpans[0].spans).toHaveLength(1)
    // Times are the spans' own to the nanosecond rounding of their milliseconds.
    const s = (mine as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ startTimeUnixNano: string, endTimeUnixNano: string }> }> }> }).resourceSpans[0].scopeSpans[0].spans[1]
    expect(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano)).toBe(true)
    expect(Number(BigInt(s.startTimeUnixNano) / 1_000_000n)).toBeCloseTo(spans[1].startTime[0] * 1000 + spans[1].startTime[1] / 1e6, -1)
  })
})

describe('OtlpJsonBatcher', () => {
  async function receiver (answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string, close: () => Promise<void> }> {
    const server = createServer(answer)
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    return {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`,
      close: async () => { server.closeAllConnections(); await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) }
    }
  }
  const batcherFor = (url: string, spans: ReadableSpan[], stats: BatchStats, o: Partial<OtlpJsonBatcherInit> = {}): OtlpJsonBatcher =>
    new OtlpJsonBatcher({ url, resource: spans[0].resource, scope: { name: 'cellmesh' }, timeoutMs: 2_000, maxQueueSize: 100, maxBatch: 3, scheduledDelayMs: 60_000, ...o }, stats)

  it('posts full batches at once and the rest on flush, as OTLP JSON; a refusal and a closed port count as failed', async () => {
    const spans = await recordedSpans()
    const bodies: string[] = []
    let status = 200
    const r = await receiver((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => { bodies.push(`${req.headers['content-type']} ${Buffer.concat(chunks).toString('utf8')}`); res.writeHead(status).end('{}') })
    })
    const stats = { exported: 0, failed: 0, dropped: 0 }
    const batcher = batcherFor(r.url, spans, stats)
    for (const s of spans) batcher.onEnd(s) // a full batch of 3: sent without waiting for the timer
    batcher.onEnd(spans[0])
    await batcher.forceFlush()
    expect(stats).toEqual({ exported: 4, failed: 0, dropped: 0 })
    expect(bodies).toHaveLength(2)
    expect(bodies[0].startsWith('application/json {')).toBe(true)
    type Body = { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: { stringValue?: string } }> }, scopeSpans: Array<{ scope: { name: string }, spans: Array<{ spanId: string }> }> }> }
    const first = JSON.parse(bodies[0].slice('application/json '.length)) as Body
    expect(first.resourceSpans[0].resource.attributes.find(a => a.key === 'service.name')?.value.stringValue).toBe('svc "q"')
    expect(first.resourceSpans[0].scopeSpans[0].scope.name).toBe('cellmesh')
    expect(first.resourceSpans[0].scopeSpans[0].spans.map(s => s.spanId)).toEqual(spans.map(s => s.spanContext().spanId))
    expect((JSON.parse(bodies[1].slice('application/json '.length)) as Body).resourceSpans[0].scopeSpans[0].spans.map(s => s.spanId)).toEqual([spans[0].spanContext().spanId])
    status = 503
    batcher.onEnd(spans[1])
    await batcher.forceFlush()
    expect(stats).toEqual({ exported: 4, failed: 1, dropped: 0 })
    await r.close()
    batcher.onEnd(spans[1])
    await batcher.forceFlush()
    expect(stats).toEqual({ exported: 4, failed: 2, dropped: 0 })
    await batcher.shutdown()
    batcher.onEnd(spans[1])
    expect(stats.dropped).toBe(1)
  })

  it('keeps one export in flight, drops past its bounded queue meanwhile, and times out a receiver that never answers', async () => {
    const spans = await recordedSpans()
    const r = await receiver(() => { /* never answers */ })
    const stats = { exported: 0, failed: 0, dropped: 0 }
    const batcher = batcherFor(r.url, spans, stats, { timeoutMs: 300, maxQueueSize: 3 })
    for (let i = 0; i < 3; i++) batcher.onEnd(spans[i]) // goes out and hangs
    for (let i = 0; i < 5; i++) batcher.onEnd(spans[i % 3]) // 3 wait, 2 dropped
    expect(stats.dropped).toBe(2)
    await batcher.shutdown()
    expect(stats).toEqual({ exported: 0, failed: 6, dropped: 2 })
    await r.close()
  })

  it('sends a partial batch after the scheduled delay', async () => {
    const spans = await recordedSpans()
    let received = 0
    const r = await receiver((req, res) => { req.resume(); req.on('end', () => { received++; res.writeHead(200).end('{}') }) })
    const stats = { exported: 0, failed: 0, dropped: 0 }
    const batcher = batcherFor(r.url, spans, stats, { scheduledDelayMs: 20 })
    batcher.onEnd(spans[0])
    const deadline = Date.now() + 5_000
    while (stats.exported < 1 && Date.now() < deadline) await new Promise<void>((resolve) => { setTimeout(resolve, 10) })
    expect(stats.exported).toBe(1)
    expect(received).toBe(1)
    await batcher.shutdown()
    await r.close()
  })
})
