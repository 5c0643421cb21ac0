// One tick of the autonomic loop for one cell, as a pure function of (view, policy, self, random,
// now, remembered state). The host applies the actions; a `volunteer` action is phase one of a
// spawn: the host waits `delayMs` and then calls `confirmSpawn` with its view at that moment, so a
// node that meanwhile saw other volunteers' replicas backs off.

import type { Random } from '../ports.ts'
import { CRASH_LOOPING_PREFIX, failedInstanceIds, failureCounts, lastFailureMs, mergeHalts, ownFailures, RELEASE_CRASH_LOOPING_METRIC, RELEASE_HALTED_METRIC, restartDelayMs, targetEvidence, withEvidence } from './health.ts'
import { resolveParams, validatePolicy } from './params.ts'
import { clampReplicas, isEligible, isFresh, jitterDelayMs, liveInstances, planSurplusDrains, recommendReplicas, stabilise, volunteerProbability } from './replication.ts'
import { classifyRollout, isProven, planRollout, replicateRelease, retiringOld, surgeElsewhere, surgeStillOpen } from './rollout.ts'
import type { TargetRelease } from './target.ts'
import { mergeDesired, resolveTarget, retiredBy } from './target.ts'
import type { Action, BiologyParams, BiologyView, CellState, Decision, HaltRecord, HealthEvent, Policy } from './types.ts'

export interface DecideInput {
  cell: string
  view: BiologyView
  policy: Policy
  selfId: string
  random: Random
  nowMs: number
  /** From the previous tick's Decision, or `initialCellState(cell)`. */
  state: CellState
  params?: Partial<BiologyParams>
  /**
   * How much of the fleet this node sees: `live` full nodes in its view now, `known` full nodes it
   * saw in the last few minutes that did not say they were leaving. A node that sees less than half
   * of `known` is on the minority side of a partition (or most of the fleet died at once): it starts
   * no replicas, so that when the partition heals the cell does not run more than max_replicas.
   */
  membership?: {
    live: number
    known: number
    /**
     * Replicas of this cell last seen on full nodes that are out of sight now but were seen within
     * the same window: they may still run behind a partition, so growth above min_replicas counts
     * them against max_replicas until the window passes (refilling up to min_replicas does not).
     */
    outOfSight?: number
  }
}

export type VolunteerAction = Extract<Action, { kind: 'volunteer' }>
export type SpawnAction = Extract<Action, { kind: 'spawn' }>

export interface ConfirmInput {
  cell: string
  /** The node's view when the jitter delay has passed, not the one it volunteered on. */
  view: BiologyView
  policy: Policy
  selfId: string
  nowMs: number
  state: CellState
  volunteer: VolunteerAction
  params?: Partial<BiologyParams>
  /** As in DecideInput, taken when the delay has passed: out-of-sight replicas cap a replicate spawn too. */
  membership?: DecideInput['membership']
}

export interface ConfirmResult {
  action?: SpawnAction
  reason: string
}

export function decideCell (input: DecideInput): Decision {
  const { cell, view, policy, selfId, nowMs, state } = input
  const params = resolveParams(input.params)
  validatePolicy(policy)
  const actions: Action[] = []
  const reasons: string[] = []

  const merged = mergeDesired(cell, state.desired, view.desired)
  for (const r of merged.ignored) reasons.push(`ignored replayed desired record seq ${r.seq} (${r.version}); have seq ${merged.record?.seq}`)
  const knownHalts = new Set(state.halts.filter(h => h.cell === cell).map(h => h.digest))
  let halts = mergeHalts(state.halts, view.halts, cell, params.maxHalts)
  // A halt another node gossiped is adopted: this node stops the release too and says so, once.
  for (const h of halts) {
    if (knownHalts.has(h.digest)) continue
    const by = h.nodeId === undefined ? 'another node' : `node …${h.nodeId.slice(-8)}`
    actions.push({ kind: 'halt-release', cell, version: h.version, digest: h.digest, reason: `release ${h.version} halted by ${by}: ${h.reason}`, metric: h.reason.startsWith(CRASH_LOOPING_PREFIX) ? RELEASE_CRASH_LOOPING_METRIC : RELEASE_HALTED_METRIC })
  }

  // Retired (`cell retire`) after its newest release or desired record: every replica drains,
  // nothing starts, until a later publish or rollback (a higher seq) brings the cell back.
  const retire = retiredBy(cell, view.retired, view.releases, merged.record)
  if (retire !== undefined) {
    for (const i of view.instances) {
      if (i.cell === cell && i.nodeId === selfId && (i.state === 'starting' || i.state === 'ready')) {
        actions.push({ kind: 'drain', cell, instanceId: i.id, reason: `retired by ${retire.authority.slice(0, 16)}… (seq ${retire.seq})` })
      }
    }
    reasons.push(`retired by ${retire.authority} (seq ${retire.seq}): 0 replicas until a later publish or rollback`)
    // No remembered count: when a publish brings the cell back it starts from its policy's bounds.
    return { actions, reasons, state: { cell, desired: merged.record, recommendations: [], halts }, desiredReplicas: 0 }
  }

  // Halt the target while it keeps failing and there is an earlier release to return to. The
  // failures of a target that never proved itself (as far as this node saw) count however old they
  // are, kept in state.evidence after the view forgets them: a paused rollout can outlast the halt
  // window, and slow evidence must not let a crashing release start afresh on another node. Once it
  // proved itself, only failures within the window count (a long-running release is not halted for
  // crashes days apart).
  const events = withEvidence(view.events, state.evidence)
  const failed = failedInstanceIds(events, cell)
  const { recent, established, failuresOf } = haltEvidence(view, state, events, failed, cell, nowMs, policy, params)
  const within = (digest: string): string => established(digest) ? `within ${params.haltWindowMs} ms` : 'before any replica of it proved itself'
  let resolved = resolveTarget({ cell, releases: view.releases, desired: merged.record, halts })
  for (let k = 0; k < params.maxHalts && resolved.target !== undefined; k++) {
    const bad = resolved.target
    const failures = failuresOf(bad.digest)
    if (failures < params.haltThreshold) break
    const halt: HaltRecord = { cell, version: bad.version, digest: bad.digest, atMs: nowMs, nodeId: selfId, reason: `${failures} crashes or failed health checks ${within(bad.digest)}` }
    const next = resolveTarget({ cell, releases: view.releases, desired: merged.record, halts: [...halts, halt] })
    if (next.target === undefined) {
      // Nothing to fall back to: mark it crash-looping (a halt with its own reason and metric), so
      // no node starts it again until another artifact is published or rolled back to names another artifact.
      const reason = `${CRASH_LOOPING_PREFIX}${failures} crashes or failed health checks fleet-wide ${within(bad.digest)} and no earlier release to return to; not started again until another artifact is published or rolled back to`
      actions.push({ kind: 'halt-release', cell, version: bad.version, digest: bad.digest, reason: `release ${bad.version} ${reason}`, metric: RELEASE_CRASH_LOOPING_METRIC })
      halts = mergeHalts(halts, [{ ...halt, reason }], cell, params.maxHalts)
      resolved = next
      break
    }
    actions.push({
      kind: 'halt-release',
      cell,
      version: bad.version,
      digest: bad.digest,
      reason: `release ${bad.version} halted: ${failures} crashes or failed health checks fleet-wide ${within(bad.digest)} (threshold ${params.haltThreshold}); returning to ${next.target.version}`,
      metric: RELEASE_HALTED_METRIC
    })
    halts = mergeHalts(halts, [halt], cell, params.maxHalts)
    resolved = next
  }
  const halted = new Set(halts.map(h => h.digest))

  const mine = view.instances.filter(i => i.cell === cell && i.nodeId === selfId)
  for (const i of mine) {
    if (halted.has(i.digest) && i.state !== 'draining') {
      actions.push({ kind: 'drain', cell, instanceId: i.id, reason: `release ${i.version} is halted` })
    }
  }

  const fresh = view.instances.filter(i => i.cell === cell && !halted.has(i.digest) && isFresh(i, nowMs, params.heartbeatStaleMs))
  const live = liveInstances(fresh, cell, nowMs, params.heartbeatStaleMs)
  const target = resolved.target
  const classes = target === undefined ? undefined : classifyRollout(fresh, target, failed, nowMs, policy.healthGraceMs)
  const rollingOut = classes !== undefined && classes.old.length > 0
  const rec = recommendReplicas({ live, current: rollingOut ? undefined : live.length, policy, params })
  const stable = stabilise(state.recommendations, rec.replicas, nowMs, params)
  // Without a recommendation in the window, the last desired count stands; a node that never had
  // one keeps what runs (within the bounds), not counting a rollout's unproven surge.
  const surging = rollingOut ? classes.unproven.filter(i => i.state === 'starting' || i.state === 'ready').length : 0
  const desiredReplicas = stable?.replicas ?? state.desiredReplicas ?? clampReplicas(live.length - surging, policy)
  reasons.push(rec.reason)
  if (rec.replicas === undefined || desiredReplicas > rec.replicas) reasons.push(`stabilisation window holds ${desiredReplicas}`)
  const proven = target !== undefined && classes !== undefined && (state.proven === target.digest || classes.proven.length > 0) ? target.digest : undefined
  const evidence = target === undefined || proven !== undefined ? [] : targetEvidence(events, cell, target.digest, nowMs, params)
  let next: CellState = { cell, desired: merged.record, recommendations: stable?.recommendations ?? [], desiredReplicas, halts, ...(proven !== undefined ? { proven } : {}), ...(evidence.length > 0 ? { evidence } : {}) }
  const decision = (): Decision => ({ actions, reasons, state: next, desiredReplicas, target: resolved.target === undefined ? undefined : refOf(resolved.target) })

  reasons.push(resolved.reason)
  if (target === undefined || classes === undefined) return decision()

  // This node's own crashed replicas: restart the target in place (its surge slot stays taken, so
  // a crashing release does not spread to other nodes while it crash-loops), clear anything else.
  for (const i of mine) {
    if (i.state !== 'crashed' || halted.has(i.digest)) continue
    if (i.digest !== target.digest) {
      actions.push({ kind: 'drain', cell, instanceId: i.id, reason: `crashed replica of ${i.version}, not the target ${target.version}` })
      continue
    }
    const since = nowMs - (lastFailureMs(events, i.id) ?? i.lastHeartbeatMs)
    const failures = ownFailures(events, cell, i.digest, selfId, nowMs, params)
    const delayMs = restartDelayMs(failures, params)
    if (since >= delayMs) {
      actions.push({ kind: 'restart', cell, instanceId: i.id, version: i.version, digest: i.digest, reason: `replica ${i.id} of ${i.version} crashed ${since} ms ago (crash ${failures} here; back-off ${delayMs} ms)` })
    } else {
      reasons.push(`replica ${i.id} crashed ${since} ms ago (crash ${failures} here); restart after ${delayMs} ms`)
    }
  }

  const selfNode = view.nodes.find(n => n.id === selfId)
  const selfEligible = selfNode !== undefined && isEligible(selfNode, target.authority, params)
  // The rollout pauses while the target failed within the halt window; a node that failed it may
  // start it again meanwhile (after its back-off), so the evidence grows without new nodes.
  const suspect = (recent.get(target.digest) ?? 0) > 0
  const retryHere = suspect && mayRetryHere(events, mine, target.digest, cell, selfId, nowMs, params)

  if (classes.old.length > 0) {
    const replacing = state.replacing === undefined || classes.newer.some(i => i.nodeId === selfId) ? undefined : { id: state.replacing, present: fresh.some(i => i.id === state.replacing) }
    const plan = planRollout({ classes, target, desired: desiredReplicas, policy, selfId, selfEligible, suspect, retryHere, nodes: view.nodes, replacing, random: input.random, params })
    actions.push(...plan.actions)
    reasons.push(...plan.reasons)
    if (plan.replacing !== undefined) next = { ...next, replacing: plan.replacing }
    if (policy.update === 'stop' || plan.actions.some(a => a.kind === 'volunteer')) return decision()
  } else {
    actions.push(...planSurplusDrains(live, desiredReplicas, selfId))
  }

  // A crashed replica of the target waits for its node to restart it in place (after its back-off):
  // it keeps its slot, so a crash loop stays on the node that has it instead of spreading.
  const awaitingRestart = fresh.filter(i => i.state === 'crashed' && i.digest === target.digest).length
  // Replicas last seen on nodes now out of sight may still run behind a partition: counting them,
  // the cell grows no further than max_replicas; refilling up to min_replicas never waits.
  const hidden = input.membership?.outOfSight ?? 0
  const reachable = reachableReplicas(desiredReplicas, hidden, policy)
  const deficit = reachable - live.length - awaitingRestart
  if (awaitingRestart > 0 && desiredReplicas > live.length) reasons.push(`${awaitingRestart} crashed replica(s) of ${target.version} wait for a restart in place`)
  if (reachable < desiredReplicas && desiredReplicas > live.length + awaitingRestart) {
    reasons.push(`${hidden} replica(s) were last seen on nodes now out of sight and may still run; with them the cell is at max_replicas ${policy.maxReplicas}, so it aims for ${reachable}, not ${desiredReplicas}, for now`)
  }
  if (deficit > 0) {
    const release = replicateRelease(classes, target)
    const authority = authorityOf(view, release.digest) ?? target.authority
    const spread = spreadCandidates(view, live, authority, params)
    const eligible = spread.candidates.length
    const p = volunteerProbability(deficit, eligible)
    const m = input.membership
    if (m !== undefined && m.live * 2 < m.known) {
      reasons.push(`deficit ${deficit}: this node sees ${m.live} of the ${m.known} full nodes it saw lately (a minority side): it starts no replica until it sees more of the fleet`)
    } else if (selfNode === undefined || !isEligible(selfNode, authority, params)) {
      reasons.push(`deficit ${deficit}: this node is not eligible (capacity or trust of ${authority ?? 'unknown authority'})`)
    } else if (!spread.candidates.includes(selfNode)) {
      reasons.push(`deficit ${deficit}: this node already runs a replica; ${eligible} eligible node(s) without one volunteer first`)
    } else if (input.random.next() < p) {
      const delayMs = jitterDelayMs(input.random, params.volunteerJitterMs)
      actions.push({ kind: 'volunteer', cell, version: release.version, digest: release.digest, purpose: 'replicate', delayMs, reason: `deficit ${deficit} (${live.length} live${awaitingRestart > 0 ? ` + ${awaitingRestart} awaiting restart` : ''} < desired ${desiredReplicas}); volunteered for ${release.version} with p=${p.toFixed(3)} among ${eligible} eligible` })
    } else {
      reasons.push(`deficit ${deficit}: did not volunteer (p=${p.toFixed(3)} among ${eligible} eligible)`)
    }
  }
  return decision()
}

/**
 * How many replicas to aim for while `hidden` replicas are out of sight (they may still run behind a
 * partition): never above max_replicas counting them, never below min_replicas (a dead node and a
 * partition look alike, and a dead node's replicas are replaced at once).
 */
export function reachableReplicas (desired: number, hidden: number, policy: Pick<Policy, 'minReplicas' | 'maxReplicas'>): number {
  if (hidden <= 0) return desired
  return Math.min(desired, Math.max(policy.minReplicas, policy.maxReplicas - hidden))
}

/**
 * Phase one of a spawn on its own: the `volunteer` action of this tick, if any (its `delayMs` is
 * the jitter to wait before `confirmSpawn`). Same input and the same random draws as decideCell.
 */
export function planVolunteer (input: DecideInput): VolunteerAction | undefined {
  return decideCell(input).actions.find((a): a is VolunteerAction => a.kind === 'volunteer')
}

/** Phase two of a spawn: re-check the (newer) view; spawn only if the reason to still holds. */
export function confirmSpawn (input: ConfirmInput): ConfirmResult {
  const { cell, view, policy, selfId, nowMs, state, volunteer } = input
  const params = resolveParams(input.params)
  const cancel = (why: string): ConfirmResult => ({ reason: `volunteer for ${volunteer.version} withdrawn: ${why}` })

  const merged = mergeDesired(cell, state.desired, view.desired)
  const retire = retiredBy(cell, view.retired, view.releases, merged.record)
  if (retire !== undefined) return cancel(`the cell was retired (seq ${retire.seq})`)
  const halts = mergeHalts(state.halts, view.halts, cell, params.maxHalts)
  if (halts.some(h => h.digest === volunteer.digest)) return cancel('the release is halted')
  const target = resolveTarget({ cell, releases: view.releases, desired: merged.record, halts }).target
  if (target === undefined) return cancel('no target release')
  const events = withEvidence(view.events, state.evidence)
  const failed = failedInstanceIds(events, cell)
  const { recent, failuresOf } = haltEvidence(view, state, events, failed, cell, nowMs, policy, params)
  if (failuresOf(volunteer.digest) >= params.haltThreshold) return cancel('the release reached the halt threshold')

  const halted = new Set(halts.map(h => h.digest))
  const fresh = view.instances.filter(i => i.cell === cell && !halted.has(i.digest) && isFresh(i, nowMs, params.heartbeatStaleMs))
  const live = liveInstances(fresh, cell, nowMs, params.heartbeatStaleMs)
  const desired = state.desiredReplicas ?? clampReplicas(live.length, policy)
  const awaitingRestart = fresh.filter(i => i.state === 'crashed' && i.digest === target.digest).length
  const classes = classifyRollout(fresh, target, failed, nowMs, policy.healthGraceMs)
  const release = volunteer.purpose === 'surge' ? target : replicateRelease(classes, target)
  if (release.digest !== volunteer.digest) return cancel(`the release to run changed to ${release.version}`)
  const selfNode = view.nodes.find(n => n.id === selfId)
  const authority = authorityOf(view, release.digest) ?? target.authority
  if (selfNode === undefined || !isEligible(selfNode, authority, params)) return cancel('this node is no longer eligible')
  if (volunteer.purpose !== 'surge' && !spreadCandidates(view, live, authority, params).candidates.includes(selfNode)) {
    return cancel('this node already runs a replica and an eligible node without one is available')
  }

  if (volunteer.purpose === 'surge') {
    const suspect = (recent.get(target.digest) ?? 0) > 0
    const mine = fresh.filter(i => i.nodeId === selfId)
    const retryHere = suspect && mayRetryHere(events, mine, target.digest, cell, selfId, nowMs, params)
    const holdsOld = classes.old.some(i => i.nodeId === selfId)
    const elsewhere = !holdsOld && surgeElsewhere(classes, retiringOld(classes, desired), view.nodes, target, selfId, params)?.open === true
    const closed = surgeStillOpen(classes, desired, policy, selfId, suspect, { retryHere, elsewhere, replacing: state.replacing !== undefined })
    if (closed !== undefined) return cancel(closed)
  } else {
    if (policy.update === 'stop' && classes.old.length > 0) return cancel('update=stop and old replicas still run')
    if (live.length + awaitingRestart >= desired) return cancel(`deficit filled (${live.length} live${awaitingRestart > 0 ? ` + ${awaitingRestart} awaiting restart` : ''}, desired ${desired})`)
    const m = input.membership
    if (m !== undefined && m.live * 2 < m.known) return cancel(`this node sees ${m.live} of the ${m.known} full nodes it saw lately (a minority side)`)
    const hidden = m?.outOfSight ?? 0
    const reachable = reachableReplicas(desired, hidden, policy)
    if (live.length + awaitingRestart >= reachable) return cancel(`deficit filled as far as ${hidden} replica(s) out of sight allow (${live.length} live${awaitingRestart > 0 ? ` + ${awaitingRestart} awaiting restart` : ''}, max_replicas ${policy.maxReplicas})`)
  }
  return {
    action: { kind: 'spawn', cell, version: release.version, digest: release.digest, purpose: volunteer.purpose, reason: `${volunteer.reason}; confirmed after ${volunteer.delayMs} ms` },
    reason: 'confirmed'
  }
}

/**
 * Replicas spread: while some eligible node runs no live replica of the cell, only such nodes
 * volunteer to fill a deficit (a node that already has one would put two eggs in one basket); when
 * every eligible node has one, all of them may.
 */
function spreadCandidates (view: BiologyView, live: readonly { nodeId: string }[], authority: string | undefined, params: BiologyParams): { candidates: BiologyView['nodes'][number][] } {
  const eligible = view.nodes.filter(n => isEligible(n, authority, params))
  const hosting = new Set(live.map(i => i.nodeId))
  const without = eligible.filter(n => !hosting.has(n.id))
  return { candidates: without.length > 0 ? without : eligible }
}

/**
 * Failures of a release that count toward its halt: all of them (the view's and the remembered
 * evidence) until this node saw a replica of it proven, then only those within haltWindowMs.
 */
function haltEvidence (view: BiologyView, state: CellState, events: readonly HealthEvent[], failed: ReadonlySet<string>, cell: string, nowMs: number, policy: Policy, params: BiologyParams): {
  recent: Map<string, number>
  established: (digest: string) => boolean
  failuresOf: (digest: string) => number
} {
  const recent = failureCounts(events, cell, nowMs, params)
  const ever = failureCounts(events, cell, nowMs, { ...params, haltWindowMs: Infinity })
  const established = (digest: string): boolean => state.proven === digest || view.instances.some(i =>
    i.cell === cell && i.digest === digest && isFresh(i, nowMs, params.heartbeatStaleMs) && isProven(i, failed, nowMs, policy.healthGraceMs))
  return { recent, established, failuresOf: (digest) => (established(digest) ? recent : ever).get(digest) ?? 0 }
}

/**
 * This node failed the target itself, holds no replica of it now (a crashed one is restarted in
 * place instead), and its restart back-off since its last failure of it has passed.
 */
function mayRetryHere (events: readonly HealthEvent[], mine: readonly { digest: string, state: string }[], digest: string, cell: string, selfId: string, nowMs: number, params: BiologyParams): boolean {
  if (mine.some(i => i.digest === digest && i.state !== 'draining')) return false
  let last: number | undefined
  for (const e of events) if (e.cell === cell && e.digest === digest && e.nodeId === selfId && (last === undefined || e.atMs > last)) last = e.atMs
  if (last === undefined) return false
  return nowMs - last >= restartDelayMs(ownFailures(events, cell, digest, selfId, nowMs, params), params)
}

function authorityOf (view: BiologyView, digest: string): string | undefined {
  return view.releases.find(r => r.digest === digest)?.authority
}

function refOf (t: TargetRelease): { cell: string, version: string, digest: string } {
  return { cell: t.cell, version: t.version, digest: t.digest }
}


