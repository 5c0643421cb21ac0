// Synapse throughput bench: `node test/bench/synapse-bench.ts [--quick] [--json] [--duration-ms N] [--rounds N]`.
// The server runs in a second process (bench-server.ts); this process is the client. The telemetry
// cost (issue 12: under 10 %) is the median on/off ratio of N interleaved rounds (default 5).
import { runBench } from './bench-runner.ts'
import type { Figure } from './bench-runner.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const durationArg = args.indexOf('--duration-ms')
const durationMs = durationArg >= 0 ? Number(args[durationArg + 1]) : 3000
const roundsArg = args.indexOf('--rounds')
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : 5
const MAX_TELEMETRY_COST = 0.1

const FLOORS = { oneway: 500_000, calls: 50_000 }

const result = await runBench({ quick, durationMs, payloadBytes: 64, window: 512, rounds })

if (json) {
  console.log(JSON.stringify(result))
} else {
  const row = (f: Figure, base?: Figure, floor?: number): string => {
    const ratio = base === undefined ? '' : `${(f.perSec / base.perSec).toFixed(2)}× ${base.name}`
    const floorText = floor === undefined ? '' : (f.perSec >= floor ? `≥ ${floor} ok` : `< ${floor} MISSED`)
    return `${f.name.padEnd(18)} ${Math.round(f.perSec).toLocaleString('en').padStart(12)} /s  ${String(f.ops).padStart(10)} ops  ${f.ms.toFixed(0).padStart(6)} ms  confirmed ${String(f.confirmed).padStart(10)}  ${ratio.padEnd(24)} ${floorText}`
  }
  console.log(`synapse bench, 64-byte payloads, ${quick ? 'quick counts' : `${durationMs} ms per figure`}, server in a second process (TCP + Noise + yamux on 127.0.0.1)`)
  console.log(row(result.rawOneway))
  console.log(row(result.oneway, result.rawOneway, quick ? undefined : FLOORS.oneway))
  console.log(row(result.rawEcho))
  console.log(row(result.calls, result.rawEcho, quick ? undefined : FLOORS.calls))
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
const complete = [result.oneway, result.calls, result.plainCalls, result.tracedCalls].every(f => f.confirmed === f.ops) && metered
const floorsMet = quick || (result.oneway.perSec >= FLOORS.oneway && result.calls.perSec >= FLOORS.calls && 1 - result.telemetryRatio < MAX_TELEMETRY_COST)
if (!complete) console.error(metered ? 'INCOMPLETE: not every message was delivered or call answered' : 'INCOMPLETE: the call meter did not count every instrumented call')
process.exitCode = complete && floorsMet ? 0 : 1
