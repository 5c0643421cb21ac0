// Runs the synapse bench against a server in a second process and returns the figures.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { acceptingAuth, createSynapseNode } from './nodes.ts'
import type { SynapseNode } from './nodes.ts'
import { RAW_ECHO, RAW_ONEWAY, drained } from './bench-protocols.ts'
import { closedLoop } from './closed-loop.ts'
import type { Channel } from '../../core/synapse/index.ts'
import { traced, type Tracer } from '../../core/telemetry/tracer.ts'
import { OtelTracerAdapter } from '../../node-host/telemetry/otel-tracer.ts'
import { FULL_PATH_TOPOLOGY, fullPathCalls, fullPathSkipReason, nodeIdleCpuPercent, startFullPath, type LatencyFigure } from './full-path.ts'
import { startCapsidSegment, type CapsidFigure } from './capsid-segment.ts'
import { grpcUnary, isSkipped, natsOneway, natsRequests, startNatsServer, type PeerFigure, type Skipped } from './peers.ts'

export interface BenchOptions {
  /** Small fixed counts for a correctness run; otherwise fixed durations. */
  quick: boolean
  durationMs: number
  payloadBytes: number
  /** Calls kept in flight. */
  window: number
  /** Telemetry on/off pairs (at least 3, default 5; 1 when quick), each figure durationMs / 2 long. */
  rounds?: number
}

/**
 * Every measured figure (synapse, its peers, the full path and its segment) follows a warm-up of the
 * same load: WARM_MS of it in a full run, a fixed count in a quick one. Counts warmed the figures for
 * very different times (2,000 full-path calls at 64 in flight are 30 ms; 50,000 one-way messages
 * 20 ms); one duration for all keeps the ratios fair. (On the AMD VM of 1 Dec it moved no figure
 * beyond the run-to-run spread of that shared machine.)
 */
export const WARM_MS = 1_000
export function warmUp<T extends { quick: boolean, durationMs: number }> (o: T): T {
  return o.quick ? o : { ...o, durationMs: WARM_MS }
}

export interface Figure {
  name: string
  ops: number
  ms: number
  perSec: number
  /** Work the other end confirmed (messages counted, calls answered, bytes echoed). */
  confirmed: number
  /** CPU time both processes spent per operation (µs), where measured. */
  cpuUsPerOp?: number
}

export interface BenchResult {
  rawOneway: Figure
  rawEcho: Figure
  oneway: Figure
  calls: Figure
  /**
   * Synapse calls at the full path's goal window (FULL_PATH_WINDOW in flight): the synapse hop of the
   * full path alone, at the same concurrency.
   */
  callsAtPathWindow: Figure
  /** Synapse calls again, interleaved with `tracedCalls` in the same run (metrics and tracing off). */
  plainCalls: Figure
  /** Synapse calls with metrics and tracing on (client and server spans, sampling `traceRatio`). */
  tracedCalls: Figure
  /**
   * Per round: on/off throughput of that round's pair (the order alternates round by round), and
   * the CPU time per call both processes spent (client + server, µs) in each figure.
   */
  rounds: Array<{ off: Figure, on: Figure, ratio: number, offCpuUsPerCall: number, onCpuUsPerCall: number, offFramesPerWrite: number, onFramesPerWrite: number, offAnswersPerWrite: number, onAnswersPerWrite: number }>
  /** Median of the rounds' on/off throughput ratios: the figure the < 10 % goal reads. */
  telemetryRatio: number
  /**
   * Median of the rounds' on/off ratios of CPU time per call (client + server): what telemetry
   * costs in work, less sensitive than throughput to other processes taking the cores.
   */
  telemetryCpuRatio: number
  traceRatio: number
  /** Spans the OTLP sink received. */
  spansExported: number
  /** Calls made to the instrumented cell, warm-up included. */
  instrumentedCalls: number
  /** Calls the server's call meter counted ok for the instrumented cell (cell_synapse_calls_total). */
  meteredCalls: number
  /** Observations in its latency histogram (cell_synapse_call_duration_seconds_count). */
  meteredLatencies: number
  /** nats-server + nats.js and grpc-js, measured in this run (or why not). */
  peers: {
    natsVersion?: string
    natsOneway: PeerFigure | Skipped
    natsRequests: PeerFigure | Skipped
    grpc: PeerFigure | Skipped
  }
  /** billing.quote through caller → synapse → full node → capsid → bubblewrap replica, at 1, 64 and 256 in flight. */
  fullPath: {
    topology: string
    figures: LatencyFigure[]
    nodeIdleCpuPercent: number
    /** The capsid hop alone (host in this process ↔ the same bubblewrap replica setup) at FULL_PATH_WINDOW in flight. */
    capsid: CapsidFigure
  } | Skipped
}

/** In-flight levels of the full-path figures. */
export const FULL_PATH_IN_FLIGHT = [1, 64, 256]
/** The full path's goal is read at this many calls in flight (issue 15); its hops are also measured alone there. */
export const FULL_PATH_WINDOW = 64
/** The window of the peers' request figures (grpc-js unary, nats request/reply). */
export const PEER_WINDOW = 256

const now = (): number => performance.now()

function figure (name: string, ops: number, ms: number, confirmed: number): Figure {
  return { name, ops, ms, perSec: ops / (ms / 1000), confirmed }
}

interface ServerCpu { cpuUs: number, plain: { writes: number, framesOut: number }, traced: { writes: number, framesOut: number } }

interface BenchServer {
  /** The node serving "bench" (no telemetry) and the raw baselines. */
  addr: string
  /** Another node serving "bench" (no telemetry): the telemetry rounds' "off", a fresh connection like "on"'s. */
  plainAddr: string
  /** The node serving "bench-traced" with the call meter and tracing. */
  tracedAddr: string
  /** The gRPC server's port (in the server process). */
  grpcPort: number
  /** The instrumented node's Prometheus exposition. */
  metrics: () => Promise<string>
  /** CPU time the server process has used (µs), and the answer writes of its plain and traced nodes. */
  cpuUs: () => Promise<ServerCpu>
  stop: () => void
}

async function startServer (env: Record<string, string>): Promise<BenchServer> {
  // BENCH_SERVER_PROF=dir writes a V8 CPU profile of the server process there.
  const prof = process.env.BENCH_SERVER_PROF
  const execArgv = prof === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${prof}`]
  const child = fork(fileURLToPath(new URL('./bench-server.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env: { ...process.env, ...env } })
  const { addr, plainAddr, tracedAddr, grpcPort } = await new Promise<{ addr: string, plainAddr: string, tracedAddr: string, grpcPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('bench server did not start within 20 s')) }, 20_000)
    child.once('message', (m: { addr: string, plainAddr: string, tracedAddr: string, grpcPort: number }) => { clearTimeout(timer); resolve(m) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`bench server exited with ${code}`)) })
  })
  const metrics = async (): Promise<string> => await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('bench server sent no metrics within 5 s')) }, 5_000)
    child.once('message', (m: { metrics: string }) => { clearTimeout(timer); resolve(m.metrics) })
    child.send('metrics')
  })
  const cpuUs = async (): Promise<ServerCpu> => await new Promise<ServerCpu>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('bench server sent no CPU time within 5 s')) }, 5_000)
    child.once('message', (m: ServerCpu) => { clearTimeout(timer); resolve(m) })
    child.send('cpu')
  })
  return { addr, plainAddr, tracedAddr, grpcPort, metrics, cpuUs, stop: () => { child.disconnect(); child.kill('SIGTERM') } }
}

/** `run`'s figure with the CPU time client and server spent per operation. */
async function withCpu (server: BenchServer, run: () => Promise<Figure>): Promise<Figure> {
  const server0 = await server.cpuUs()
  const client0 = process.cpuUsage()
  const f = await run()
  const client = process.cpuUsage(client0)
  const server1 = await server.cpuUs()
  return { ...f, cpuUsPerOp: (client.user + client.system + server1.cpuUs - server0.cpuUs) / Math.max(1, f.ops) }
}

/** One sample's value from a Prometheus text exposition (0 when absent). */
function sample (text: string, series: string): number {
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** Plain libp2p stream, one send() per 64-byte message; the server reports the byte total. */
async function rawOneway (client: SynapseNode, addr: string, o: BenchOptions, count: number): Promise<Figure> {
  const stream = await client.dialProtocol(multiaddr(addr), RAW_ONEWAY)
  const total = new Promise<number>((resolve) => {
    stream.addEventListener('message', (evt) => { resolve(new DataView(evt.data.subarray().buffer, evt.data.subarray().byteOffset).getFloat64(0)) }, { once: true })
  })
  const payload = new Uint8Array(o.payloadBytes).fill(1)
  const start = now()
  const end = start + o.durationMs
  let sent = 0
  while (o.quick ? sent < count : now() < end) {
    for (let i = 0; i < 256; i++) {
      sent++
      if (!stream.send(payload)) { await drained(stream); break }
    }
  }
  await stream.close()
  const bytes = await total
  return figure('raw one-way', sent, now() - start, bytes / o.payloadBytes)
}

/** Plain libp2p stream, server echoes; `window` 64-byte requests kept in flight. */
async function rawEcho (client: SynapseNode, addr: string, o: BenchOptions, count: number): Promise<Figure> {
  const stream: Stream = await client.dialProtocol(multiaddr(addr), RAW_ECHO)
  const payload = new Uint8Array(o.payloadBytes).fill(2)
  const start = now()
  const end = start + o.durationMs
  let sent = 0
  let receivedBytes = 0
  let stopping = false
  let finished = (): void => {}
  const done = new Promise<void>(resolve => { finished = resolve })
  const more = (): void => {
    if (stopping) return
    if (o.quick ? sent >= count : now() >= end) { stopping = true; return }
    sent++
    stream.send(payload)
  }
  stream.addEventListener('message', (evt) => {
    const before = Math.floor(receivedBytes / o.payloadBytes)
    receivedBytes += evt.data.byteLength
    const completed = Math.floor(receivedBytes / o.payloadBytes) - before
    for (let i = 0; i < completed; i++) more()
    if (stopping && receivedBytes >= sent * o.payloadBytes) finished()
  })
  for (let i = 0; i < o.window; i++) more()
  await done
  const ms = now() - start
  await stream.close()
  return figure('raw ping-pong', sent, ms, receivedBytes / o.payloadBytes)
}

async function synapseOneway (channel: Channel, o: BenchOptions, count: number): Promise<Figure> {
  const payload = new Uint8Array(o.payloadBytes).fill(3)
  const start = now()
  const end = start + o.durationMs
  let sent = 0
  let lastLog = start
  let blocked = 0
  while (o.quick ? sent < count : now() < end) {
    if (process.env.BENCH_DEBUG !== undefined && now() - lastLog > 250) { lastLog = now(); console.error(`client ${performance.timeOrigin + now() | 0} sent ${sent} blocked ${blocked}`) }
    for (let i = 0; i < 1024; i++) {
      sent++
      if (!channel.send('tick', payload)) { blocked++; await channel.onDrain(); break }
    }
  }
  const sendMs = now() - start
  if (process.env.BENCH_DEBUG !== undefined) console.error(`one-way: sent ${sent} in ${sendMs.toFixed(0)} ms, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB, queued ${channel.stats().bytesOut}`)
  const reply = await channel.call('count', new Uint8Array(0))
  const ms = now() - start
  const delivered = new DataView(reply.buffer, reply.byteOffset).getFloat64(0)
  return figure('synapse one-way', sent, ms, delivered)
}

async function synapseCalls (channel: Channel, o: BenchOptions, count: number, name = 'synapse calls', tracer?: Tracer): Promise<Figure> {
  const payload = new Uint8Array(o.payloadBytes).fill(4)
  const { issued, confirmed, ms } = await closedLoop(o, o.window, count, async () => {
    const r = tracer === undefined
      ? await channel.call('echo', payload)
      // As Mesh.callBytes does it: no promise reaction added unless the call is sampled.
      // eslint-disable-next-line @typescript-eslint/promise-function-async
      : await traced(tracer, 'bench-traced/echo', { kind: 'client' }, (traceparent) => channel.call('echo', payload, traceparent !== undefined ? { traceparent } : {}))
    return r.length === payload.length
  })
  return figure(name, issued, ms, confirmed)
}

/** The OTLP/HTTP sink (otlp-sink.ts) in a third process, so collecting spans is not billed to either end. */
async function startSink (): Promise<{ url: string, spans: () => Promise<number>, stop: () => void }> {
  const child = fork(fileURLToPath(new URL('./otlp-sink.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('OTLP sink did not start within 20 s')) }, 20_000)
    child.once('message', (m: { url: string }) => { clearTimeout(timer); resolve(m.url) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`OTLP sink exited with ${code}`)) })
  })
  const spans = async (): Promise<number> => await new Promise<number>((resolve) => {
    const timer = setTimeout(() => { resolve(-1) }, 5_000)
    child.once('message', (m: { spans: number }) => { clearTimeout(timer); resolve(m.spans) })
    child.send('count')
  })
  return { url, spans, stop: () => { child.disconnect() } }
}

const TRACE_RATIO = 0.01

export async function runBench (o: BenchOptions): Promise<BenchResult> {
  const sink = await startSink()
  const nats = await startNatsServer()
  const server = await startServer({ BENCH_OTLP: sink.url, BENCH_TRACE_RATIO: String(TRACE_RATIO), ...(isSkipped(nats) ? {} : { BENCH_NATS_URL: nats.url }) })
  const client = await createSynapseNode({ ...acceptingAuth() })
  const tracer = new OtelTracerAdapter({ url: sink.url, ratio: TRACE_RATIO, serviceName: 'bench-client', scheduledDelayMs: 200 })
  try {
    const target = multiaddr(server.addr)
    const quickCount = { oneway: 20_000, calls: 5_000 }
    // BENCH_ONLY=oneway|calls runs that synapse figure and the telemetry rounds, BENCH_ONLY=telemetry only
    // the rounds, BENCH_ONLY=fullpath synapse calls and the full path (for profiling); the figures
    // left out report zero or "skipped".
    const only = process.env.BENCH_ONLY
    const skipped = (name: string): Figure => figure(name, 0, 1, 0)
    const rawOnewayFigure = only === undefined ? await rawOneway(client, server.addr, o, quickCount.oneway) : skipped('raw one-way')
    const rawEchoFigure = only === undefined ? await rawEcho(client, server.addr, o, quickCount.calls) : skipped('raw ping-pong')
    const channel = await client.services.synapse.open(target, 'bench')
    let oneway = skipped('synapse one-way')
    let calls = skipped('synapse calls')
    let callsAtPathWindow = skipped(`synapse calls, ${FULL_PATH_WINDOW} in flight`)
    if (only === undefined || only === 'oneway') {
      // Warm-up so JIT compilation is not billed to the measured figure.
      await synapseOneway(channel, warmUp(o), 50_000)
      oneway = await withCpu(server, async () => await synapseOneway(channel, o, quickCount.oneway))
    }
    if (only === undefined || only === 'calls' || only === 'fullpath') {
      await synapseCalls(channel, warmUp(o), 20_000)
      calls = await withCpu(server, async () => await synapseCalls(channel, o, quickCount.calls))
      const atWindow = { ...o, window: FULL_PATH_WINDOW }
      await synapseCalls(channel, warmUp(atWindow), 5_000)
      callsAtPathWindow = await withCpu(server, async () => await synapseCalls(channel, atWindow, quickCount.calls, `synapse calls, ${FULL_PATH_WINDOW} in flight`))
    }
    await channel.close()
    const peers = await runPeers(nats, server.grpcPort, o, only === undefined)
    const fullPath = only === undefined || only === 'fullpath' ? await runFullPath(o) : { skipped: `BENCH_ONLY=${only}` }
    // Metrics and tracing on against off, interleaved in this run so drift in the machine's load
    // (other processes share the cores) is shared: `rounds` pairs (an even number), the order
    // alternating (off then on, on then off, ...), each pair giving one on/off ratio; the median ratio
    // is the figure. Each figure follows a short untimed run of its own channel: without it, the first
    // figure of a round followed one of its own kind and the second a switch, and with an odd number
    // of rounds the median leaned to the order that charged "on" (about 3 % with identical code).
    const tracedChannel = await client.services.synapse.open(multiaddr(server.tracedAddr), 'bench-traced')
    const plainChannel = await client.services.synapse.open(multiaddr(server.plainAddr), 'bench')
    const roundCount = o.quick ? 1 : 2 * Math.ceil(Math.max(4, o.rounds ?? 6) / 2)
    const half = { ...o, durationMs: o.durationMs / 2 }
    let tracedIssued = 0
    /** A figure and the CPU time per call both processes spent on it. */
    /** A figure, the CPU time per call both processes spent on it, and the client's call frames per transport write (batching). */
    interface Billed { f: Figure, cpuUsPerCall: number, framesPerWrite: number, answersPerWrite: number }
    const perWrite = (a: { writes: number, framesOut: number }, b: { writes: number, framesOut: number }): number => (b.framesOut - a.framesOut) / Math.max(1, b.writes - a.writes)
    const billed = async (channel: Channel, side: 'plain' | 'traced', run: () => Promise<Figure>): Promise<Billed> => {
      const server0 = await server.cpuUs()
      const client0 = process.cpuUsage()
      const stats0 = channel.stats()
      const f = await run()
      const client = process.cpuUsage(client0)
      const stats = channel.stats()
      const server1 = await server.cpuUs()
      return { f, cpuUsPerCall: (client.user + client.system + server1.cpuUs - server0.cpuUs) / f.ops, framesPerWrite: perWrite(stats0, stats), answersPerWrite: perWrite(server0[side], server1[side]) }
    }
    const warm = { ...o, quick: true }
    const on = async (): Promise<Billed> => {
      tracedIssued += (await synapseCalls(tracedChannel, warm, 5_000, 'warm-up', tracer)).ops
      return await billed(tracedChannel, 'traced', async () => {
        const f = await synapseCalls(tracedChannel, half, quickCount.calls, 'calls, telemetry on', tracer)
        tracedIssued += f.ops
        return f
      })
    }
    const off = async (): Promise<Billed> => {
      await synapseCalls(plainChannel, warm, 5_000, 'warm-up')
      return await billed(plainChannel, 'plain', async () => await synapseCalls(plainChannel, half, quickCount.calls, 'calls, telemetry off'))
    }
    tracedIssued += (await synapseCalls(tracedChannel, { ...o, quick: true }, 20_000, 'warm-up', tracer)).ops
    await synapseCalls(plainChannel, { ...o, quick: true }, 20_000)
    const rounds: BenchResult['rounds'] = []
    for (let i = 0; i < roundCount; i++) {
      let offFigure: Billed
      let onFigure: Billed
      if (i % 2 === 0) { offFigure = await off(); onFigure = await on() } else { onFigure = await on(); offFigure = await off() }
      rounds.push({ off: offFigure.f, on: onFigure.f, ratio: onFigure.f.perSec / offFigure.f.perSec, offCpuUsPerCall: offFigure.cpuUsPerCall, onCpuUsPerCall: onFigure.cpuUsPerCall, offFramesPerWrite: offFigure.framesPerWrite, onFramesPerWrite: onFigure.framesPerWrite, offAnswersPerWrite: offFigure.answersPerWrite, onAnswersPerWrite: onFigure.answersPerWrite })
    }
    const sum = (fs: Figure[], name: string): Figure => figure(name, fs.reduce((n, f) => n + f.ops, 0), fs.reduce((n, f) => n + f.ms, 0), fs.reduce((n, f) => n + f.confirmed, 0))
    await tracedChannel.close()
    await plainChannel.close()
    await tracer.flush()
    const text = await server.metrics()
    const meteredCalls = sample(text, 'cell_synapse_calls_total{cell="bench-traced",method="echo",outcome="ok"}')
    const meteredLatencies = sample(text, 'cell_synapse_call_duration_seconds_count{cell="bench-traced",method="echo"}')
    return {
      rawOneway: rawOnewayFigure,
      rawEcho: rawEchoFigure,
      oneway,
      calls,
      callsAtPathWindow,
      plainCalls: sum(rounds.map(r => r.off), 'calls, telemetry off'),
      tracedCalls: sum(rounds.map(r => r.on), 'calls, telemetry on'),
      rounds,
      telemetryRatio: median(rounds.map(r => r.ratio)),
      telemetryCpuRatio: median(rounds.map(r => r.onCpuUsPerCall / r.offCpuUsPerCall)),
      traceRatio: TRACE_RATIO,
      spansExported: await sink.spans(),
      instrumentedCalls: tracedIssued,
      meteredCalls,
      meteredLatencies,
      peers,
      fullPath
    }
  } finally {
    await client.stop()
    server.stop()
    await tracer.shutdown()
    sink.stop()
    if (!isSkipped(nats)) nats.stop()
  }
}

async function runPeers (nats: Awaited<ReturnType<typeof startNatsServer>>, grpcPort: number, o: BenchOptions, run: boolean): Promise<BenchResult['peers']> {
  if (!run) return { natsOneway: { skipped: 'BENCH_ONLY' }, natsRequests: { skipped: 'BENCH_ONLY' }, grpc: { skipped: 'BENCH_ONLY' } }
  const quickCount = { oneway: 20_000, calls: 2_000 }
  let natsFigures: Pick<BenchResult['peers'], 'natsOneway' | 'natsRequests'>
  if (isSkipped(nats)) {
    natsFigures = { natsOneway: nats, natsRequests: nats }
  } else {
    // Warm-up, as for synapse: JIT compilation is not billed to the measured figure.
    await natsOneway(nats.url, warmUp(o), quickCount.oneway)
    const natsOnewayFigure = await natsOneway(nats.url, o, quickCount.oneway)
    await natsRequests(nats.url, warmUp(o), PEER_WINDOW, quickCount.calls)
    natsFigures = { natsOneway: natsOnewayFigure, natsRequests: await natsRequests(nats.url, o, PEER_WINDOW, quickCount.calls) }
  }
  await grpcUnary(grpcPort, warmUp(o), PEER_WINDOW, quickCount.calls)
  const grpc = await grpcUnary(grpcPort, o, PEER_WINDOW, quickCount.calls)
  return { ...(isSkipped(nats) ? {} : { natsVersion: nats.version }), ...natsFigures, grpc }
}

/** One full node with one bubblewrap replica of billing; this process calls billing.quote. */
async function runFullPath (o: BenchOptions): Promise<BenchResult['fullPath']> {
  const reason = fullPathSkipReason()
  if (reason !== undefined) return { skipped: reason }
  const figures: LatencyFigure[] = []
  let idle: number
  const fp = await startFullPath()
  try {
    idle = await nodeIdleCpuPercent(fp.node.child.pid ?? 0, o.quick ? 300 : 2_000)
    for (const inFlight of FULL_PATH_IN_FLIGHT) {
      await fullPathCalls(fp.mesh, fp.node.child.pid ?? 0, inFlight, warmUp(o), 200)
      figures.push(await fullPathCalls(fp.mesh, fp.node.child.pid ?? 0, inFlight, o, o.quick ? Math.max(200, inFlight * 20) : 0))
    }
  } finally {
    await fp.stop()
  }
  // The full path's second hop alone, after the node has stopped (one replica on the machine at a time).
  const segment = await startCapsidSegment('bwrap')
  try {
    await segment.run(FULL_PATH_WINDOW, warmUp(o), 200)
    const capsid = await segment.run(FULL_PATH_WINDOW, o, o.quick ? FULL_PATH_WINDOW * 20 : 0)
    return { topology: FULL_PATH_TOPOLOGY, figures, nodeIdleCpuPercent: idle, capsid }
  } finally {
    await segment.stop()
  }
}

/**
 * Synapse calls (bench client → bench server process) at each window, each with the CPU time both
 * processes spent per call: what a batch of calls costs beside the calls in it (batch-cost.ts).
 */
export async function synapseCallsAtWindows (windows: number[], durationMs: number): Promise<Figure[]> {
  const server = await startServer({})
  const client = await createSynapseNode({ ...acceptingAuth() })
  try {
    const channel = await client.services.synapse.open(multiaddr(server.addr), 'bench')
    const figures: Figure[] = []
    for (const window of windows) {
      const o: BenchOptions = { quick: false, durationMs, payloadBytes: 64, window }
      await synapseCalls(channel, { ...o, quick: true }, Math.max(2_000, window * 20))
      figures.push(await withCpu(server, async () => await synapseCalls(channel, o, 0, `synapse calls, ${window} in flight`)))
    }
    await channel.close()
    return figures
  } finally {
    await client.stop()
    server.stop()
  }
}
