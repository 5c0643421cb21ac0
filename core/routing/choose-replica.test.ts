import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../test/sim/prng.ts'
import { chooseReplica, pickLessLoaded } from './choose-replica.ts'
import type { ReplicaCandidate } from './choose-replica.ts'

function replica (id: string, version: string, load: Partial<ReplicaCandidate> = {}): ReplicaCandidate {
  return { id, version, digest: `d-${version}`, state: 'ready', qps: 10, p99Ms: 20, ...load }
}

const fleet = [
  replica('s1', '1.0.0'), replica('s2', '1.0.0'), replica('s3', '1.0.0'), replica('s4', '1.0.0'),
  replica('c1', '1.1.0'), replica('c2', '1.1.0')
]

function canaryShare (canaryWeight: number, seed: number, n = 10_000): number {
  const random = new SeededRandom(seed)
  let canary = 0
  for (let i = 0; i < n; i++) {
    const c = chooseReplica(fleet, { canaryWeight }, random)
    if (c?.replica.version === '1.1.0') canary++
    expect(c?.group === 'canary').toBe(c?.replica.version === '1.1.0')
  }
  return (canary / n) * 100
}

describe('chooseReplica', () => {
  for (const weight of [0, 5, 20, 50, 80, 100]) {
    it(`sends ${weight} % of 10 000 channels to the newest version (±2 points)`, () => {
      expect(Math.abs(canaryShare(weight, 1234 + weight) - weight)).toBeLessThanOrEqual(2)
    })
  }

  it('does not split evenly by replica or by group (a broken split fails here)', () => {
    const share = canaryShare(5, 99)
    // Uniform over replicas would give 33 %, uniform over groups 50 %.
    expect(share).toBeLessThan(10)
    expect(Math.abs(share - 50)).toBeGreaterThan(30)
    expect(Math.abs(share - 100 / 3)).toBeGreaterThan(20)
  })

  it('uses the given newest digest rather than the highest version when told', () => {
    const random = new SeededRandom(7)
    let hits = 0
    for (let i = 0; i < 2_000; i++) if (chooseReplica(fleet, { canaryWeight: 100, newestDigest: 'd-1.0.0' }, random)?.replica.version === '1.0.0') hits++
    expect(hits).toBe(2_000)
  })

  it('falls back to the other group when one is empty', () => {
    const random = new SeededRandom(3)
    const onlyOld = fleet.filter(r => r.version === '1.0.0')
    for (let i = 0; i < 200; i++) {
      expect(chooseReplica(onlyOld, { canaryWeight: 100, newestDigest: 'd-9.9.9' }, random)?.group).toBe('stable')
    }
    const onlyNew = fleet.filter(r => r.version === '1.1.0')
    for (let i = 0; i < 200; i++) expect(chooseReplica(onlyNew, { canaryWeight: 0 }, random)?.replica.version).toBe('1.1.0')
  })

  it('picks only ready replicas and returns undefined when there is none', () => {
    const random = new SeededRandom(5)
    const mixed = [replica('a', '1.0.0', { state: 'starting' }), replica('b', '1.0.0', { state: 'draining' }), replica('c', '1.0.0')]
    for (let i = 0; i < 100; i++) expect(chooseReplica(mixed, { canaryWeight: 5 }, random)?.replica.id).toBe('c')
    expect(chooseReplica([replica('a', '1.0.0', { state: 'crashed' })], { canaryWeight: 5 }, random)).toBeUndefined()
    expect(chooseReplica([], { canaryWeight: 5 }, random)).toBeUndefined()
  })
})

describe('power of two choices', () => {
  it('never picks the most loaded of three and spreads over the other two', () => {
    const random = new SeededRandom(11)
    const group = [replica('busy', '1.0.0', { inFlight: 50 }), replica('a', '1.0.0', { inFlight: 1 }), replica('b', '1.0.0', { inFlight: 2 })]
    const counts = new Map<string, number>()
    for (let i = 0; i < 3_000; i++) {
      const r = pickLessLoaded(group, random)
      counts.set(r?.id ?? '', (counts.get(r?.id ?? '') ?? 0) + 1)
    }
    expect(counts.get('busy')).toBeUndefined()
    // a wins whenever it is drawn (2 of 3 pairs), b only against busy (1 of 3).
    expect((counts.get('a') ?? 0) / 3_000).toBeCloseTo(2 / 3, 1)
    expect((counts.get('b') ?? 0) / 3_000).toBeCloseTo(1 / 3, 1)
  })

  it('compares in-flight calls first, then qps, then p99 latency', () => {
    const random = new SeededRandom(2)
    const byQps = [replica('hot', '1.0.0', { qps: 100 }), replica('cool', '1.0.0', { qps: 1 })]
    const byP99 = [replica('slow', '1.0.0', { p99Ms: 900 }), replica('fast', '1.0.0', { p99Ms: 5 })]
    const byFlight = [replica('idle', '1.0.0', { inFlight: 0, qps: 100 }), replica('queued', '1.0.0', { inFlight: 3, qps: 1 })]
    for (let i = 0; i < 50; i++) {
      expect(pickLessLoaded(byQps, random)?.id).toBe('cool')
      expect(pickLessLoaded(byP99, random)?.id).toBe('fast')
      expect(pickLessLoaded(byFlight, random)?.id).toBe('idle')
    }
  })
})
