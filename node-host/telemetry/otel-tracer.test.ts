import { describe, it, expect } from 'vitest'
import { createServer } from 'node:net'
import { OtelTracerAdapter } from './otel-tracer.ts'
import { traced } from '../../core/telemetry/tracer.ts'

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
