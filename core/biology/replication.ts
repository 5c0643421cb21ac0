// Replication: how many replicas a cell should have, who volunteers to add one, who drains.
//
// The desired count follows the Kubernetes HPA rule ceil(current × observed / target) per metric,
// the larger of CPU and memory, clamped to [minReplicas, maxReplicas]. `current` is the number of
// ready replicas; `observed` is their average utilisation, read only from heartbeats that postdate
// the newest replica's readiness (plus metricsSettleMs): gossiped figures are of mixed age, and
// older ones still show load the new replicas have since taken over. Hysteresis: up only above
// target × (1 + scaleUpTolerance), down only below target × scaleDownFraction; in between the
// current count holds (as the HPA keeps the current replicas within its tolerance). Scale-down is further delayed by a stabilisation window: the
// highest recommendation within the window wins (as the HPA's scale-down stabilisation).

import type { Random } from '../ports.ts'
import type { Action, BiologyParams, BiologyView, InstanceRecord, NodeRecord, Policy, Recommendation } from './types.ts'

const EPSILON = 1e-9

export function isFresh (instance: InstanceRecord, nowMs: number, staleMs: number): boolean {
  return nowMs - instance.lastHeartbeatMs <= staleMs
}

/** Instances of `cell` with a fresh heartbeat that run or are about to run (not draining, not crashed). */
export function liveInstances (instances: readonly InstanceRecord[], cell: string, nowMs: number, staleMs: number): InstanceRecord[] {
  return instances.filter(i => i.cell === cell && (i.state === 'starting' || i.state === 'ready') && isFresh(i, nowMs, staleMs))
}

/** The global age order every node agrees on: start time, then id. */
export function byAge (a: InstanceRecord, b: InstanceRecord): number {
  if (a.startedMs !== b.startedMs) return a.startedMs - b.startedMs
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

export function clampReplicas (n: number, policy: Policy): number {
  return Math.min(policy.maxReplicas, Math.max(policy.minReplicas, n))
}

export interface RecommendInput {
  /** Live instances of the cell (all versions). */
  live: readonly InstanceRecord[]
  /**
   * The count the hold band keeps: the live replicas. Every node can compute it from the view, so
   * nodes agree on it (a remembered previous value differs from node to node, and nodes that
   * disagree spawn and drain against each other). Undefined during a rollout, where live replicas
   * include the surge and old replicas waiting to retire: the hold band then recommends nothing
   * and the stabilised value stands.
   */
  current?: number
  policy: Policy
  params: BiologyParams
}

export interface RecommendResult {
  /** Undefined when the view holds no usable utilisation figures (nothing to add to the window). */
  replicas?: number
  reason: string
}

export function recommendReplicas (input: RecommendInput): RecommendResult {
  const { live, policy, params } = input
  const hold = input.current
  const ready = live.filter(i => i.state === 'ready')
  let newestReadyMs = -Infinity
  for (const i of ready) newestReadyMs = Math.max(newestReadyMs, i.readyMs ?? i.startedMs)
  const settled = ready.filter(i => i.lastHeartbeatMs >= newestReadyMs + params.metricsSettleMs)
  if (settled.length === 0) {
    const why = ready.length === 0 ? 'no ready replica reports load' : 'no utilisation reported since the newest replica turned ready'
    return { reason: `${why}: no recommendation` }
  }
  // Any metric above its band scales up; otherwise any metric within its band holds; only when
  // every metric is under half its target does the count go down.
  const ups: number[] = []
  const downs: number[] = []
  let holds = false
  const notes: string[] = []
  for (const [name, target, pick] of [
    ['cpu', policy.cpuTarget, (i: InstanceRecord) => i.cpuPercent],
    ['memory', policy.memoryTarget, (i: InstanceRecord) => i.memoryPercent]
  ] as const) {
    let sum = 0
    for (const i of settled) sum += Math.max(0, pick(i))
    const avg = sum / settled.length
    const raw = Math.ceil((ready.length * avg) / target - EPSILON)
    let mode: string
    if (avg > target * (1 + params.scaleUpTolerance)) {
      ups.push(Math.max(hold ?? raw, raw))
      mode = `up → ${ups[ups.length - 1]}`
    } else if (avg < target * params.scaleDownFraction) {
      downs.push(raw)
      mode = `down → ${raw}`
    } else {
      holds = true
      mode = 'hold'
    }
    notes.push(`${name} ${avg.toFixed(1)}% over ${ready.length} ready vs target ${target}%: ${mode}`)
  }
  const replicas = ups.length > 0 ? Math.max(...ups) : holds ? hold : Math.max(...downs)
  if (replicas === undefined) return { reason: `${notes.join('; ')}; no recommendation during a rollout` }
  const clamped = clampReplicas(replicas, policy)
  return { replicas: clamped, reason: `${notes.join('; ')}; recommend ${clamped}` }
}

export interface StabiliseResult {
  replicas: number
  recommendations: Recommendation[]
}

/**
 * The highest recommendation within the window wins (undefined when the window is empty and there
 * is no new recommendation), so scale-up is immediate and scale-down waits
 * until the window holds nothing higher. The history is kept as a decreasing queue: a new
 * recommendation evicts every older one that is not higher, since those can never win again. That
 * bounds it by the number of distinct values; `maxRecommendations` caps it anyway.
 */
export function stabilise (history: readonly Recommendation[], replicas: number | undefined, nowMs: number, params: BiologyParams): StabiliseResult | undefined {
  const since = nowMs - params.stabilisationWindowMs
  const kept = history.filter(r => r.atMs > since)
  if (replicas !== undefined) {
    while (kept.length > 0 && kept[kept.length - 1].replicas <= replicas) kept.pop()
    kept.push({ atMs: nowMs, replicas })
    while (kept.length > params.maxRecommendations) kept.shift()
  }
  return kept.length === 0 ? undefined : { replicas: kept[0].replicas, recommendations: kept }
}

/** A node may host a new replica: alive, a free slot, headroom, and it trusts the release's authority. */
export function isEligible (node: NodeRecord, authority: string | undefined, params: BiologyParams): boolean {
  return node.alive &&
    node.capacity.freeSlots >= 1 &&
    node.capacity.cpuFreePercent >= params.minCpuFreePercent &&
    node.capacity.memoryFreeBytes >= params.minMemoryFreeBytes &&
    authority !== undefined &&
    node.trustsAuthorities.includes(authority)
}

export function eligibleNodes (view: BiologyView, authority: string | undefined, params: BiologyParams): NodeRecord[] {
  return view.nodes.filter(n => isEligible(n, authority, params))
}

/** Each of `eligible` nodes volunteers with this probability, so about `deficit` volunteer in all. */
export function volunteerProbability (deficit: number, eligible: number): number {
  if (deficit <= 0 || eligible <= 0) return 0
  return Math.min(1, deficit / eligible)
}

/** Uniform jitter in [0, jitterMs): spreads volunteers out so later ones see earlier ones' spawns. */
export function jitterDelayMs (random: Random, jitterMs: number): number {
  return Math.floor(random.next() * jitterMs)
}

/**
 * Surplus: the oldest `live.length - desired` instances drain. Every node computes the same list
 * from the same ordering and acts only on its own, so nodes agree without talking.
 */
export function planSurplusDrains (live: readonly InstanceRecord[], desired: number, selfId: string): Array<Extract<Action, { kind: 'drain' }>> {
  const surplus = live.length - desired
  if (surplus <= 0) return []
  return [...live].sort(byAge).slice(0, surplus)
    .filter(i => i.nodeId === selfId)
    .map(i => ({ kind: 'drain', cell: i.cell, instanceId: i.id, reason: `surplus: ${live.length} live > desired ${desired}; ${i.id} is among the ${surplus} oldest` }))
}
