// The capsid segment of the call path alone (host ↔ replica, no network in front): this process is
// the host (a Capsid, as the full node holds it) and calls billing.quote in one replica. Used by
// `node test/bench/capsid-bench.ts` and by `npm run bench`, which sets it beside the full path.
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { buildTo, projectRoot } from '../../node-host/capsid/test-helpers.ts'
import { startCapsid } from '../../node-host/capsid/start-capsid.ts'
import { sampleProcessTree } from '../../node-host/capsid/usage-sampler.ts'
import { closedLoop } from './closed-loop.ts'
import type { LatencyFigure } from './full-path.ts'

/** A full-path figure's fields, with the CPU time per call of the host (this process) and of the replica's process tree. */
export type CapsidFigure = Omit<LatencyFigure, 'cpuUsPerCall'> & { cpuUsPerCall: { host: number, replica: number } }

export interface CapsidSegment {
  mode: string
  /** billing.quote at `inFlight` calls in flight, for `durationMs` or (quick) `count` calls. */
  run: (inFlight: number, o: { quick: boolean, durationMs: number }, count: number) => Promise<CapsidFigure>
  stop: () => Promise<void>
}

const TICK_US = 1e6 / 100
// As the node passes it: the synapse session's principal, one object per caller connection.
const CALLER = { peerId: '12D3KooWCQ4kWkH5Yc7RDDqSyz4NsjzZtEVDvSGXHtYGqjyvmBQo', authority: 'ab'.repeat(32), roles: ['caller'], expiresMs: Date.now() + 3_600_000 }

export async function startCapsidSegment (sandbox: 'bwrap' | 'process'): Promise<CapsidSegment> {
  const tmp = await mkdtemp('/tmp/cb-')
  try {
    const artifactPath = await buildTo(tmp, join(projectRoot, 'examples/billing'), 'cell.ts', 'billing')
    const capsid = await startCapsid({ cell: 'billing', instanceId: 'b1', runDir: join(tmp, 'run'), dataDir: join(tmp, 'data'), artifactPath, sandbox, startTimeoutMs: 15_000 })
    const request = new TextEncoder().encode(JSON.stringify({ amount: 100, currency: 'EUR' }))
    // The expected answer, checked once by value; every measured answer is compared byte for byte
    // (cheaper than parsing each, so the host's CPU per call stays the capsid's).
    const expected = await capsid.call('quote', request, { deadlineMs: Date.now() + 30_000, caller: CALLER })
    if ((JSON.parse(new TextDecoder().decode(expected)) as { total?: number }).total !== 103.2) throw new Error(`billing.quote answered ${new TextDecoder().decode(expected)}`)
    const same = (a: Uint8Array): boolean => {
      if (a.byteLength !== expected.byteLength) return false
      for (let i = 0; i < a.byteLength; i++) if (a[i] !== expected[i]) return false
      return true
    }
    const run = async (inFlight: number, o: { quick: boolean, durationMs: number }, count: number): Promise<CapsidFigure> => {
      const latencies: number[] = []
      const tree0 = await sampleProcessTree(capsid.pid ?? 0)
      const cpu0 = process.cpuUsage()
      const { issued, confirmed, ms } = await closedLoop(o, inFlight, count, async () => {
        const t0 = performance.now()
        const answer = await capsid.call('quote', request, { deadlineMs: Date.now() + 30_000, caller: CALLER })
        latencies.push(performance.now() - t0)
        return same(answer)
      })
      const cpu = process.cpuUsage(cpu0)
      const tree = await sampleProcessTree(capsid.pid ?? 0)
      latencies.sort((a, b) => a - b)
      const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
      return {
        name: `capsid segment, ${inFlight} in flight`,
        inFlight,
        ops: issued,
        ms,
        perSec: issued / (ms / 1000),
        confirmed,
        p50Ms: q(0.5),
        p99Ms: q(0.99),
        cpuUsPerCall: { host: (cpu.user + cpu.system) / issued, replica: (tree.cpuTicks - tree0.cpuTicks) * TICK_US / issued }
      }
    }
    return {
      mode: capsid.mode,
      run,
      stop: async () => {
        await capsid.stop({ drainMs: 1000, killMs: 1000 })
        await rm(tmp, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
}
