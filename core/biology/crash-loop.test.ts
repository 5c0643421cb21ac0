// Issue 8 §4 and §6 in the pure decisions: crash loops back off and end (crash-looping when there is
// nothing to fall back to), a crashed replica keeps its slot instead of spreading the crash, and a
// retire record takes the cell to zero until a later publish or rollback.
//
// On the old code (before this change): the only release was never halted ("not halting"), a
// crashed replica restarted every restartBackoffMs whatever its history, other nodes volunteered
// for the crashed replica's slot, and there was no retire record: every test here failed.
import { describe, expect, it } from 'vitest'
import { confirmSpawn, decideCell } from './autonomic.ts'
import type { DecideInput, VolunteerAction } from './autonomic.ts'
import { isCrashLooping, RELEASE_CRASH_LOOPING_METRIC, restartDelayMs } from './health.ts'
import { defaultBiologyParams, initialCellState } from './params.ts'
import { fixedRandom, instance, node, policy, release, view } from './testing.ts'
import type { BiologyView, HealthEvent } from './types.ts'

const NOW = 1_000_000
const params = { metricsSettleMs: 0, volunteerJitterMs: 2_000 }
const ONLY = release('1.0.0', 1)

function input (v: BiologyView, overrides: Partial<DecideInput> = {}): DecideInput {
  return { cell: 'billing', view: v, policy: policy({ minReplicas: 1 }), selfId: 'n0', random: fixedRandom(0), nowMs: NOW, state: initialCellState('billing'), params, ...overrides }
}

function crash (id: string, nodeId: string, atMs: number, instanceId = id): HealthEvent {
  return { id, kind: 'crash', cell: 'billing', version: ONLY.version, digest: ONLY.digest, instanceId, nodeId, atMs }
}

const nodes = [node('n0'), node('n1'), node('n2')]

describe('restart back-off', () => {
  it('doubles from restartBackoffMs per crash of the release on this node, capped at 5 min', () => {
    const p = defaultBiologyParams
    expect([1, 2, 3, 4, 9, 10, 1000].map(n => restartDelayMs(n, p))).toEqual([1_000, 2_000, 4_000, 8_000, 256_000, 300_000, 300_000])
  })

  it('waits longer after each crash before restarting in place', () => {
    const crashed = instance('x3', 'n0', { state: 'crashed' })
    // Two earlier crashes here within restartResetMs: the third waits 4 s, not 1 s.
    const events = [crash('e1', 'n0', NOW - 60_000, 'x1'), crash('e2', 'n0', NOW - 50_000, 'x2')]
    const v = (sinceMs: number): BiologyView => view({ nodes, releases: [ONLY], instances: [crashed], events: [...events, crash('e3', 'n0', NOW - sinceMs, 'x3')] })
    const big = { ...params, haltThreshold: 100 }
    expect(decideCell(input(v(3_000), { params: big })).actions.map(a => a.kind)).not.toContain('restart')
    expect(decideCell(input(v(3_000), { params: big })).reasons.join(' ')).toMatch(/restart after 4000 ms/)
    expect(decideCell(input(v(4_000), { params: big })).actions).toContainEqual(expect.objectContaining({ kind: 'restart', instanceId: 'x3' }))
  })

  it('keeps the crashed replica\'s slot: no other node volunteers while it waits for its restart', () => {
    const v = view({ nodes, releases: [ONLY], instances: [instance('x1', 'n1', { state: 'crashed', lastHeartbeatMs: NOW })], events: [crash('e1', 'n1', NOW - 100, 'x1')] })
    const d = decideCell(input(v))
    expect(d.actions.map(a => a.kind)).not.toContain('volunteer')
    expect(d.reasons.join(' ')).toMatch(/wait for a restart in place/)
  })
})

describe('a crash loop with nothing to fall back to', () => {
  const loop = view({ nodes, releases: [ONLY], instances: [instance('x3', 'n0', { state: 'crashed' })], events: [crash('e1', 'n0', NOW - 9_000, 'x1'), crash('e2', 'n0', NOW - 6_000, 'x2'), crash('e3', 'n0', NOW - 1_000, 'x3')] })

  it('is marked crash-looping and nothing starts it again, here or anywhere', () => {
    const d = decideCell(input(loop))
    const halt = d.actions.find(a => a.kind === 'halt-release')
    expect(halt).toMatchObject({ digest: ONLY.digest, metric: RELEASE_CRASH_LOOPING_METRIC })
    expect(d.state.halts).toHaveLength(1)
    expect(isCrashLooping(d.state.halts[0])).toBe(true)
    expect(d.target).toBeUndefined()
    expect(d.actions.map(a => a.kind)).not.toContain('restart')
    // Later ticks (crashes out of the window, nothing running): still nothing is started.
    const later = decideCell(input(view({ nodes, releases: [ONLY] }), { state: d.state, nowMs: NOW + 3_600_000 }))
    expect(later.actions).toEqual([])
    // Another node that only hears the gossiped halt does not start it either.
    const other = decideCell(input(view({ nodes, releases: [ONLY], halts: d.state.halts }), { selfId: 'n2' }))
    expect(other.actions.map(a => a.kind)).toEqual(['halt-release'])
    expect(other.actions[0]).toMatchObject({ metric: RELEASE_CRASH_LOOPING_METRIC })
    // A volunteer from before the halt is withdrawn.
    const vol: VolunteerAction = { kind: 'volunteer', cell: 'billing', version: ONLY.version, digest: ONLY.digest, purpose: 'replicate', delayMs: 10, reason: 'test' }
    expect(confirmSpawn({ cell: 'billing', view: view({ nodes, releases: [ONLY] }), policy: policy({ minReplicas: 1 }), selfId: 'n1', nowMs: NOW, state: d.state, volunteer: vol, params }).action).toBeUndefined()
  })

  it('starts normally when a fixed version is published', () => {
    const d = decideCell(input(loop))
    const fixed = release('1.0.1', 2)
    const next = decideCell(input(view({ nodes, releases: [ONLY, fixed] }), { state: d.state }))
    expect(next.target?.version).toBe('1.0.1')
    expect(next.actions).toContainEqual(expect.objectContaining({ kind: 'volunteer', version: '1.0.1' }))
  })
})

describe('retire', () => {
  const running = [instance('a', 'n0'), instance('b', 'n1')]
  const retired = (seq: number): BiologyView => view({ nodes, releases: [ONLY], instances: running, retired: [{ cell: 'billing', seq, authority: 'a1' }] })

  it('drains every replica and starts nothing while the retire record is the newest', () => {
    const d = decideCell(input(retired(5)))
    expect(d.desiredReplicas).toBe(0)
    expect(d.actions).toEqual([expect.objectContaining({ kind: 'drain', instanceId: 'a' })])
    expect(d.reasons.join(' ')).toMatch(/retired by a1/)
    expect(decideCell(input(view({ nodes, releases: [ONLY], retired: [{ cell: 'billing', seq: 5, authority: 'a1' }] }))).actions).toEqual([])
  })

  it('comes back at its policy\'s bounds when a release with a higher seq is published', () => {
    const d = decideCell(input(retired(5), { policy: policy({ minReplicas: 2 }) }))
    const back = decideCell(input(view({ nodes, releases: [{ ...ONLY, seq: 6 }], retired: [{ cell: 'billing', seq: 5, authority: 'a1' }] }), { state: d.state, policy: policy({ minReplicas: 2 }) }))
    expect(back.desiredReplicas).toBe(2)
    expect(back.actions).toContainEqual(expect.objectContaining({ kind: 'volunteer', version: '1.0.0' }))
  })

  it('has no effect when older than the newest release or desired record (a replay, or after a re-publish)', () => {
    const d = decideCell(input({ ...retired(1), releases: [ONLY, release('1.1.0', 7)] }, { policy: policy({ minReplicas: 2 }) }))
    expect(d.actions.map(a => a.kind)).not.toContain('drain')
    expect(d.target?.version).toBe('1.1.0')
    const withDesired = decideCell(input({ ...retired(5), desired: [{ cell: 'billing', version: '1.0.0', digest: ONLY.digest, seq: 6 }] }, { policy: policy({ minReplicas: 2 }) }))
    expect(withDesired.actions.map(a => a.kind)).not.toContain('drain')
  })
})
