// The capsid segment of the call path alone: `node test/bench/capsid-bench.ts [bwrap|process] [ms]`.
// This process is the host (Capsid, as the full node holds it) and calls billing.quote in one
// replica at 1, 64 and 256 in flight; it prints calls/s, p50, p99 and the CPU time per call of the
// host and of the replica's process tree (from /proc), so a change to the capsid protocol shows its
// cost on each side without the network in front.
import { startCapsidSegment } from './capsid-segment.ts'

const sandbox = (process.argv[2] ?? 'bwrap') as 'bwrap' | 'process'
const durationMs = Number(process.argv[3] ?? 3000)
const segment = await startCapsidSegment(sandbox)
try {
  for (const inFlight of [1, 64, 256]) {
    await segment.run(inFlight, { quick: false, durationMs: 300 }, 0)
    const f = await segment.run(inFlight, { quick: false, durationMs }, 0)
    console.log(`capsid (${segment.mode}), ${String(inFlight).padStart(3)} in flight: ${Math.round(f.perSec).toLocaleString('en').padStart(8)} calls/s  p50 ${f.p50Ms.toFixed(2)} ms  p99 ${f.p99Ms.toFixed(2)} ms  CPU per call: host ${f.cpuUsPerCall.host.toFixed(1)} µs, replica ${f.cpuUsPerCall.replica.toFixed(1)} µs  (${f.confirmed} of ${f.ops} answers checked)`)
  }
} finally {
  await segment.stop()
}
