// Synapse throughput bench: `node test/bench/synapse-bench.ts [--quick] [--json] [--duration-ms N]`.
// The server runs in a second process (bench-server.ts); this process is the client.
import { runBench } from './bench-runner.ts'
import type { Figure } from './bench-runner.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const durationArg = args.indexOf('--duration-ms')
const durationMs = durationArg >= 0 ? Number(args[durationArg + 1]) : 3000

const FLOORS = { oneway: 500_000, calls: 50_000 }

const result = await runBench({ quick, durationMs, payloadBytes: 64, window: 512 })

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
  console.log(`metrics and tracing (client and server spans, parent-based sampling ${result.traceRatio * 100} %, OTLP/HTTP to a local sink), interleaved in this run:`)
  console.log(row(result.plainCalls))
  console.log(row(result.tracedCalls, result.plainCalls))
  const cost = 1 - result.tracedCalls.perSec / result.plainCalls.perSec
  console.log(`telemetry cost ${(cost * 100).toFixed(1)} % of call throughput (${cost < 0.1 ? 'under 10 % ok' : 'NOT under 10 %'}), ${result.spansExported} spans exported`)
}

const complete = [result.oneway, result.calls, result.plainCalls, result.tracedCalls].every(f => f.confirmed === f.ops)
const floorsMet = quick || (result.oneway.perSec >= FLOORS.oneway && result.calls.perSec >= FLOORS.calls)
if (!complete) console.error('INCOMPLETE: not every message was delivered or call answered')
process.exitCode = complete && floorsMet ? 0 : 1
