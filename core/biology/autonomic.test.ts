import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../test/sim/prng.ts'
import { confirmSpawn, decideCell } from './autonomic.ts'
import type { DecideInput, VolunteerAction } from './autonomic.ts'
import { RELEASE_HALTED_METRIC } from './health.ts'
import { initialCellState } from './params.ts'
import { surgeCount } from './rollout.ts'
import { fixedRandom, instance, node, policy, release, view } from './testing.ts'
import type { Action, BiologyView, HealthEvent, InstanceRecord } from './types.ts'

const NOW = 100_000
const params = { metricsSettleMs: 0, volunteerJitterMs: 2_000 }
const V1 = release('1.0.0', 1)
const V2 = release('1.1.0', 2)

function input (v: BiologyView, overrides: Partial<DecideInput> = {}): DecideInput {
  return { cell: 'billing', view: v, policy: policy(), selfId: 'n0', random: fixedRandom(0.99), nowMs: NOW, state: initialCellState('billing'), params, ...overrides }
}

function nodes (n: number): ReturnType<typeof node>[] {
  return Array.from({ length: n }, (_, k) => node(`n${k}`))
}

function kinds (actions: Action[]): string[] {
  return actions.map(a => a.kind)
}

function crash (k: number, atMs: number, digest = V2.digest, version = V2.version): HealthEvent {
  return { id: `e${k}`, kind: 'crash', cell: 'billing', version, digest, instanceId: `x${k}`, nodeId: `n${k}`, atMs }
}

/** 2 ready replicas at 45 % CPU (hold band), minReplicas 5: a deficit of 3. */
function deficitView (nodeCount: number): BiologyView {
  return view({ nodes: nodes(nodeCount), instances: [instance('a', 'n1'), instance('b', 'n2')] })
}

describe('replication deficit', () => {
  it('volunteers with probability ≈ deficit / eligible', () => {
    const v = deficitView(30)
    let volunteers = 0
    const trials = 4_000
    for (let seed = 1; seed <= trials; seed++) {
      const d = decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: new SeededRandom(seed) }))
      expect(d.desiredReplicas).toBe(5)
      if (d.actions.some(a => a.kind === 'volunteer')) volunteers++
    }
    // p = 3 / 30; the standard error over 4000 trials is 0.005.
    expect(Math.abs(volunteers / trials - 0.1)).toBeLessThan(0.02)
  })

  it('spreads replicas: a node that already runs one does not volunteer while an eligible node without one exists', () => {
    const v = deficitView(3) // replicas on n1 and n2; n0 has none
    for (let seed = 1; seed <= 300; seed++) {
      const d = decideCell(input(v, { selfId: 'n1', policy: policy({ minReplicas: 5 }), random: new SeededRandom(seed) }))
      expect(kinds(d.actions)).not.toContain('volunteer')
    }
    expect(decideCell(input(v, { selfId: 'n1', policy: policy({ minReplicas: 5 }) })).reasons.join(' ')).toMatch(/already runs a replica/)
    // A volunteer from n1 (decided on an older view) is withdrawn at confirmation for the same reason.
    const stale: VolunteerAction = { kind: 'volunteer', cell: 'billing', version: V1.version, digest: V1.digest, purpose: 'replicate', delayMs: 10, reason: 'test' }
    const confirm = confirmSpawn({ cell: 'billing', view: v, policy: policy({ minReplicas: 5 }), selfId: 'n1', nowMs: NOW, state: { ...initialCellState('billing'), desiredReplicas: 5 }, volunteer: stale, params })
    expect(confirm.action).toBeUndefined()
    expect(confirm.reason).toMatch(/already runs a replica/)
    // Once every eligible node runs one, any of them may take a second.
    const full = view({ nodes: nodes(3), instances: [instance('a', 'n0'), instance('b', 'n1'), instance('c', 'n2')] })
    const d = decideCell(input(full, { selfId: 'n1', policy: policy({ minReplicas: 5 }), random: fixedRandom(0) }))
    expect(kinds(d.actions)).toContain('volunteer')
  })

  it('delays the spawn by a random jitter below volunteerJitterMs', () => {
    const v = deficitView(3)
    const delays = new Set<number>()
    for (let seed = 1; seed <= 200; seed++) {
      const d = decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: new SeededRandom(seed) }))
      const a = d.actions.find(x => x.kind === 'volunteer')
      expect(a).toBeDefined()
      if (a?.kind === 'volunteer') {
        expect(a.delayMs).toBeGreaterThanOrEqual(0)
        expect(a.delayMs).toBeLessThan(2_000)
        delays.add(a.delayMs)
      }
    }
    expect(delays.size).toBeGreaterThan(50)
  })

  it('starts no replica on the minority side of a partition; a majority or a tie does', () => {
    const v = deficitView(3)
    const go = (membership: { live: number, known: number }): boolean =>
      kinds(decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: fixedRandom(0), membership })).actions).includes('volunteer')
    // Two of five (a 2 | 3 cut seen from the two): nothing starts, and the reason says why.
    expect(go({ live: 2, known: 5 })).toBe(false)
    expect(decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: fixedRandom(0), membership: { live: 2, known: 5 } })).reasons.join(' ')).toMatch(/sees 2 of the 5 full nodes/)
    expect(go({ live: 3, known: 5 })).toBe(true)
    // One of two: a dead peer and a partition look the same; a tie is not a minority.
    expect(go({ live: 1, known: 2 })).toBe(true)
    expect(go({ live: 3, known: 3 })).toBe(true)
  })

  it('counts replicas last seen on nodes out of sight against growth above min_replicas, never against refilling to it', () => {
    // 2 ready replicas at 95 % CPU want more (min 2, max 4): one or two more may run behind a partition.
    const hot = view({ nodes: nodes(3), instances: [instance('a', 'n1', { cpuPercent: 95 }), instance('b', 'n2', { cpuPercent: 95 })] })
    const grow = (outOfSight: number): ReturnType<typeof decideCell> =>
      decideCell(input(hot, { policy: policy({ minReplicas: 2, maxReplicas: 4 }), random: fixedRandom(0), membership: { live: 3, known: 5, outOfSight } }))
    expect(kinds(grow(0).actions)).toContain('volunteer')
    expect(kinds(grow(1).actions)).toContain('volunteer')
    expect(kinds(grow(2).actions)).not.toContain('volunteer')
    expect(grow(2).reasons.join(' ')).toMatch(/2 replica\(s\) were last seen on nodes now out of sight/)
    // Below min_replicas (a dead node's replicas to replace) the hidden ones do not hold it back.
    const short = decideCell(input(deficitView(3), { policy: policy({ minReplicas: 3, maxReplicas: 3 }), random: fixedRandom(0), membership: { live: 3, known: 4, outOfSight: 1 } }))
    expect(kinds(short.actions)).toContain('volunteer')
  })

  it('refills toward min_replicas only as far as out-of-sight replicas leave room under max_replicas, in both phases', () => {
    // The majority side of a cut: one replica here (on n1), one last seen on a node now out of
    // sight; the calls' load wants 3 (min 2, max 3). Two eligible nodes (n0, n2) must not both start
    // one: with the hidden replica that makes 4 after the heal.
    const v = view({ nodes: nodes(3), instances: [instance('a', 'n1', { cpuPercent: 150 })] })
    const pol = policy({ minReplicas: 2, maxReplicas: 3 })
    const state = initialCellState('billing')
    const membership = { live: 3, known: 4, outOfSight: 1 }
    const d = decideCell(input(v, { policy: pol, state, random: fixedRandom(0), membership }))
    const volunteer = d.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    expect(volunteer.reason).toMatch(/^deficit 1 /)
    expect(volunteer.reason).toMatch(/p=0\.500 among 2 eligible/)
    expect(d.reasons.join(' ')).toMatch(/1 replica\(s\) were last seen on nodes now out of sight .* aims for 2, not 3/)
    // Without the hidden one, both would volunteer for the deficit of 2.
    const open = decideCell(input(v, { policy: pol, state, random: fixedRandom(0), membership: { live: 3, known: 4, outOfSight: 0 } }))
    expect((open.actions.find(a => a.kind === 'volunteer') as VolunteerAction).reason).toMatch(/^deficit 2 .*p=1\.000/)
    // The other volunteer confirms after n0's replica started: the room is taken.
    const after = { ...v, instances: [...v.instances, instance('c', 'n0', { state: 'starting' })] }
    const confirm = confirmSpawn({ cell: 'billing', view: after, policy: pol, selfId: 'n2', nowMs: NOW + 500, state: d.state, volunteer, params, membership })
    expect(confirm.action).toBeUndefined()
    expect(confirm.reason).toMatch(/out of sight/)
    // A cut that began after the volunteer: the node is on a minority side now.
    expect(confirmSpawn({ cell: 'billing', view: v, policy: pol, selfId: 'n2', nowMs: NOW + 500, state: d.state, volunteer, params, membership: { live: 2, known: 5, outOfSight: 0 } }).reason).toMatch(/minority side/)
    // Without membership (the hidden replica came back into view as a live one) the same holds by count.
    expect(confirmSpawn({ cell: 'billing', view: after, policy: pol, selfId: 'n2', nowMs: NOW + 500, state: d.state, volunteer, params }).action).toMatchObject({ kind: 'spawn' })
  })

  it('never volunteers on a node without capacity or without trust in the authority', () => {
    const base = deficitView(3)
    const full = node('n0', { capacity: { freeSlots: 0, cpuFreePercent: 80, memoryFreeBytes: 2 ** 32 } })
    const untrusting = node('n0', { trustsAuthorities: ['someone-else'] })
    for (const self of [full, untrusting]) {
      const v = { ...base, nodes: [self, ...base.nodes.slice(1)] }
      for (let seed = 1; seed <= 500; seed++) {
        const d = decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: new SeededRandom(seed) }))
        expect(kinds(d.actions)).not.toContain('volunteer')
      }
      expect(decideCell(input(v, { policy: policy({ minReplicas: 5 }) })).reasons.join(' ')).toMatch(/not eligible/)
    }
  })

  it('re-checks the view before spawning (two-phase)', () => {
    const v = deficitView(3)
    const d = decideCell(input(v, { policy: policy({ minReplicas: 5 }), random: fixedRandom(0) }))
    const volunteer = d.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    expect(volunteer.purpose).toBe('replicate')
    const confirm = (w: BiologyView) => confirmSpawn({ cell: 'billing', view: w, policy: policy({ minReplicas: 5 }), selfId: 'n0', nowMs: NOW + 500, state: d.state, volunteer, params })
    expect(confirm(v).action).toMatchObject({ kind: 'spawn', version: '1.0.0', digest: V1.digest })
    const filled = { ...v, instances: [...v.instances, instance('c', 'n1', { state: 'starting' }), instance('d', 'n2', { state: 'starting' }), instance('e', 'n1', { state: 'starting' })] }
    const r = confirm(filled)
    expect(r.action).toBeUndefined()
    expect(r.reason).toMatch(/deficit filled/)
  })

  it('drains the oldest instances on surplus, each node its own', () => {
    const v = view({
      nodes: nodes(3),
      instances: [instance('a', 'n0', { startedMs: 30 }), instance('b', 'n1', { startedMs: 10 }), instance('c', 'n2', { startedMs: 20 }), instance('d', 'n0', { startedMs: 40 })]
    })
    // 4 live at 10 % CPU: down to ceil(4 × 10 / 60) = 1, clamped to minReplicas 2: drain b and c.
    const low = { ...v, instances: v.instances.map(i => ({ ...i, cpuPercent: 10 })) }
    expect(decideCell(input(low, { selfId: 'n0' })).actions.filter(a => a.kind === 'drain')).toEqual([])
    expect(decideCell(input(low, { selfId: 'n1' })).actions).toMatchObject([{ kind: 'drain', instanceId: 'b' }])
    expect(decideCell(input(low, { selfId: 'n2' })).actions).toMatchObject([{ kind: 'drain', instanceId: 'c' }])
  })

  it('does not count instances with a stale heartbeat', () => {
    const v = view({ nodes: nodes(3), instances: [instance('a', 'n1'), instance('b', 'n2', { lastHeartbeatMs: NOW - 60_000 })] })
    const d = decideCell(input(v, { random: fixedRandom(0) }))
    // Only one live replica against minReplicas 2.
    expect(d.actions).toMatchObject([{ kind: 'volunteer', purpose: 'replicate' }])
  })
})

describe('rolling update (live)', () => {
  const oldOnEach = (n: number): InstanceRecord[] => Array.from({ length: n }, (_, k) => instance(`o${k}`, `n${k}`, { startedMs: k }))
  const base = (extra: InstanceRecord[] = []): BiologyView =>
    view({ nodes: nodes(6), releases: [V1, V2], instances: [...oldOnEach(4), ...extra] })
  const p = policy({ minReplicas: 4, maxSurge: 25 })
  const newOne = (id: string, nodeId: string, o: Partial<InstanceRecord>): InstanceRecord =>
    instance(id, nodeId, { version: V2.version, digest: V2.digest, startedMs: 50_000, ...o })

  it('bounds the surge by max(1, ceil(maxSurge % × desired))', () => {
    expect(surgeCount(5, 10)).toBe(1)
    expect(surgeCount(20, 10)).toBe(2)
    expect(surgeCount(25, 10)).toBe(3)
    expect(surgeCount(100, 4)).toBe(4)
    expect(surgeCount(1, 0)).toBe(1)
  })

  it('flips a coin with p = maxSurge / 100 to start one new replica', () => {
    let wins = 0
    for (let seed = 1; seed <= 4_000; seed++) {
      const d = decideCell(input(base(), { policy: p, random: new SeededRandom(seed) }))
      const v = d.actions.find(a => a.kind === 'volunteer')
      if (v !== undefined) {
        wins++
        expect(v).toMatchObject({ purpose: 'surge', version: '1.1.0', digest: V2.digest })
      }
    }
    expect(Math.abs(wins / 4_000 - 0.25)).toBeLessThan(0.02)
  })

  it('starts nothing while the surge is full', () => {
    const d = decideCell(input(base([newOne('x', 'n5', { state: 'starting', readyMs: undefined })]), { policy: p, random: fixedRandom(0) }))
    expect(kinds(d.actions)).not.toContain('volunteer')
    expect(d.reasons.join(' ')).toMatch(/surge full/)
  })

  it('withdraws a surge volunteer when the surge filled meanwhile', () => {
    const d = decideCell(input(base(), { policy: p, random: fixedRandom(0) }))
    const volunteer = d.actions.find(a => a.kind === 'volunteer') as VolunteerAction
    const later = base([newOne('x', 'n5', { state: 'starting', readyMs: undefined })])
    const r = confirmSpawn({ cell: 'billing', view: later, policy: p, selfId: 'n0', nowMs: NOW + 100, state: d.state, volunteer, params })
    expect(r.action).toBeUndefined()
    expect(confirmSpawn({ cell: 'billing', view: base(), policy: p, selfId: 'n0', nowMs: NOW + 100, state: d.state, volunteer, params }).action).toMatchObject({ kind: 'spawn', digest: V2.digest })
  })

  it('retires one old replica on the node whose new replica passed healthGraceMs', () => {
    const state = { ...initialCellState('billing'), desiredReplicas: 4 }
    const young = base([newOne('x', 'n2', { readyMs: NOW - 9_999 })])
    for (const self of ['n0', 'n1', 'n2', 'n3']) {
      expect(decideCell(input(young, { policy: p, selfId: self, state })).actions.filter(a => a.kind === 'drain')).toEqual([])
    }
    const proven = base([newOne('x', 'n2', { readyMs: NOW - 10_000 })])
    expect(decideCell(input(proven, { policy: p, selfId: 'n2', state })).actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'o2' }))
    for (const self of ['n0', 'n1', 'n3']) {
      expect(decideCell(input(proven, { policy: p, selfId: self, state })).actions.filter(a => a.kind === 'drain')).toEqual([])
    }
  })

  it('never proves a new replica that crashed or failed a health check', () => {
    const state = { ...initialCellState('billing'), desiredReplicas: 4 }
    const failed: HealthEvent = { id: 'h', kind: 'health-failed', cell: 'billing', version: V2.version, digest: V2.digest, instanceId: 'x', nodeId: 'n2', atMs: NOW - 200_000 }
    const v = { ...base([newOne('x', 'n2', { readyMs: NOW - 20_000 })]), events: [failed] }
    expect(decideCell(input(v, { policy: p, selfId: 'n2', state })).actions.filter(a => a.kind === 'drain')).toEqual([])
  })

  it('backs off the newest starting replicas beyond the surge when stale views let too many start', () => {
    const state = { ...initialCellState('billing'), desiredReplicas: 4 }
    const v = base([
      newOne('x', 'n4', { state: 'starting', readyMs: undefined, startedMs: 50_000 }),
      newOne('y', 'n5', { state: 'starting', readyMs: undefined, startedMs: 50_100 })
    ])
    expect(decideCell(input(v, { policy: p, selfId: 'n5', state })).actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'y' }))
    expect(decideCell(input(v, { policy: p, selfId: 'n4', state })).actions.filter(a => a.kind === 'drain')).toEqual([])
  })

  it('fills a deficit during a rollout with the running release until the target has proven itself', () => {
    const state = { ...initialCellState('billing'), desiredReplicas: 6 }
    const unproven = base([newOne('x', 'n5', { state: 'starting', readyMs: undefined })])
    // n4 holds no old replica, so it does not take part in the surge.
    const d = decideCell(input(unproven, { policy: policy({ minReplicas: 6, maxSurge: 25 }), state, selfId: 'n4', random: fixedRandom(0) }))
    expect(d.actions).toMatchObject([{ kind: 'volunteer', purpose: 'replicate', version: '1.0.0' }])
    const proven = base([newOne('x', 'n5', { readyMs: NOW - 20_000 })])
    const e = decideCell(input(proven, { policy: policy({ minReplicas: 6, maxSurge: 25 }), state, selfId: 'n4', random: fixedRandom(0) }))
    expect(e.actions).toContainEqual(expect.objectContaining({ kind: 'volunteer', purpose: 'replicate', version: '1.1.0' }))
  })

  it('with update = "stop" stops the old replicas first and starts nothing meanwhile', () => {
    const d = decideCell(input(base(), { policy: policy({ minReplicas: 6, update: 'stop' }), random: fixedRandom(0) }))
    expect(d.actions).toEqual([expect.objectContaining({ kind: 'drain', instanceId: 'o0' })])
    // Once the old are gone, replication starts the target.
    const empty = view({ nodes: nodes(6), releases: [V1, V2], instances: [] })
    const after = decideCell(input(empty, { policy: policy({ minReplicas: 6, update: 'stop' }), random: fixedRandom(0) }))
    expect(after.actions).toMatchObject([{ kind: 'volunteer', purpose: 'replicate', version: '1.1.0' }])
  })
})

describe('halting a crashing release', () => {
  const running = [instance('o1', 'n1'), instance('o2', 'n2'), instance('x0', 'n0', { version: V2.version, digest: V2.digest, startedMs: 90_000 })]
  const base = (events: HealthEvent[]): BiologyView => view({ nodes: nodes(3), releases: [V1, V2], instances: running, events })

  it('halts after the threshold of crashes within the window and returns to the previous release', () => {
    const d = decideCell(input(base([crash(0, NOW - 1_000), crash(1, NOW - 2_000), crash(2, NOW - 3_000)])))
    const halt = d.actions.find(a => a.kind === 'halt-release')
    expect(halt).toMatchObject({ kind: 'halt-release', version: '1.1.0', digest: V2.digest, metric: RELEASE_HALTED_METRIC })
    expect(halt?.kind === 'halt-release' && halt.reason).toMatch(/3 crashes .* returning to 1\.0\.0/)
    expect(d.target?.version).toBe('1.0.0')
    expect(d.actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'x0' }))
    expect(d.state.halts.map(h => h.digest)).toEqual([V2.digest])
    // Next tick: remembered, not halted again.
    const again = decideCell(input(base([]), { state: d.state }))
    expect(kinds(again.actions)).not.toContain('halt-release')
    expect(again.target?.version).toBe('1.0.0')
  })

  it('returns to the same version published earlier as another artifact, not past it to an older version', () => {
    // 1.1.0 ran; 1.1.0 was published again (a fix without a version bump) and crashes: the fleet
    // goes back to the 1.1.0 that ran, not to 1.0.0.
    const V2b = release('1.1.0', 3, { digest: 'd-1.1.0-again' })
    const fixed = instance('x1', 'n1', { version: V2.version, digest: V2.digest })
    const v = view({ nodes: nodes(3), releases: [V1, V2, V2b], instances: [fixed, instance('y0', 'n0', { version: V2b.version, digest: V2b.digest, startedMs: 90_000 })], events: [0, 1, 2].map(k => crash(k, NOW - 1_000 * (k + 1), V2b.digest)) })
    const d = decideCell(input(v))
    expect(d.actions.find(a => a.kind === 'halt-release')).toMatchObject({ digest: V2b.digest, metric: RELEASE_HALTED_METRIC })
    expect(d.target).toMatchObject({ version: '1.1.0', digest: V2.digest })
    // Both are 1.1.0: the reason tells the artifacts apart.
    expect(d.reasons).toContain(`target 1.1.0 (${V2.digest.slice(0, 12)}…): 1.1.0 (${V2b.digest.slice(0, 12)}…) is halted, back to the previous release`)
    expect(d.actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'y0' }))
    expect(d.actions).not.toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'x1' }))
  })

  it('does not halt below the threshold, or for crashes outside the window once the release proved itself', () => {
    expect(kinds(decideCell(input(base([crash(0, NOW - 1_000), crash(1, NOW - 2_000)]))).actions)).not.toContain('halt-release')
    const old = [crash(0, NOW - 1_000), crash(1, NOW - 2_000), crash(2, NOW - 200_000)]
    const proven = { ...initialCellState('billing'), proven: V2.digest }
    expect(kinds(decideCell(input(base(old), { state: proven })).actions)).not.toContain('halt-release')
    // Before any replica of it proved itself, every failure counts (rollout-progress.test.ts).
    expect(kinds(decideCell(input(base(old))).actions)).toContain('halt-release')
    // The same event gossiped twice counts once.
    const e = crash(0, NOW - 1_000)
    expect(kinds(decideCell(input(base([e, e, e]))).actions)).not.toContain('halt-release')
  })

  it('marks the only release there is crash-looping instead of returning to another (see crash-loop.test.ts)', () => {
    const v = { ...base([crash(0, NOW - 1), crash(1, NOW - 2), crash(2, NOW - 3)]), releases: [V2] }
    const d = decideCell(input(v))
    expect(d.actions).toContainEqual(expect.objectContaining({ kind: 'halt-release', digest: V2.digest, metric: 'cell_biology_release_crash_looping_total' }))
    expect(d.target).toBeUndefined()
    expect(d.reasons.join(' ')).toMatch(/no earlier release/)
  })

  it('adopts a halt gossiped by another node once, saying who halted it and why', () => {
    const v = { ...base([]), halts: [{ cell: 'billing', version: V2.version, digest: V2.digest, atMs: NOW - 5, nodeId: 'node-far-away-12345678', reason: '3 crashes or failed health checks within 120000 ms' }] }
    const d = decideCell(input(v))
    const halts = d.actions.filter(a => a.kind === 'halt-release')
    expect(halts).toEqual([expect.objectContaining({ version: '1.1.0', digest: V2.digest, metric: RELEASE_HALTED_METRIC })])
    expect(halts[0].kind === 'halt-release' && halts[0].reason).toMatch(/halted by node …12345678: 3 crashes/)
    expect(d.actions).toContainEqual(expect.objectContaining({ kind: 'drain', instanceId: 'x0' }))
    expect(d.target?.version).toBe('1.0.0')
    // Remembered: the next tick neither adopts it again nor forgets it when the gossip stops.
    const again = decideCell(input(base([]), { state: d.state }))
    expect(kinds(again.actions)).not.toContain('halt-release')
    expect(again.target?.version).toBe('1.0.0')
  })


  it('restarts its own crashed replica of the target in place after the backoff', () => {
    const crashed = instance('x0', 'n0', { version: V2.version, digest: V2.digest, state: 'crashed' })
    const v = (atMs: number): BiologyView => view({ nodes: nodes(3), releases: [V1, V2], instances: [instance('o1', 'n1'), crashed], events: [{ ...crash(0, atMs), instanceId: 'x0' }] })
    expect(kinds(decideCell(input(v(NOW - 100))).actions)).not.toContain('restart')
    expect(decideCell(input(v(NOW - 5_000))).actions).toContainEqual(expect.objectContaining({ kind: 'restart', instanceId: 'x0', digest: V2.digest }))
  })
})

describe('target version and rollback', () => {
  const desired = (version: string, seq: number) => ({ cell: 'billing', version, digest: `d-${version}`, seq })

  it('follows the newest release by semver when no desired record exists', () => {
    const v = view({ nodes: nodes(2), releases: [release('1.10.0', 2), release('1.9.0', 3), V1] })
    expect(decideCell(input(v)).target?.version).toBe('1.10.0')
  })

  it('rolls back to the version of a higher-seq desired record, displacing the newer one', () => {
    const v = view({ nodes: nodes(4), releases: [V1, V2], desired: [desired('1.0.0', 3)], instances: [instance('x', 'n0', { version: V2.version, digest: V2.digest }), instance('y', 'n1', { version: V2.version, digest: V2.digest })] })
    const d = decideCell(input(v, { random: fixedRandom(0) }))
    expect(d.target?.version).toBe('1.0.0')
    expect(d.actions).toMatchObject([{ kind: 'volunteer', purpose: 'surge', version: '1.0.0' }])
  })

  it('ignores a replayed desired record with a lower seq', () => {
    const state = { ...initialCellState('billing'), desired: desired('1.0.0', 5) }
    const v = view({ nodes: nodes(2), releases: [V1, V2], desired: [desired('1.1.0', 3)] })
    const d = decideCell(input(v, { state }))
    expect(d.target?.version).toBe('1.0.0')
    expect(d.state.desired?.seq).toBe(5)
    expect(d.reasons.join(' ')).toMatch(/ignored replayed desired record seq 3/)
  })

  it('rolls forward again when a release is published after the desired record', () => {
    const v = view({ nodes: nodes(2), releases: [V1, V2, release('1.2.0', 4)], desired: [desired('1.0.0', 3)] })
    expect(decideCell(input(v)).target?.version).toBe('1.2.0')
  })
})
