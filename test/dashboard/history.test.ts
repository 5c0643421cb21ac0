// The tab's bounded chart history (issue 12 point 6): ring bounds, downsampling, window eviction,
// cell bound, and the rollout events noticed between two looks at a cell.
import { describe, expect, it } from 'vitest'
import type { InstanceRecord } from '../../core/fleet/records.ts'
import { createCellHistory, downsample, niceTicks, pruneHistory, recordEvent, recordSample, rolloutEvents } from '../../dashboard/src/model.ts'
import type { CellSample, HaltNote } from '../../dashboard/src/model.ts'

const sample = (atMs: number, v = 1): CellSample => ({ atMs, cpuPercent: v, memoryBytes: v * 10, qps: v, p99Ms: v })

describe('cell history ring', () => {
  it('keeps at most maxPoints per cell and still covers the whole 15 min window', () => {
    const h = createCellHistory({ maxPoints: 900 })
    // One sample a second for an hour: the window holds 901 seconds, more than 900 points.
    for (let s = 0; s <= 3600; s++) recordSample(h, 'billing', sample(s * 1000, s))
    const series = h.samples.get('billing')!
    expect(series.length).toBeLessThanOrEqual(900)
    expect(series.length).toBeGreaterThan(400)
    expect(series[series.length - 1].atMs).toBe(3_600_000)
    expect(series[0].atMs).toBeGreaterThanOrEqual(3_600_000 - 15 * 60_000)
    expect(series[0].atMs).toBeLessThan(3_600_000 - 14 * 60_000)
    for (let i = 1; i < series.length; i++) expect(series[i].atMs).toBeGreaterThan(series[i - 1].atMs)
  })

  it('downsamples the older half pairwise: mean of rates, worst p99, newest half untouched', () => {
    const s = [sample(1, 2), { ...sample(2, 4), p99Ms: 9 }, sample(3, 6), sample(4, 8), sample(5, 10), sample(6, 12)]
    const d = downsample(s)
    expect(d.map(x => x.atMs)).toEqual([2, 3, 4, 5, 6])
    expect(d[0]).toEqual({ atMs: 2, cpuPercent: 3, memoryBytes: 30, qps: 3, p99Ms: 9 })
    expect(d.slice(1)).toEqual(s.slice(2))
  })

  it('ignores out-of-order samples and bounds cells and events', () => {
    const h = createCellHistory({ maxCells: 2, maxEvents: 3 })
    recordSample(h, 'a', sample(10))
    recordSample(h, 'a', sample(5))
    expect(h.samples.get('a')!.map(x => x.atMs)).toEqual([10])
    recordSample(h, 'b', sample(10))
    recordSample(h, 'c', sample(10))
    expect([...h.samples.keys()]).toEqual(['a', 'b'])
    expect(h.dropped).toBe(1)
    for (let k = 0; k < 10; k++) recordEvent(h, 'a', { atMs: k, kind: 'release', label: `v${k}` })
    expect(h.events.get('a')!.map(e => e.label)).toEqual(['v7', 'v8', 'v9'])
    // Events older than the window go.
    recordEvent(h, 'a', { atMs: 20 * 60_000, kind: 'halt', label: 'halt' })
    expect(h.events.get('a')!.map(e => e.label)).toEqual(['halt'])
    pruneHistory(h, new Set(['b']))
    expect([...h.samples.keys()]).toEqual(['b'])
    recordSample(h, 'c', sample(10))
    expect(h.samples.has('c')).toBe(true)
  })
})

describe('rolloutEvents', () => {
  const inst = (id: string, digest: string, state: InstanceRecord['state']): InstanceRecord => ({
    instanceId: id, cell: 'billing', nodeId: 'n1', version: digest === 'd2' ? '1.1.0' : '1.0.0', digest, startedMs: 0, state,
    cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0, sentMs: 0, seq: 1
  })
  it('marks a new target, a new halt and retired replicas, none on the first look', () => {
    const first = rolloutEvents(undefined, { version: '1.0.0', digest: 'd1' }, undefined, [inst('a', 'd1', 'ready'), inst('b', 'd1', 'draining')], 1)
    expect(first.events).toEqual([])
    const same = rolloutEvents(first.mark, { version: '1.0.0', digest: 'd1' }, undefined, [inst('a', 'd1', 'ready'), inst('b', 'd1', 'stopped')], 2)
    expect(same.events).toEqual([])
    const halt: HaltNote = { version: '1.1.0', digest: 'd2', reason: 'crash-looping: x', crashLooping: true, nodeId: 'n1' }
    const next = rolloutEvents(same.mark, { version: '1.1.0', digest: 'd2' }, halt, [inst('a', 'd1', 'draining'), inst('c', 'd2', 'ready')], 3)
    expect(next.events).toEqual([
      { atMs: 3, kind: 'release', label: 'v1.1.0' },
      { atMs: 3, kind: 'halt', label: 'crash-loop v1.1.0' },
      { atMs: 3, kind: 'retire', label: 'retire 1' }
    ])
    expect(rolloutEvents(next.mark, { version: '1.1.0', digest: 'd2' }, halt, [inst('a', 'd1', 'draining')], 4).events).toEqual([])
  })
})

describe('niceTicks', () => {
  it('covers the maximum with round steps', () => {
    expect(niceTicks(37)).toEqual([0, 10, 20, 30, 40])
    expect(niceTicks(0)).toEqual([0, 1])
    const t = niceTicks(3 * 2 ** 30)
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(3 * 2 ** 30)
    expect(t.length).toBeLessThanOrEqual(6)
  })
})
