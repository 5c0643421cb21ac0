// The bench's server process: a libp2p node (TCP, Noise, yamux) serving synapse plus the raw
// baselines. Tells its parent its address over IPC and exits when the parent goes away.
import { acceptingAuth, createSynapseNode } from './nodes.ts'
import { RAW_ECHO, RAW_ONEWAY, handleRawEcho, handleRawOneway } from './bench-protocols.ts'
import type { SynapseHandler } from '../../core/synapse/index.ts'
import { tracedHandler } from '../../core/telemetry/tracer.ts'
import { NodeMetrics } from '../../node-host/telemetry/node-metrics.ts'
import { OtelTracerAdapter } from '../../node-host/telemetry/otel-tracer.ts'
import { startGrpcServer, startNatsServing } from './peers.ts'

let messages = 0
let messageBytes = 0
const EMPTY = new Uint8Array(0)

const handler: SynapseHandler = {
  async call (ctx) {
    if (ctx.method === 'echo') return ctx.payload
    if (ctx.method === 'count') {
      // Frames are processed in order, so every message sent before this call has been handled.
      const out = new Uint8Array(16)
      const view = new DataView(out.buffer)
      view.setFloat64(0, messages)
      view.setFloat64(8, messageBytes)
      messages = 0
      messageBytes = 0
      return out
    }
    return EMPTY
  },
  message (ctx) {
    messages++
    messageBytes += ctx.payload.length
  },
  async * stream () {}
}

// Cell "bench-traced" on a second node in this process: the same handler as a full node serves it,
// with metrics (the call meter, its `settled` hook called by the session) and tracing on (a server
// span per sampled call, the child of the frame's traceparent; new traces sampled at
// BENCH_TRACE_RATIO). The first node serves "bench" with neither, so "off" pays for nothing of it.
const metrics = new NodeMetrics()
const tracer = process.env.BENCH_OTLP !== undefined ? new OtelTracerAdapter({ url: process.env.BENCH_OTLP, ratio: Number(process.env.BENCH_TRACE_RATIO ?? '0.01'), serviceName: 'bench-server' }) : undefined
const instrumented = tracedHandler(tracer, metrics.calls.wrap(handler))

const node = await createSynapseNode({ ...acceptingAuth(), handler })
// The telemetry rounds compare two fresh connections with the same history: "off" to a node of its
// own (not the one the earlier figures warmed up), "on" to the instrumented one.
const plainNode = await createSynapseNode({ ...acceptingAuth(), handler })
const tracedNode = await createSynapseNode({ ...acceptingAuth(), handler: instrumented })
await node.handle(RAW_ONEWAY, handleRawOneway)
await node.handle(RAW_ECHO, handleRawEcho)
// The peers' serving ends (peers.ts): gRPC always, nats when the runner started a nats-server.
const grpcServer = await startGrpcServer()
const natsServing = process.env.BENCH_NATS_URL !== undefined ? await startNatsServing(process.env.BENCH_NATS_URL) : undefined

if (process.env.BENCH_DEBUG !== undefined) {
  let total = 0
  const orig = handler.message
  handler.message = (ctx) => { total++; orig(ctx) }
  setInterval(() => { console.error(`server ${performance.timeOrigin + performance.now() | 0} received ${total} rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`) }, 250).unref()
}

process.on('message', (m) => {
  // The parent asks for the call meter's exposition (to show the metrics were kept).
  if (m === 'metrics') void metrics.text().then((text) => { process.send?.({ metrics: text }) })
  // And for the CPU time this process has used (µs), to bill each figure its CPU per call.
  // With the answer writes of the telemetry rounds' two nodes (batching: answers per write).
  if (m === 'cpu') {
    const c = process.cpuUsage()
    const writes = (n: typeof node): { writes: number, framesOut: number } => { const s = n.services.synapse.stats().server; return { writes: s.writes, framesOut: s.framesOut } }
    process.send?.({ cpuUs: c.user + c.system, plain: writes(plainNode), traced: writes(tracedNode) })
  }
})
process.send?.({ addr: node.getMultiaddrs()[0].toString(), plainAddr: plainNode.getMultiaddrs()[0].toString(), tracedAddr: tracedNode.getMultiaddrs()[0].toString(), grpcPort: grpcServer.port })
const shutdown = (): void => {
  grpcServer.stop()
  Promise.all([node.stop(), plainNode.stop(), tracedNode.stop(), natsServing?.close()]).then(() => process.exit(0), () => process.exit(1))
}
process.on('disconnect', shutdown)
process.on('SIGTERM', shutdown)
