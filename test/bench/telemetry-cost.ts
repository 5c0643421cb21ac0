// The work telemetry adds to a call, without the network: `node test/bench/telemetry-cost.ts [ratio]`.
// One process runs the instrumented path as the bench's two ends do it (a client span through
// traced(), then the server's tracedHandler, call meter and `settled` with its turn-cached clock,
// sampling `ratio` (default 0.01) parent-based, spans exported over OTLP/HTTP to the sink process)
// against the plain handler, in alternating blocks of 100,000 calls (512 at a time, an event-loop
// turn between batches so exports run). It prints the median extra CPU time per call. Less
// sensitive to other processes than `npm run bench`'s throughput ratio: both paths share the cores'
// contention block by block, and no pipeline between two processes amplifies a stall.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import { traced, tracedHandler } from '../../core/telemetry/tracer.ts'
import type { CallContext, SynapseHandler } from '../../core/synapse/index.ts'
import { OtelTracerAdapter } from '../../node-host/telemetry/otel-tracer.ts'
import { CallMeter } from '../../node-host/telemetry/call-meter.ts'
import { turnCached } from '../../core/synapse/turn-clock.ts'

const ratio = Number(process.argv[2] ?? 0.01)
const sink = fork(fileURLToPath(new URL('./otlp-sink.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
const url = await new Promise<string>((resolve) => { sink.once('message', (m: { url: string }) => { resolve(m.url) }) })
const serverTracer = new OtelTracerAdapter({ url, ratio, serviceName: 'bench-server' })
const clientTracer = new OtelTracerAdapter({ url, ratio, serviceName: 'bench-client', scheduledDelayMs: 200 })
const meter = new CallMeter({ registry: new Registry() })
const payload = new Uint8Array(64)
const plain: SynapseHandler = { call: async (ctx) => ctx.payload, message () {}, async * stream () {} }
const instrumented = tracedHandler(serverTracer, meter.wrap(plain))
const signal = new AbortController().signal
const ctxOf = (traceparent: string | undefined): CallContext => ({ cell: 'bench-traced', method: 'echo', payload, principal: { authority: 'a', peerId: 'p', roles: ['caller'] } as unknown as CallContext['principal'], remotePeer: 'p', deadlineMs: Infinity, traceparent, signal })

// As the session runs a call: the handler's promise and one reaction; with a `settled` hook, two
// reads of the synapse's monotonic clock, which reads the time once per turn (turn-clock.ts).
const monotonicMs = turnCached(() => performance.now())
// eslint-disable-next-line @typescript-eslint/promise-function-async
const serve = (traceparent: string | undefined): Promise<Uint8Array> => {
  const ctx = ctxOf(traceparent)
  const start = monotonicMs()
  return instrumented.call(ctx).then((r) => { instrumented.settled?.(ctx, r, undefined, monotonicMs() - start); return r })
}
// eslint-disable-next-line @typescript-eslint/promise-function-async
const on = (): Promise<Uint8Array> => traced(clientTracer, 'bench-traced/echo', { kind: 'client' }, serve)
// eslint-disable-next-line @typescript-eslint/promise-function-async
const off = (): Promise<Uint8Array> => plain.call(ctxOf(undefined)).then(r => r)

async function block (call: () => Promise<Uint8Array>, n: number): Promise<number> {
  const c0 = process.cpuUsage()
  for (let i = 0; i < n; i += 512) {
    await Promise.all(Array.from({ length: 512 }, call))
    await new Promise(resolve => setImmediate(resolve))
  }
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / n
}

const N = 100_000
await block(on, N)
await block(off, N)
const extra: number[] = []
for (let r = 0; r < 12; r++) {
  const offFirst = r % 2 === 0
  const a = await block(offFirst ? off : on, N)
  const b = await block(offFirst ? on : off, N)
  extra.push(offFirst ? b - a : a - b)
}
await clientTracer.flush()
await serverTracer.flush()
const sorted = [...extra].sort((x, y) => x - y)
console.log(`telemetry CPU per call at sampling ${ratio * 100} %: ${((sorted[5] + sorted[6]) / 2).toFixed(3)} µs (median of 12 block pairs: ${extra.map(d => d.toFixed(2)).join(' ')}); spans exported ${clientTracer.stats.exported + serverTracer.stats.exported}, dropped ${clientTracer.stats.dropped + serverTracer.stats.dropped}`)
await clientTracer.shutdown()
await serverTracer.shutdown()
sink.disconnect()
