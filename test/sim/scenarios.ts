// The scenarios of the biology simulator. Each returns measured figures and the invariants it
// broke (an empty list is a pass), plus the hash of its event log for the determinism check.

import type { BiologyParams, Policy } from '../../core/biology/types.ts'
import { SeededRandom } from './prng.ts'
import { World } from './world.ts'
import type { ReleaseSpec, WorldOptions } from './world.ts'

export const CELL = 'billing'
export const AUTHORITY = 'authority-a'
const V1: ReleaseSpec = { cell: CELL, version: '1.0.0', digest: 'sha256-v1', seq: 1, authority: AUTHORITY }
const V2: ReleaseSpec = { cell: CELL, version: '1.1.0', digest: 'sha256-v2', seq: 2, authority: AUTHORITY }

/** Loop tuning used by every scenario (the defaults are for real fleets; these are faster). */
export const SIM_PARAMS: Partial<BiologyParams> = {
  heartbeatStaleMs: 5_000,
  stabilisationWindowMs: 30_000,
  volunteerJitterMs: 1_000,
  // The simulated replicas report instantaneous CPU, so there is no averaging window to wait out.
  metricsSettleMs: 0,
  haltThreshold: 3,
  haltWindowMs: 60_000,
  restartBackoffMs: 500
}

export const BASE_POLICY: Policy = {
  minReplicas: 10,
  maxReplicas: 20,
  cpuTarget: 60,
  memoryTarget: 70,
  update: 'live',
  maxSurge: 20,
  healthGraceMs: 10_000,
  canaryWeight: 5
}

export const WARMUP_MS = 5_000

export function baseOptions (seed: number, overrides: Partial<WorldOptions> = {}): WorldOptions {
  return {
    seed,
    nodes: 50,
    slotsPerNode: 4,
    tickMs: 1_000,
    delayMs: [20, 250],
    loss: 0.05,
    startupMs: [1_000, 3_000],
    drainMs: [500, 1_500],
    crashAfterMs: [500, 2_000],
    loadNoise: 0.03,
    policy: BASE_POLICY,
    params: SIM_PARAMS,
    cell: CELL,
    authority: AUTHORITY,
    ...overrides
  }
}

export interface ScenarioResult {
  scenario: string
  seed: number
  metrics: Record<string, number>
  violations: string[]
  logHash: string
  logLines: number
}

/** `extra`: world options laid over the scenario's own (e.g. `{ dissemination: 'per-cell' }`). */
export type Scenario = (seed: number, keepLog?: boolean, extra?: Partial<WorldOptions>) => ScenarioResult

function finish (scenario: string, seed: number, world: World, metrics: Record<string, number>, violations: string[]): ScenarioResult {
  if (world.ineligibleSpawns > 0) violations.push(`${world.ineligibleSpawns} spawn(s) on a node without capacity or trust`)
  if (world.haltedSpawns > 0) violations.push(`${world.haltedSpawns} spawn(s) or restart(s) of a release the node knew was halted`)
  return { scenario, seed, metrics, violations, logHash: world.digest(), logLines: world.logLines }
}

function seedFleet (world: World, replicas: number): void {
  for (let i = 0; i < world.nodes.length; i++) world.publish(i, V1)
  for (let k = 0; k < replicas; k++) world.seedInstance(k, V1, -100_000 + k * 1_000)
}

/** (a) 50 nodes, nothing running, minReplicas 10: how fast and how cleanly do they get there. */
export const scaleFromZero: Scenario = (seed, keepLog, extra) => {
  const untrusting = [45, 46, 47, 48, 49]
  const noCapacity = [40, 41, 42, 43, 44]
  const world = new World(baseOptions(seed, { untrusting, noCapacity, keepLog, ...extra }))
  const min = BASE_POLICY.minReplicas
  seedFleet(world, 0)
  let reachedMs: number | undefined
  let maxLive = 0
  world.observer = w => {
    const c = w.counts()
    maxLive = Math.max(maxLive, c.live)
    if (reachedMs === undefined && c.ready >= min) reachedMs = w.nowMs
  }
  world.start(WARMUP_MS)
  world.run(120_000, () => reachedMs !== undefined && world.nowMs >= reachedMs + 20_000)
  const violations: string[] = []
  if (reachedMs === undefined) violations.push('never reached minReplicas')
  for (const i of [...untrusting, ...noCapacity]) {
    if (world.spawnedOn.get(V1.digest)?.has(i) === true) violations.push(`node ${i} volunteered without trust or capacity`)
  }
  const final = world.counts()
  if (final.live < min) violations.push(`ended with ${final.live} live < minReplicas ${min}`)
  return finish('a', seed, world, {
    timeToMinS: ((reachedMs ?? Infinity) - WARMUP_MS) / 1000,
    overshoot: maxLive - min,
    finalLive: final.live
  }, violations)
}

/** (b) 10 replicas at 50 % CPU, then 5× the load: the HPA rule wants ceil(2500 / 60) = 42. */
export const loadStep: Scenario = (seed, keepLog, extra) => {
  const policy: Policy = { ...BASE_POLICY, maxReplicas: 100 }
  const world = new World(baseOptions(seed, { policy, keepLog, ...extra }))
  seedFleet(world, 10)
  world.setLoad(500)
  const stepMs = 15_000
  const load = 2_500
  const want = Math.ceil(load / policy.cpuTarget)
  let reachedMs: number | undefined
  let maxLive = 0
  let lastLive = 10
  let lastDirection = 0
  let flaps = 0
  world.observer = w => {
    const c = w.counts()
    if (w.nowMs < stepMs) return
    maxLive = Math.max(maxLive, c.live)
    if (c.live !== lastLive) {
      const direction = Math.sign(c.live - lastLive)
      if (lastDirection !== 0 && direction !== lastDirection) flaps++
      lastDirection = direction
      lastLive = c.live
    }
    if (reachedMs === undefined && c.ready >= want) reachedMs = w.nowMs
  }
  world.start(WARMUP_MS)
  world.at(stepMs, () => world.setLoad(load))
  world.run(240_000, () => reachedMs !== undefined && world.nowMs >= reachedMs + 30_000)
  const violations: string[] = []
  if (reachedMs === undefined) violations.push(`never reached ${want} ready replicas`)
  return finish('b', seed, world, {
    timeToDesiredS: ((reachedMs ?? Infinity) - stepMs) / 1000,
    overshoot: Math.max(0, maxLive - want),
    flaps,
    finalLive: world.counts().live
  }, violations)
}

/** The rollout scenarios run 10 replicas on 20 nodes (50 would only make them slower to simulate). */
const ROLLOUT_NODES = 20

interface RolloutRun {
  world: World
  publishMs: number
  minReady: number
}

function rolloutWorld (seed: number, v2: ReleaseSpec, keepLog: boolean | undefined, partition: boolean, policy: Policy, extra?: Partial<WorldOptions>): RolloutRun {
  // Optionally a random group of 5 nodes is cut off for 10 s somewhere in the rollout: views go
  // stale on both sides, which is exactly when a careless loop would retire too much.
  const r = new SeededRandom(seed ^ 0x5eed)
  const group = new Set<number>()
  while (group.size < 5) group.add(Math.floor(r.next() * ROLLOUT_NODES))
  const fromMs = 15_000 + Math.floor(r.next() * 30_000)
  const partitions = partition ? [{ fromMs, toMs: fromMs + 10_000, group }] : []
  const world = new World(baseOptions(seed, { nodes: ROLLOUT_NODES, keepLog, partitions, policy, ...extra }))
  seedFleet(world, 10)
  world.setLoad(420)
  const run: RolloutRun = { world, publishMs: 10_000, minReady: Infinity }
  world.observer = w => {
    if (w.nowMs >= run.publishMs) run.minReady = Math.min(run.minReady, w.counts().ready)
  }
  world.start(WARMUP_MS)
  world.at(run.publishMs, () => {
    world.publish(Math.floor(r.next() * ROLLOUT_NODES), v2)
    run.minReady = Math.min(run.minReady, world.counts().ready)
  })
  return run
}

/** (c) Roll 10 replicas from 1.0.0 to 1.1.0 with update = "live". */
export const rollout: Scenario = (seed, keepLog, extra) => {
  const run = rolloutWorld(seed, V2, keepLog, true, BASE_POLICY, extra)
  const { world } = run
  const min = BASE_POLICY.minReplicas
  let doneMs: number | undefined
  const done = (): boolean => {
    const c = world.counts()
    if (doneMs === undefined && world.nowMs > run.publishMs && (c.liveByDigest.get(V1.digest) ?? 0) === 0 && (c.readyByDigest.get(V2.digest) ?? 0) >= min) doneMs = world.nowMs
    return doneMs !== undefined
  }
  world.run(600_000, done)
  const violations: string[] = []
  if (doneMs === undefined) violations.push('rollout did not finish')
  if (run.minReady < min - 1) violations.push(`ready replicas fell to ${run.minReady} < minReplicas - 1 = ${min - 1}`)
  return finish('c', seed, world, {
    rolloutS: ((doneMs ?? Infinity) - run.publishMs) / 1000,
    minReady: run.minReady,
    nodesWithNewRelease: world.ranOn.get(V2.digest)?.size ?? 0
  }, violations)
}

/** (d) 1.1.0 crashes shortly after it turns ready: it must be halted after reaching ≤ 2 nodes. */
export const crashingRelease: Scenario = (seed, keepLog, extra) => {
  const bad: ReleaseSpec = { ...V2, crashes: true }
  // maxSurge 5 % (the seed's Cell.toml example): surge = max(1, ceil(5 % × 10)) = 1.
  const run = rolloutWorld(seed, bad, keepLog, false, { ...BASE_POLICY, maxSurge: 5 }, extra)
  const { world } = run
  const min = BASE_POLICY.minReplicas
  let doneMs: number | undefined
  const done = (): boolean => {
    if (doneMs !== undefined) return true
    if (world.nowMs <= run.publishMs || world.nodes.some(n => n.haltKnownMs === undefined)) return false
    const c = world.counts()
    if ([...world.truth.values()].some(t => t.digest === bad.digest)) return false
    if ((c.readyByDigest.get(V1.digest) ?? 0) < min) return false
    doneMs = world.nowMs
    return true
  }
  world.run(300_000, done)
  const firstHalt = Math.min(...world.nodes.map(n => n.firstHaltMs ?? Infinity))
  const allHalted = Math.max(...world.nodes.map(n => n.haltKnownMs ?? Infinity))
  const ran = world.ranOn.get(bad.digest)?.size ?? 0
  const violations: string[] = []
  if (ran > 2) violations.push(`crashing release ran on ${ran} nodes before it was halted`)
  if (doneMs === undefined) violations.push('fleet did not halt the release and return to 1.0.0')
  if (run.minReady < min - 1) violations.push(`ready replicas fell to ${run.minReady} < minReplicas - 1 = ${min - 1}`)
  return finish('d', seed, world, {
    nodesRan: ran,
    nodesSpawned: world.spawnedOn.get(bad.digest)?.size ?? 0,
    firstHaltS: (firstHalt - run.publishMs) / 1000,
    allHaltedS: (allHalted - run.publishMs) / 1000,
    minReady: run.minReady
  }, violations)
}

/**
 * (g) A live rollout on a fleet with no free slot: 10 replicas on 10 nodes with one slot each. No
 * node can surge, so old replicas are replaced in place one at a time; ready replicas must never
 * fall below minReplicas - 1 (at most one unavailable), and the rollout must finish.
 */
export const fullFleetRollout: Scenario = (seed, keepLog, extra) => {
  const nodes = 10
  const world = new World(baseOptions(seed, { nodes, slotsPerNode: 1, keepLog, ...extra }))
  seedFleet(world, nodes)
  world.setLoad(420)
  const publishMs = 10_000
  const min = BASE_POLICY.minReplicas
  let minReady = Infinity
  world.observer = w => {
    if (w.nowMs >= publishMs) minReady = Math.min(minReady, w.counts().ready)
  }
  world.start(WARMUP_MS)
  const r = new SeededRandom(seed ^ 0xf011)
  world.at(publishMs, () => world.publish(Math.floor(r.next() * nodes), V2))
  let doneMs: number | undefined
  world.run(900_000, () => {
    const c = world.counts()
    if (doneMs === undefined && world.nowMs > publishMs && (c.liveByDigest.get(V1.digest) ?? 0) === 0 && (c.readyByDigest.get(V2.digest) ?? 0) >= min) doneMs = world.nowMs
    return doneMs !== undefined
  })
  const violations: string[] = []
  if (doneMs === undefined) violations.push('rollout did not finish')
  if (minReady < min - 1) violations.push(`ready replicas fell to ${minReady} < minReplicas - 1 = ${min - 1}`)
  return finish('g', seed, world, {
    rolloutS: ((doneMs ?? Infinity) - publishMs) / 1000,
    minReady: Number.isFinite(minReady) ? minReady : min
  }, violations)
}

/**
 * A crash loop: 3 replicas wanted on 20 nodes and the release they run crashes after start. With
 * `fallback`, 1.0.0 runs and 1.1.0 is rolled out with update = "stop" (old replicas go first, so the
 * deficit itself would spread the crash); without, 1.1.0 is the only release. Either way the loop
 * must end: halted (back to 1.0.0) or crash-looping (nothing runs), known to every node, with a
 * bounded number of crashes, and no node starting the release after it knew the halt.
 */
function crashLoop (fallback: boolean): Scenario {
  return (seed, keepLog, extra) => {
    const policy: Policy = { ...BASE_POLICY, minReplicas: 3, maxReplicas: 6, update: 'stop' }
    const world = new World(baseOptions(seed, { nodes: ROLLOUT_NODES, keepLog, policy, ...extra }))
    const bad: ReleaseSpec = { ...V2, crashes: true }
    if (fallback) seedFleet(world, 3)
    world.setLoad(90)
    const publishMs = 10_000
    world.start(WARMUP_MS)
    const r = new SeededRandom(seed ^ 0xc4a5)
    world.at(publishMs, () => world.publish(Math.floor(r.next() * ROLLOUT_NODES), bad))
    let doneMs: number | undefined
    const done = (): boolean => {
      if (doneMs !== undefined) return true
      if (world.nowMs <= publishMs || world.nodes.some(n => n.haltKnownMs === undefined)) return false
      if ([...world.truth.values()].some(t => t.digest === bad.digest)) return false
      if (fallback && (world.counts().readyByDigest.get(V1.digest) ?? 0) < policy.minReplicas) return false
      doneMs = world.nowMs
      return true
    }
    world.run(300_000, done)
    // Keep going a while: nothing may start the release again.
    const crashesAtEnd = world.crashes.get(bad.digest) ?? 0
    if (doneMs !== undefined) world.run(doneMs + 60_000)
    const crashes = world.crashes.get(bad.digest) ?? 0
    const violations: string[] = []
    if (doneMs === undefined) violations.push(`the crash loop did not end (${crashes} crashes)`)
    if (crashes > crashesAtEnd) violations.push(`${crashes - crashesAtEnd} crash(es) after every node knew the halt`)
    // Each of the 3 wanted replicas may crash before the threshold (3) is seen everywhere, plus one
    // restart each at most: far from one crash per second.
    if (crashes > 2 * policy.minReplicas + 3) violations.push(`${crashes} crashes before the loop ended`)
    const allHalted = Math.max(...world.nodes.map(n => n.haltKnownMs ?? Infinity))
    return finish(fallback ? 'f' : 'e', seed, world, {
      crashes,
      nodesSpawned: world.spawnedOn.get(bad.digest)?.size ?? 0,
      allHaltedS: (allHalted - publishMs) / 1000,
      finalLive: world.counts().live
    }, violations)
  }
}

export const SCENARIOS: Record<string, { title: string, run: Scenario }> = {
  a: { title: '(a) 50 nodes reach minReplicas 10 from zero', run: scaleFromZero },
  b: { title: '(b) 5× load step, 10 → 42 replicas', run: loadStep },
  c: { title: '(c) live rollout of 10 replicas on 20 nodes, maxSurge 20 %, a 5-node partition for 10 s', run: rollout },
  d: { title: '(d) a release that crashes after start, live rollout on 20 nodes, maxSurge 5 %', run: crashingRelease },
  e: { title: '(e) a crash loop with no release to fall back to, 3 replicas wanted on 20 nodes', run: crashLoop(false) },
  f: { title: '(f) a crash loop with a fallback, update = "stop", 3 replicas on 20 nodes', run: crashLoop(true) },
  g: { title: '(g) live rollout of 10 replicas on 10 nodes with one slot each (no free slot anywhere)', run: fullFleetRollout }
}
