import { describe, expect, it } from 'vitest'
import { defaultBiologyParams } from './params.ts'
import { byAge, isEligible, planSurplusDrains, recommendReplicas, stabilise, volunteerProbability } from './replication.ts'
import { instance, node, policy } from './testing.ts'
import type { InstanceRecord } from './types.ts'

const params = { ...defaultBiologyParams, metricsSettleMs: 0 }

function ready (n: number, cpuPercent: number, memoryPercent = 20): InstanceRecord[] {
  return Array.from({ length: n }, (_, k) => instance(`i${k}`, `n${k}`, { cpuPercent, memoryPercent }))
}

describe('recommendReplicas', () => {
  it('follows ceil(current × observed / target) when above the target', () => {
    const live = ready(4, 90)
    expect(recommendReplicas({ live, current: 4, policy: policy(), params }).replicas).toBe(6)
  })

  it('takes the larger of the CPU and memory recommendations', () => {
    const live = ready(4, 45, 140)
    expect(recommendReplicas({ live, current: 4, policy: policy({ memoryTarget: 70 }), params }).replicas).toBe(8)
  })

  it('holds between half the target and the target (hysteresis)', () => {
    for (const cpu of [31, 45, 60, 65]) {
      expect(recommendReplicas({ live: ready(4, cpu), current: 4, policy: policy({ minReplicas: 1 }), params }).replicas).toBe(4)
    }
  })

  it('holds when one metric is within its band even if the other is under half', () => {
    // CPU 45 % holds; memory 10 % alone would say down to 1.
    expect(recommendReplicas({ live: ready(4, 45, 10), current: 4, policy: policy({ minReplicas: 1 }), params }).replicas).toBe(4)
  })

  it('scales down only under half the target', () => {
    const p = policy({ minReplicas: 1 })
    expect(recommendReplicas({ live: ready(6, 29), current: 6, policy: p, params }).replicas).toBe(3)
    expect(recommendReplicas({ live: ready(6, 31), current: 6, policy: p, params }).replicas).toBe(6)
  })

  it('clamps to [minReplicas, maxReplicas]', () => {
    expect(recommendReplicas({ live: ready(4, 0), current: 4, policy: policy({ minReplicas: 3 }), params }).replicas).toBe(3)
    expect(recommendReplicas({ live: ready(8, 300), current: 8, policy: policy({ maxReplicas: 10 }), params }).replicas).toBe(10)
  })

  it('ignores utilisation reported before the newest replica turned ready', () => {
    const old = ready(3, 200).map(i => ({ ...i, lastHeartbeatMs: 5_000 }))
    const fresh = instance('new', 'n9', { readyMs: 6_000, lastHeartbeatMs: 6_500, cpuPercent: 50 })
    // The stale 200 % figures would say ceil(4 × 162 / 60) = 11; only the fresh 50 % counts: hold.
    expect(recommendReplicas({ live: [...old, fresh], current: 4, policy: policy({ maxReplicas: 20 }), params }).replicas).toBe(4)
    expect(recommendReplicas({ live: old.map(i => ({ ...i, readyMs: 5_500 })), current: 3, policy: policy(), params }).replicas).toBeUndefined()
  })

  it('makes no hold recommendation during a rollout (current undefined) but still scales up', () => {
    expect(recommendReplicas({ live: ready(4, 45), policy: policy(), params }).replicas).toBeUndefined()
    expect(recommendReplicas({ live: ready(4, 90), policy: policy(), params }).replicas).toBe(6)
  })
})

describe('stabilise', () => {
  const p = { ...params, stabilisationWindowMs: 60_000 }

  it('lets the highest recommendation within the window win, then the lower one after it', () => {
    let s = stabilise([], 8, 0, p)
    expect(s?.replicas).toBe(8)
    s = stabilise(s?.recommendations ?? [], 3, 30_000, p)
    expect(s?.replicas).toBe(8)
    s = stabilise(s?.recommendations ?? [], 3, 59_999, p)
    expect(s?.replicas).toBe(8)
    s = stabilise(s?.recommendations ?? [], 3, 60_001, p)
    expect(s?.replicas).toBe(3)
  })

  it('scales up immediately', () => {
    const s = stabilise([{ atMs: 0, replicas: 3 }], 9, 1_000, p)
    expect(s?.replicas).toBe(9)
  })

  it('keeps a bounded, decreasing history', () => {
    let recs = stabilise([], 10, 0, p)?.recommendations ?? []
    for (let t = 1; t < 1_000; t++) recs = stabilise(recs, 10 - (t % 5), t, { ...p, maxRecommendations: 4 })?.recommendations ?? []
    expect(recs.length).toBeLessThanOrEqual(4)
    for (let i = 1; i < recs.length; i++) expect(recs[i].replicas).toBeLessThan(recs[i - 1].replicas)
  })

  it('returns undefined for an empty window without a new recommendation', () => {
    expect(stabilise([{ atMs: 0, replicas: 4 }], undefined, 61_000, p)).toBeUndefined()
  })
})

describe('volunteering', () => {
  it('has probability deficit / eligible, capped at 1', () => {
    expect(volunteerProbability(3, 30)).toBeCloseTo(0.1)
    expect(volunteerProbability(40, 30)).toBe(1)
    expect(volunteerProbability(0, 30)).toBe(0)
    expect(volunteerProbability(2, 0)).toBe(0)
  })

  it('excludes nodes without capacity, without trust, or dead', () => {
    expect(isEligible(node('a'), 'a1', params)).toBe(true)
    expect(isEligible(node('a', { capacity: { freeSlots: 0, cpuFreePercent: 80, memoryFreeBytes: 2 ** 32 } }), 'a1', params)).toBe(false)
    expect(isEligible(node('a', { capacity: { freeSlots: 2, cpuFreePercent: 1, memoryFreeBytes: 2 ** 32 } }), 'a1', params)).toBe(false)
    expect(isEligible(node('a', { capacity: { freeSlots: 2, cpuFreePercent: 80, memoryFreeBytes: 1024 } }), 'a1', params)).toBe(false)
    expect(isEligible(node('a', { trustsAuthorities: ['other'] }), 'a1', params)).toBe(false)
    expect(isEligible(node('a'), undefined, params)).toBe(false)
    expect(isEligible(node('a', { alive: false }), 'a1', params)).toBe(false)
  })
})

describe('surplus', () => {
  it('drains the oldest instances by start time, then id, each node only its own', () => {
    const live = [
      instance('c', 'n1', { startedMs: 100 }),
      instance('b', 'n2', { startedMs: 100 }),
      instance('a', 'n1', { startedMs: 300 }),
      instance('d', 'n2', { startedMs: 50 })
    ]
    expect([...live].sort(byAge).map(i => i.id)).toEqual(['d', 'b', 'c', 'a'])
    // Surplus 2: d (n2) and b (n2) drain; n1 drains nothing.
    expect(planSurplusDrains(live, 2, 'n1')).toEqual([])
    expect(planSurplusDrains(live, 2, 'n2').map(a => a.instanceId)).toEqual(['d', 'b'])
    // Surplus 3 adds c on n1.
    expect(planSurplusDrains(live, 1, 'n1').map(a => a.instanceId)).toEqual(['c'])
    expect(planSurplusDrains(live, 4, 'n1')).toEqual([])
  })
})
