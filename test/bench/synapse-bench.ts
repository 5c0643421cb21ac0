// Synapse throughput bench: `node test/bench/synapse-bench.ts [--quick] [--json] [--duration-ms N] [--rounds N]`.
// Beside synapse it measures, in the same run, nats-server + nats.js and grpc-js (peers.ts) and the
// full call path through a bubblewrap replica of examples/billing (full-path.ts).
// The server runs in a second process (bench-server.ts); this process is the client. The telemetry
// cost (issue 12: under 10 %) is the median on/off ratio of N interleaved rounds (default 6, rounded up to an even number).
import { readFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { runBench, PEER_WINDOW } from './bench-runner.ts'
import type { Figure } from './bench-runner.ts'
import { isSkipped, type PeerFigure, type Skipped } from './peers.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const durationArg = args.indexOf('--duration-ms')
const durationMs = durationArg >= 0 ? Number(args[durationArg + 1]) : 3000
const roundsArg = args.indexOf('--rounds')
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 6
const MAX_TELEMETRY_COST = 0.1

const FLOORS = { oneway: 500_000, calls: 50_000 }
/** Issue 15: the full path at 64 in flight reaches this share of bare synapse calls/s, with this p99. */
const FULL_PATH_GOAL = { share: 0.45, p99Ms: 5, inFlight: 64 }
/** Issue 15: synapse one-way stays at least this many times nats-server one-way. */
const NATS_ONEWAY_FACTOR = 3

const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU'
const loadText = (): string => loadavg().map(l => l.toFixed(2)).join(' ')
const loadBefore = loadText()
const result = await runBench({ quick, durationMs, payloadBytes: 64, window: 512, rounds })
const machine = { nproc: availableParallelism(), cpuModel, loadBefore, loadAfter: loadText() }

let fullPathOk = true
let natsOk = true
if (json) {
  console.log(JSON.stringify({ ...result, machine }))
} else {
  const row = (f: Figure, base?: Figure, floor?: number): string => {
    const ratio = base === undefined ? '' : `${(f.perSec / base.perSec).toFixed(2)}× ${base.name}`
    const floorText = floor === undefined ? '' : (f.perSec >= floor ? `≥ ${floor} ok` : `< ${floor} MISSED`)
    const cpu = f.cpuUsPerOp === undefined ? '' : `  CPU per op (client + server) ${f.cpuUsPerOp.toFixed(2)} µs`
    return `${f.name.padEnd(28)} ${Math.round(f.perSec).toLocaleString('en').padStart(12)} /s  ${String(f.ops).padStart(10)} ops  ${f.ms.toFixed(0).padStart(6)} ms  confirmed ${String(f.confirmed).padStart(10)}  ${ratio.padEnd(24)} ${floorText}${cpu}`
  }
  console.log(`machine: ${machine.nproc} cores (nproc), ${machine.cpuModel}; load average ${machine.loadBefore} before, ${machine.loadAfter} after`)
  console.log(`synapse bench, 64-byte payloads, ${quick ? 'quick counts' : `${durationMs} ms per figure`}, server in a second process (TCP + Noise + yamux on 127.0.0.1)`)
  console.log(row(result.rawOneway))
  console.log(row(result.oneway, result.rawOneway, quick ? undefined : FLOORS.oneway))
  console.log(row(result.rawEcho))
  console.log(row(result.calls, result.rawEcho, quick ? undefined : FLOORS.calls))
  console.log(row(result.callsAtPathWindow, result.calls))
  // Peers, side by side: each against the synapse figure it compares with.
  const peerRow = (f: PeerFigure | Skipped, name: string, base: Figure): string => isSkipped(f)
    ? `${name.padEnd(30)} skipped: ${f.skipped}`
    : `${f.name.padEnd(30)} ${Math.round(f.perSec).toLocaleString('en').padStart(12)} /s  ${String(f.ops).padStart(10)} ops  confirmed ${String(f.confirmed).padStart(10)}   ${base.name} is ${(base.perSec / f.perSec).toFixed(2)}× this`
  const p = result.peers
  console.log(`peers, 64-byte payloads, serving ends in the server process${p.natsVersion !== undefined ? ` (nats-server ${p.natsVersion.replace(/^nats-server: /, '')}, nats.js; grpc-js h2c without TLS)` : ''}:`)
  console.log(peerRow(p.natsOneway, 'nats one-way', result.oneway))
  console.log(peerRow(p.natsRequests, `nats request/reply, ${PEER_WINDOW} in flight`, result.calls))
  console.log(peerRow(p.grpc, `grpc-js unary, ${PEER_WINDOW} in flight`, result.calls))
  if (!isSkipped(p.natsOneway) && !quick) {
    natsOk = result.oneway.perSec >= NATS_ONEWAY_FACTOR * p.natsOneway.perSec
    console.log(`synapse one-way / nats one-way: ${(result.oneway.perSec / p.natsOneway.perSec).toFixed(2)} (goal ≥ ${NATS_ONEWAY_FACTOR}: ${natsOk ? 'ok' : 'MISSED'})`)
  }
  const fp = result.fullPath
  if (isSkipped(fp)) {
    console.log(`full path (billing.quote through a bubblewrap replica): skipped: ${fp.skipped}`)
  } else {
    console.log(`full path, billing.quote: ${fp.topology}`)
    console.log(`node CPU with no calls: ${fp.nodeIdleCpuPercent.toFixed(1)} % of a core (heartbeats, gossip, usage sampling; part of each figure's node CPU per call)`)
    for (const f of fp.figures) {
      console.log(`${f.name.padEnd(26)} ${Math.round(f.perSec).toLocaleString('en').padStart(9)} /s  ${String(f.ops).padStart(9)} ops  p50 ${f.p50Ms.toFixed(2).padStart(6)} ms  p99 ${f.p99Ms.toFixed(2).padStart(6)} ms  confirmed ${String(f.confirmed).padStart(9)}  ${(100 * f.perSec / result.calls.perSec).toFixed(1).padStart(5)} % of synapse calls  CPU per call: caller ${f.cpuUsPerCall.caller.toFixed(1)} µs, node ${f.cpuUsPerCall.node.toFixed(1)} µs, replica ${f.cpuUsPerCall.replica.toFixed(1)} µs`)
    }
    const c = fp.capsid
    console.log(`${c.name.padEnd(26)} ${Math.round(c.perSec).toLocaleString('en').padStart(9)} /s  ${String(c.ops).padStart(9)} ops  p50 ${c.p50Ms.toFixed(2).padStart(6)} ms  p99 ${c.p99Ms.toFixed(2).padStart(6)} ms  confirmed ${String(c.confirmed).padStart(9)}  the full path's second hop alone (host = this process, same bubblewrap replica setup)  CPU per call: host ${c.cpuUsPerCall.host.toFixed(1)} µs, replica ${c.cpuUsPerCall.replica.toFixed(1)} µs`)
    const at = fp.figures.find(f => f.inFlight === FULL_PATH_GOAL.inFlight)
    if (at !== undefined && !quick) {
      fullPathOk = at.perSec >= FULL_PATH_GOAL.share * result.calls.perSec && at.p99Ms <= FULL_PATH_GOAL.p99Ms
      console.log(`full path at ${at.inFlight} in flight: ${(100 * at.perSec / result.calls.perSec).toFixed(1)} % of synapse calls, p99 ${at.p99Ms.toFixed(2)} ms (goal ≥ ${FULL_PATH_GOAL.share * 100} % and ≤ ${FULL_PATH_GOAL.p99Ms} ms: ${fullPathOk ? 'ok' : 'MISSED'})`)
      // Its two hops alone at the same window: every call crosses both, so the path cannot pass the
      // synapse hop alone; with each batch crossing one hop after the other, their times add.
      const hop = result.callsAtPathWindow.perSec
      const inSeries = 1 / (1 / hop + 1 / c.perSec)
      const pct = (x: number): string => `${(100 * x / result.calls.perSec).toFixed(1)} %`
      console.log(`  its hops alone at ${at.inFlight} in flight: synapse ${Math.round(hop).toLocaleString('en')} /s (${pct(hop)} of synapse calls: the path's ceiling), capsid ${Math.round(c.perSec).toLocaleString('en')} /s; one after the other ${Math.round(inSeries).toLocaleString('en')} /s (${pct(inSeries)}); the path reached ${(100 * at.perSec / hop).toFixed(0)} % of its synapse hop alone and ${(100 * at.perSec / inSeries).toFixed(0)} % of the two in series`)
    }
  }
  console.log(`metrics and tracing (call meter; client and server spans, parent-based sampling ${result.traceRatio * 100} %, OTLP/HTTP to a local sink), ${result.rounds.length} interleaved rounds of ${(durationMs / 2).toFixed(0)} ms per figure in this run:`)
  result.rounds.forEach((r, i) => {
    console.log(`  round ${i + 1} (${i % 2 === 0 ? 'off first' : 'on first'}): off ${Math.round(r.off.perSec).toLocaleString('en').padStart(9)} /s   on ${Math.round(r.on.perSec).toLocaleString('en').padStart(9)} /s   on/off ${r.ratio.toFixed(3)}   CPU per call (client + server) off ${r.offCpuUsPerCall.toFixed(2)} µs, on ${r.onCpuUsPerCall.toFixed(2)} µs   calls/answers per write off ${r.offFramesPerWrite.toFixed(0)}/${r.offAnswersPerWrite.toFixed(0)}, on ${r.onFramesPerWrite.toFixed(0)}/${r.onAnswersPerWrite.toFixed(0)}`)
  })
  console.log(row(result.plainCalls))
  console.log(row(result.tracedCalls, result.plainCalls))
  const ratio = result.telemetryRatio
  console.log(`telemetry CPU per call on/off: ${result.telemetryCpuRatio.toFixed(2)} (median of ${result.rounds.length} rounds; the work it adds, whatever else runs on the machine)`)
  console.log(`telemetry on/off: ${ratio.toFixed(2)} (median of ${result.rounds.length} rounds; cost ${((1 - ratio) * 100).toFixed(1)} % of call throughput, ${1 - ratio < MAX_TELEMETRY_COST ? 'under 10 % ok' : 'NOT under 10 %'}), ${result.spansExported} spans exported, call meter counted ${result.meteredCalls} of ${result.instrumentedCalls} calls and ${result.meteredLatencies} latencies`)
}

// Every call made to the instrumented cell (warm-up included) is counted by the server's meter.
const metered = result.meteredCalls === result.instrumentedCalls && result.meteredLatencies === result.instrumentedCalls
const fullPathComplete = isSkipped(result.fullPath) || (result.fullPath.figures.every(f => f.confirmed === f.ops) && result.fullPath.capsid.confirmed === result.fullPath.capsid.ops)
const complete = [result.oneway, result.calls, result.callsAtPathWindow, result.plainCalls, result.tracedCalls].every(f => f.confirmed === f.ops) && metered && fullPathComplete
const floorsMet = quick || (result.oneway.perSec >= FLOORS.oneway && result.calls.perSec >= FLOORS.calls && 1 - result.telemetryRatio < MAX_TELEMETRY_COST)
if (!complete) console.error(metered ? 'INCOMPLETE: not every message was delivered or call answered' : 'INCOMPLETE: the call meter did not count every instrumented call')
process.exitCode = complete && floorsMet && fullPathOk && natsOk ? 0 : 1
