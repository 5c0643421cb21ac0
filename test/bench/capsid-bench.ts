// The capsid segment of the call path alone: `node test/bench/capsid-bench.ts [bwrap|process] [ms]`.
// This process is the host (Capsid, as the full node holds it) and calls billing.quote in one
// replica at 1, 64 and 256 in flight; it prints calls/s, p50, p99 and the CPU time per call of the
// host and of the replica's process tree (from /proc), so a change to the capsid protocol shows its
// cost on each side without the network in front.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { buildTo, projectRoot } from '../../node-host/capsid/test-helpers.ts'
import { startCapsid } from '../../node-host/capsid/start-capsid.ts'
import { sampleProcessTree } from '../../node-host/capsid/usage-sampler.ts'

const sandbox = (process.argv[2] ?? 'bwrap') as 'bwrap' | 'process'
const durationMs = Number(process.argv[3] ?? 3000)
const tmp = await mkdtemp('/tmp/cb-')
const artifactPath = await buildTo(tmp, join(projectRoot, 'examples/billing'), 'cell.ts', 'billing')
const capsid = await startCapsid({ cell: 'billing', instanceId: 'b1', runDir: join(tmp, 'run'), dataDir: join(tmp, 'data'), artifactPath, sandbox, startTimeoutMs: 15_000 })
const enc = new TextEncoder()
const request = enc.encode(JSON.stringify({ amount: 100, currency: 'EUR' }))
const TICK_US = 1e6 / 100
// As the node passes it: the synapse session's principal, one object per caller connection.
const caller = { peerId: '12D3KooWCQ4kWkH5Yc7RDDqSyz4NsjzZtEVDvSGXHtYGqjyvmBQo', authority: 'ab'.repeat(32), roles: ['caller'], expiresMs: Date.now() + 3_600_000 }

async function run (inFlight: number, ms: number): Promise<string> {
  const latencies: number[] = []
  const tree0 = await sampleProcessTree(capsid.pid ?? 0)
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  const end = start + ms
  let n = 0
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now()
      await capsid.call('quote', request, { deadlineMs: Date.now() + 30_000, caller })
      latencies.push(performance.now() - t0)
      n++
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const elapsed = performance.now() - start
  const cpu = process.cpuUsage(cpu0)
  const tree = await sampleProcessTree(capsid.pid ?? 0)
  latencies.sort((a, b) => a - b)
  const q = (p: number): string => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2)
  return `capsid (${capsid.mode}), ${String(inFlight).padStart(3)} in flight: ${Math.round(n / (elapsed / 1000)).toLocaleString('en').padStart(8)} calls/s  p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  CPU per call: host ${((cpu.user + cpu.system) / n).toFixed(1)} µs, replica ${((tree.cpuTicks - tree0.cpuTicks) * TICK_US / n).toFixed(1)} µs`
}

try {
  for (const inFlight of [1, 64, 256]) {
    await run(inFlight, 300)
    console.log(await run(inFlight, durationMs))
  }
} finally {
  await capsid.stop({ drainMs: 1000, killMs: 1000 })
  await rm(tmp, { recursive: true, force: true })
}
