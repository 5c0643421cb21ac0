import { describe, it, expect } from 'vitest'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer'
import { OtelTracerAdapter } from './otel-tracer.ts'
import { OtlpJsonExporter, OtlpJsonWriter, requestPrefix } from './otlp-json.ts'

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

describe('OtlpJsonExporter', () => {
  async function receiver (answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string, close: () => Promise<void> }> {
    const server = createServer(answer)
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    return {
      url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`,
      close: async () => { server.closeAllConnections(); await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) }
    }
  }
  const exportOnce = async (exporter: OtlpJsonExporter, spans: ReadableSpan[]): Promise<ExportResult> => await new Promise((resolve) => { exporter.export(spans, resolve) })

  it('posts the batch as OTLP JSON and reports success, failure on a refusal and on a closed port', async () => {
    const spans = await recordedSpans()
    const bodies: string[] = []
    let status = 200
    const r = await receiver((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => { bodies.push(`${req.headers['content-type']} ${Buffer.concat(chunks).toString('utf8')}`); res.writeHead(status).end('{}') })
    })
    const exporter = new OtlpJsonExporter({ url: r.url, resource: spans[0].resource, scope: { name: 'cellmesh' }, timeoutMs: 2_000 })
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.SUCCESS)
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.SUCCESS)
    expect(bodies).toHaveLength(2)
    expect(bodies[0].startsWith('application/json {')).toBe(true)
    const body = JSON.parse(bodies[0].slice('application/json '.length)) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string, value: { stringValue?: string } }> }, scopeSpans: Array<{ scope: { name: string }, spans: Array<{ spanId: string }> }> }> }
    expect(body.resourceSpans[0].resource.attributes.find(a => a.key === 'service.name')?.value.stringValue).toBe('svc "q"')
    expect(body.resourceSpans[0].scopeSpans[0].scope.name).toBe('cellmesh')
    expect(body.resourceSpans[0].scopeSpans[0].spans.map(s => s.spanId)).toEqual(spans.map(s => s.spanContext().spanId))
    status = 503
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.FAILED)
    await r.close()
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.FAILED)
    await exporter.shutdown()
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.FAILED)
  })

  it('fails a batch at once while the bounded number of exports is in flight, and times out a receiver that never answers', async () => {
    const spans = await recordedSpans()
    const r = await receiver(() => { /* never answers */ })
    const exporter = new OtlpJsonExporter({ url: r.url, resource: spans[0].resource, scope: { name: 'cellmesh' }, timeoutMs: 300, maxConcurrent: 1 })
    const slow = exportOnce(exporter, spans)
    expect((await exportOnce(exporter, spans)).code).toBe(ExportResultCode.FAILED)
    expect((await slow).code).toBe(ExportResultCode.FAILED)
    await exporter.shutdown()
    await r.close()
  })
})
