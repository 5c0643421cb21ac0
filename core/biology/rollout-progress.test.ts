// Weaknesses of the rollout the simulator found (docs/biology.md, "The decision code on per-cell
// views"): a rollout stalled when every node holding an old replica was full; crash evidence that
// left the halt window before the threshold let a crashing release start afresh on a third node;
// and a rollout retired ready old replicas while surplus ones were still starting.

import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../test/sim/prng.ts'
import { confirmSpawn, decideCell } from './autonomic.ts'
import type { DecideInput, VolunteerAction } from './autonomic.ts'
import { targetEvidence } from './health.ts'
import { defaultBiologyParams, initialCellState } from './params.ts'
import { fixedRandom, instance, node, policy, release, view } from './testing.ts'
import type { BiologyView, CellState, HealthEvent, InstanceRecord, NodeRecord } from './types.ts'

const NOW = 100_000
const params = { metricsSettleMs: 0, volunteerJitterMs: 2_000, haltWindowMs: 60_000, restartBackoffMs: 1_000 }
const V1 = release('1.0.0', 1)
const V2 = release('1.1.0', 2)

function input (v: BiologyView, overrides: Partial<DecideInput> = {}): DecideInput {
  return { cell: 'billing', view: v, policy: policy(), selfId: 'n0', random: fixedRandom(0.99), nowMs: NOW, state: initialCellState('billing'), params, ...overrides }
}

const newOne = (id: string, nodeId: string, o: Partial<InstanceRecord> = {}): InstanceRecord =>
  instance(id, nodeId, { version: V2.version, digest: V2.digest, startedMs: 50_000, ...o })

describe('a rollout whose old replicas sit on full nodes', () => {
  // After a partition healed, n0 holds the last 4 old replicas and no free slot; 6 replicas of the
  // target are proven on n1-n6; n7-n9 run nothing. Only nodes holding old replicas used to surge,
  // and n0 cannot: the rollout stalled (seed 631 of scenario (c), per-cell views, no repair).
  const p = policy({ minReplicas: 10, maxReplicas: 20, maxSurge: 20 })
  const state: CellState = { ...initialCellState('billing'), desiredReplicas: 10 }
  const full = (id: string): NodeRecord => node(id, { capacity: { freeSlots: 0, cpuFreePercent: 60, memoryFreeBytes: 4 * 2 ** 30 } })
  const olds = [0, 1, 2, 3].map(k => instance(`o${k}`, 'n0', { startedMs: k }))
  const news = [1, 2, 3, 4, 5, 6].map(k => newOne(`x${k}`, `n${k}`, { readyMs: NOW - 20_000 }))
  const nodeIds = Array.from({ length: 10 }, (_, k) => `n${k}`)
  const stalled = (n0: NodeRecord = full('n0'), extra: InstanceRecord[] = []): BiologyView =>
    view({ nodes: [n0, ...nodeIds.slice(1).map(id => node(id))], releases: [V1, V2], instances: [...olds, ...news, ...extra] })

  it('lets the nodes without a replica surge instead, about as many as the surge has room for', () => {
    // Nothing retires yet: old 4 + proven 6 = desired 10.
    for (const self of nodeIds) expect(decideCell(input(stalled(), { policy: p, state, selfId: self })).actions.filter(a => a.kind === 'drain')).toEqual([])
    let volunteers = 0
    const trials = 3_000
    for (let seed = 1; seed <= trials; seed++) {
      const d = decideCell(input(stalled(), { policy: p, state, selfId: 'n7', random: new SeededRandom(seed) }))
      const v = d.actions.find(a => a.kind === 'volunteer')
      if (v === undefined) continue
      volunteers++
      expect(v).toMatchObject({ purpose: 'surge', version: '1.1.0', digest: V2.digest })
    }
    // surge = ceil(20 % × 10) = 2 free slots among the 3 nodes without a replica: p = 2/3.
    expect(Math.abs(volunteers / trials - 2 / 3)).toBeLessThan(0.03)
    // A node that already runs a replica leaves it to those without one; the full node cannot.
    for (const self of ['n0', 'n1']) expect(decideCell(input(stalled(), { policy: p, state, selfId: self, random: fixedRandom(0) })).actions.filter(a => a.kind === 'volunteer')).toEqual([])
  })

  it('confirms such a surge only while the old replicas\' nodes are still full and the surge has room', () => {
    const d = decideCell(input(stalled(), { policy: p, state, selfId: 'n7', random: fixedRandom(0) }))
    const volunteer = d.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    expect(volunteer).toBeDefined()
    const confirm = (v: BiologyView): ReturnType<typeof confirmSpawn> =>
      confirmSpawn({ cell: 'billing', view: v, policy: p, selfId: 'n7', nowMs: NOW + 500, state: d.state, volunteer, params })
    expect(confirm(stalled()).action).toMatchObject({ kind: 'spawn', purpose: 'surge', digest: V2.digest })
    // n0 freed a slot meanwhile: it surges itself, n7 withdraws.
    expect(confirm(stalled(node('n0'))).action).toBeUndefined()
    // Two others took the surge meanwhile.
    const taken = [newOne('y8', 'n8', { state: 'starting', readyMs: undefined }), newOne('y9', 'n9', { state: 'starting', readyMs: undefined })]
    expect(confirm(stalled(full('n0'), taken)).action).toBeUndefined()
  })

  it('leaves the surge to the nodes holding old replicas while one of them can host another', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const d = decideCell(input(stalled(node('n0')), { policy: p, state, selfId: 'n7', random: new SeededRandom(seed) }))
      expect(d.actions.filter(a => a.kind === 'volunteer')).toEqual([])
    }
    expect(decideCell(input(stalled(node('n0')), { policy: p, state, selfId: 'n0', random: fixedRandom(0) })).actions).toContainEqual(expect.objectContaining({ kind: 'volunteer', purpose: 'surge' }))
  })

  it('once the surge elsewhere proves itself, retires an old replica on the full node', () => {
    const proven = newOne('y7', 'n7', { readyMs: NOW - 15_000 })
    const d = decideCell(input(stalled(full('n0'), [proven]), { policy: p, state, selfId: 'n0' }))
    expect(d.actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'o0' }))
  })
})

describe('a rollout on a fleet with no free slot anywhere', () => {
  // Three nodes with one slot each, all running 1.0.0: nobody can surge, so old replicas are
  // replaced in place, one at a time (at most one replica unavailable).
  const p = policy({ minReplicas: 3, maxReplicas: 3, maxSurge: 25 })
  const state: CellState = { ...initialCellState('billing'), desiredReplicas: 3 }
  const slots = (id: string, free: number): NodeRecord => node(id, { capacity: { freeSlots: free, cpuFreePercent: 60, memoryFreeBytes: 4 * 2 ** 30 } })
  const olds = [0, 1, 2].map(k => instance(`o${k}`, `n${k}`, { startedMs: k }))
  const fleet = (instances: InstanceRecord[], free: number[] = [0, 0, 0]): BiologyView =>
    view({ nodes: free.map((f, k) => slots(`n${k}`, f)), releases: [V1, V2], instances })
  const drainsOf = (d: ReturnType<typeof decideCell>): string[] => d.actions.flatMap(a => a.kind === 'drain' ? [a.instanceId] : [])

  it('retires the oldest old replica, then its node starts the target in the slot', () => {
    const first = decideCell(input(fleet(olds), { policy: p, state, selfId: 'n0', random: fixedRandom(0) }))
    expect(drainsOf(first)).toEqual(['o0'])
    expect(first.state.replacing).toBe('o0')
    for (const self of ['n1', 'n2']) {
      const d = decideCell(input(fleet(olds), { policy: p, state, selfId: self, random: fixedRandom(0) }))
      expect(d.actions).toEqual([])
      expect(d.reasons.join(' ')).toMatch(/n0 replaces o0 in place/)
    }
    // While o0 drains the slot is not free yet: n0 waits; nobody refills it with 1.0.0.
    const draining = fleet([{ ...olds[0], state: 'draining' }, olds[1], olds[2]])
    const wait = decideCell(input(draining, { policy: p, state: first.state, selfId: 'n0', random: fixedRandom(0), nowMs: NOW + 1_000 }))
    expect(wait.actions).toEqual([])
    expect(wait.state.replacing).toBe('o0')
    // o0 is gone: n0 starts 1.1.0 (no coin: fixedRandom(0.99) would lose it), and confirms it.
    const gone = fleet([olds[1], olds[2]], [1, 0, 0])
    const start = decideCell(input(gone, { policy: p, state: wait.state, selfId: 'n0', nowMs: NOW + 2_000 }))
    const volunteer = start.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    expect(volunteer).toMatchObject({ purpose: 'surge', digest: V2.digest })
    expect(confirmSpawn({ cell: 'billing', view: gone, policy: p, selfId: 'n0', nowMs: NOW + 2_500, state: start.state, volunteer, params }).action).toMatchObject({ kind: 'spawn', digest: V2.digest })
    // Meanwhile (2 of 3 ready) nobody else replaces one; n1 or n2 only once the new one proved itself.
    for (const self of ['n1', 'n2']) expect(decideCell(input(gone, { policy: p, state, selfId: self, nowMs: NOW + 2_000 })).actions).toEqual([])
    const starting = fleet([olds[1], olds[2], newOne('y0', 'n0', { state: 'starting', readyMs: undefined, startedMs: NOW + 2_500 })])
    expect(decideCell(input(starting, { policy: p, state: start.state, selfId: 'n0', nowMs: NOW + 3_000 })).state.replacing).toBeUndefined()
    for (const self of ['n1', 'n2']) expect(drainsOf(decideCell(input(starting, { policy: p, state, selfId: self, nowMs: NOW + 3_000 })))).toEqual([])
    const proven = fleet([olds[1], olds[2], newOne('y0', 'n0', { readyMs: NOW + 3_500 })].map(i => ({ ...i, lastHeartbeatMs: NOW + 14_000 })))
    expect(drainsOf(decideCell(input(proven, { policy: p, state, selfId: 'n1', nowMs: NOW + 14_000 })))).toEqual(['o1'])
    expect(drainsOf(decideCell(input(proven, { policy: p, state, selfId: 'n2', nowMs: NOW + 14_000 })))).toEqual([])
  })

  it('replaces nothing while some node could surge, or while a replica is missing', () => {
    expect(drainsOf(decideCell(input(fleet(olds, [0, 0, 1]), { policy: p, state, selfId: 'n0' })))).toEqual([])
    expect(drainsOf(decideCell(input(fleet([{ ...olds[0] }, olds[1], { ...olds[2], state: 'starting', readyMs: undefined }]), { policy: p, state, selfId: 'n0' })))).toEqual([])
  })
})

describe('retiring old replicas', () => {
  it('retires old replicas that are still starting before ready ones (seed 760 of scenarios (c) and (d))', () => {
    // A stale view had two nodes fill a deficit of old replicas just as the rollout began: 12 old
    // replicas for a desired 10, two of them still starting. Retiring the two oldest ready ones
    // instead left 8 ready until the new ones were up.
    const p = policy({ minReplicas: 10, maxReplicas: 20, maxSurge: 20 })
    const state: CellState = { ...initialCellState('billing'), desiredReplicas: 10 }
    const ready = Array.from({ length: 10 }, (_, k) => instance(`o${k}`, `n${k}`, { startedMs: k }))
    const starting = [10, 11].map(k => instance(`o${k}`, `n${k}`, { startedMs: NOW - 1_000, readyMs: undefined, state: 'starting' }))
    const v = view({ nodes: Array.from({ length: 14 }, (_, k) => node(`n${k}`)), releases: [V1, V2], instances: [...ready, ...starting] })
    const drains = Array.from({ length: 14 }, (_, k) => decideCell(input(v, { policy: p, state, selfId: `n${k}` })).actions.filter(a => a.kind === 'drain'))
    expect(drains.flat().map(a => a.kind === 'drain' ? a.instanceId : '')).toEqual(['o10', 'o11'])
  })
})

describe('crash evidence of a target that never proved itself', () => {
  const crash = (id: string, nodeId: string, atMs: number): HealthEvent =>
    ({ id, kind: 'crash', cell: 'billing', version: V2.version, digest: V2.digest, instanceId: `${id}-i`, nodeId, atMs })
  const olds = [0, 1, 2, 3].map(k => instance(`o${k}`, `n${k}`, { startedMs: k }))
  const p = policy({ minReplicas: 4, maxSurge: 25 })
  const state: CellState = { ...initialCellState('billing'), desiredReplicas: 4 }
  const base = (events: HealthEvent[], extra: InstanceRecord[] = []): BiologyView =>
    view({ nodes: Array.from({ length: 6 }, (_, k) => node(`n${k}`)), releases: [V1, V2], instances: [...olds, ...extra], events })

  it('counts toward the halt after it left the halt window and the view (seed 468 of scenario (d))', () => {
    // Two nodes surged at once, crashed once each and backed off; their crashes leave the window.
    const first = decideCell(input(base([crash('a', 'n0', NOW - 2_000), crash('b', 'n1', NOW - 1_000)]), { policy: p, state }))
    expect(first.actions.filter(a => a.kind === 'halt-release')).toEqual([])
    expect(first.state.evidence?.map(e => e.id)).toEqual(['a', 'b'])
    // 70 s later the fleet view no longer carries them; a third crash reaches the threshold (3).
    const later = NOW + 70_000
    const third = decideCell(input(base([crash('c', 'n0', later - 500)]), { policy: p, state: first.state, nowMs: later }))
    const halt = third.actions.find(a => a.kind === 'halt-release')
    expect(halt).toMatchObject({ digest: V2.digest })
    expect(halt?.kind === 'halt-release' && halt.reason).toMatch(/3 crashes .* before any replica of it proved itself/)
    expect(third.target?.version).toBe('1.0.0')
    // Without the remembered evidence (what every node did before): no halt.
    expect(decideCell(input(base([crash('c', 'n0', later - 500)]), { policy: p, state, nowMs: later })).actions.filter(a => a.kind === 'halt-release')).toEqual([])
  })

  it('is kept bounded, and forgotten once a replica of the target proves itself (the window applies again)', () => {
    const many = Array.from({ length: 200 }, (_, k) => crash(`e${String(k).padStart(3, '0')}`, 'n5', NOW - 1_000_000 + k))
    const kept = targetEvidence(many, 'billing', V2.digest, NOW, { ...defaultBiologyParams, maxEvidence: 8 })
    expect(kept.map(e => e.id)).toEqual(many.slice(192).map(e => e.id))
    // Never fewer than the threshold needs.
    expect(targetEvidence(many, 'billing', V2.digest, NOW, { ...defaultBiologyParams, maxEvidence: 1, haltThreshold: 5 })).toHaveLength(5)
    const first = decideCell(input(base([crash('a', 'n0', NOW - 2_000)]), { policy: p, state }))
    expect(first.state.evidence).toHaveLength(1)
    expect(first.state.proven).toBeUndefined()
    const proven = newOne('y', 'n4', { readyMs: NOW - 20_000 })
    const after = decideCell(input(base([], [proven]), { policy: p, state: first.state, nowMs: NOW + 1_000 }))
    expect(after.state.evidence).toBeUndefined()
    expect(after.state.proven).toBe(V2.digest)
    // Proven once, it stays so for this node: two old crashes and a new one do not halt it.
    const olderTwo = [crash('a', 'n0', NOW - 2_000), crash('b', 'n1', NOW - 1_000)]
    const much = NOW + 200_000
    const d = decideCell(input(base([...olderTwo, crash('c', 'n2', much - 100)]), { policy: p, state: after.state, nowMs: much }))
    expect(d.actions.filter(a => a.kind === 'halt-release')).toEqual([])
  })

  it('pauses the rollout, except on a node that failed the target itself: it retries there after its back-off', () => {
    const events = [crash('a', 'n0', NOW - 5_000)]
    // n0 crashed it 5 s ago (back-off 1 s) and holds no replica of it now: it starts it again without
    // the surge coin (fixedRandom(0.99) would lose it), so the release reaches no new node.
    const retry = decideCell(input(base(events), { policy: p, state, selfId: 'n0' }))
    const volunteer = retry.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    expect(volunteer).toMatchObject({ purpose: 'surge', digest: V2.digest })
    expect(volunteer.reason).toMatch(/failed here; retrying it here/)
    expect(confirmSpawn({ cell: 'billing', view: base(events), policy: p, selfId: 'n0', nowMs: NOW + 500, state: retry.state, volunteer, params }).action).toMatchObject({ kind: 'spawn', digest: V2.digest })
    // Any other node stays paused, even with a winning coin, and withdraws a surge volunteered earlier.
    for (const self of ['n1', 'n2', 'n3']) {
      const d = decideCell(input(base(events), { policy: p, state, selfId: self, random: fixedRandom(0) }))
      expect(d.actions.filter(a => a.kind === 'volunteer')).toEqual([])
      expect(d.reasons.join(' ')).toMatch(/paused/)
    }
    expect(confirmSpawn({ cell: 'billing', view: base(events), policy: p, selfId: 'n1', nowMs: NOW + 500, state: retry.state, volunteer, params }).action).toBeUndefined()
    // Not within its back-off, and not while it still has a replica of the target (restarted in place instead).
    expect(decideCell(input(base([crash('a', 'n0', NOW - 100)]), { policy: p, state, selfId: 'n0' })).actions.filter(a => a.kind === 'volunteer')).toEqual([])
    const running = newOne('x', 'n0', { state: 'starting', readyMs: undefined })
    expect(decideCell(input(base(events, [running]), { policy: p, state, selfId: 'n0' })).actions.filter(a => a.kind === 'volunteer')).toEqual([])
  })
})
