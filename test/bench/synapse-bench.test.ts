import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { BenchResult } from './bench-runner.ts'

// Correctness only: the quick bench must deliver every message and answer every call across a
// real second process. Timing is the full bench's business (`npm run bench`), never asserted here.
describe('synapse bench --quick', () => {
  it('delivers every one-way message and answers every call, peers and the full path included', async () => {
    const script = fileURLToPath(new URL('./synapse-bench.ts', import.meta.url))
    const child = spawn(process.execPath, [script, '--quick', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d: string) => { out += d })
    const code = await new Promise<number | null>((resolve) => { child.on('exit', resolve) })
    expect(code).toBe(0)
    const result = JSON.parse(out.trim().split('\n').at(-1) ?? '') as BenchResult
    for (const f of [result.rawOneway, result.rawEcho, result.oneway, result.calls, result.callsAtPathWindow, result.plainCalls, result.tracedCalls]) {
      expect(f.ops, f.name).toBeGreaterThan(1000)
      expect(f.confirmed, f.name).toBe(f.ops)
    }
    // The peers and the full path ran or say why not; what ran was complete.
    for (const f of [result.peers.natsOneway, result.peers.natsRequests, result.peers.grpc]) {
      if ('skipped' in f) expect(f.skipped).not.toBe('')
      else expect(f.confirmed, f.name).toBe(f.ops)
    }
    if ('skipped' in result.fullPath) {
      expect(result.fullPath.skipped).not.toBe('')
    } else {
      expect(result.fullPath.figures.map(f => f.inFlight)).toEqual([1, 64, 256])
      for (const f of result.fullPath.figures) {
        expect(f.ops, f.name).toBeGreaterThan(0)
        expect(f.confirmed, f.name).toBe(f.ops)
        expect(f.p99Ms, f.name).toBeGreaterThanOrEqual(f.p50Ms)
      }
      const c = result.fullPath.capsid
      expect(c.inFlight).toBe(64)
      expect(c.ops).toBeGreaterThan(0)
      expect(c.confirmed, c.name).toBe(c.ops)
    }
  }, 120_000)
})
