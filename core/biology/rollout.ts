// Rolling update by gradual displacement. With update = "live", every node that holds replicas of
// an older release flips a coin (p = maxSurge/100) each tick to start one replica of the target,
// as long as fewer than `surge` target replicas are still unproven. A target replica is proven once
// it has been ready for healthGraceMs without a crash or failed health check; each proven one lets
// one old replica retire (preferably on the node that proved it). With update = "stop" the old
// replicas stop first and replication then starts the target.

import type { Random } from '../ports.ts'
import { byAge, isEligible, jitterDelayMs } from './replication.ts'
import { compareReleaseVersions } from './target.ts'
import type { TargetRelease } from './target.ts'
import type { Action, BiologyParams, InstanceRecord, NodeRecord, Policy } from './types.ts'

const EPSILON = 1e-9

/** How many target replicas may be unproven at once: max(1, ceil(maxSurge% × desired)). */
export function surgeCount (maxSurge: number, desired: number): number {
  return Math.max(1, Math.ceil((maxSurge / 100) * desired - EPSILON))
}

export interface RolloutClasses {
  /** Live replicas of any other release, oldest first. */
  old: InstanceRecord[]
  /** Live replicas of the target. */
  newer: InstanceRecord[]
  /** Target replicas ready for at least healthGraceMs that never failed. */
  proven: InstanceRecord[]
  /** Target replicas still starting, within their grace, or crashed (they hold a surge slot), oldest first. */
  unproven: InstanceRecord[]
}

/**
 * @param fresh instances of the cell with a fresh heartbeat, in any state, halted releases excluded
 * @param failed instance ids with a crash or failed health check on record
 */
export function classifyRollout (fresh: readonly InstanceRecord[], target: TargetRelease, failed: ReadonlySet<string>, nowMs: number, healthGraceMs: number): RolloutClasses {
  const old: InstanceRecord[] = []
  const newer: InstanceRecord[] = []
  const proven: InstanceRecord[] = []
  const unproven: InstanceRecord[] = []
  for (const i of fresh) {
    const live = i.state === 'starting' || i.state === 'ready'
    if (i.digest !== target.digest) {
      if (live) old.push(i)
      continue
    }
    if (live) newer.push(i)
    if (i.state === 'draining') continue
    if (isProven(i, failed, nowMs, healthGraceMs)) proven.push(i)
    else unproven.push(i)
  }
  old.sort(byAge)
  unproven.sort(byAge)
  return { old, newer, proven, unproven }
}

/** Ready for at least healthGraceMs and never failed (as far as `failed` knows). */
export function isProven (i: InstanceRecord, failed: ReadonlySet<string>, nowMs: number, healthGraceMs: number): boolean {
  return i.state === 'ready' && nowMs - (i.readyMs ?? i.startedMs) >= healthGraceMs && !failed.has(i.id)
}

export interface RolloutInput {
  classes: RolloutClasses
  target: TargetRelease
  desired: number
  policy: Policy
  selfId: string
  /** Whether this node could host another replica of the target right now. */
  selfEligible: boolean
  /** The target had a crash or failed health check within the halt window: start no more of it... */
  suspect: boolean
  /**
   * ...except here: this node failed the target itself and its restart back-off has passed, so it
   * may start it again (the release reaches no new node, and the evidence grows until it proves
   * itself or is halted).
   */
  retryHere?: boolean
  /** The view's nodes, to find where a surge can go when no node holding an old replica can host one. */
  nodes?: readonly NodeRecord[]
  /**
   * An old replica this node retired to replace it in place (CellState.replacing), while the node
   * holds no replica of the target yet; `present`: the view still shows it (draining).
   */
  replacing?: { id: string, present: boolean }
  random: Random
  params: BiologyParams
}

export interface RolloutPlan {
  actions: Action[]
  reasons: string[]
  /** The old replica this node is replacing in place, to remember into the next tick. */
  replacing?: string
}

export function planRollout (input: RolloutInput): RolloutPlan {
  return input.policy.update === 'stop' ? planStop(input) : planLive(input)
}

function planStop (input: RolloutInput): RolloutPlan {
  const { classes, target, selfId } = input
  const actions: Action[] = classes.old.filter(i => i.nodeId === selfId).map(i => ({
    kind: 'drain', cell: i.cell, instanceId: i.id, reason: `update=stop: stopping ${i.version} before starting ${target.version}`
  }))
  return { actions, reasons: [`update=stop: ${classes.old.length} old replica(s) still live; ${target.version} starts once they are gone`] }
}

function planLive (input: RolloutInput): RolloutPlan {
  const { classes, target, desired, policy, selfId, params } = input
  const actions: Action[] = []
  const reasons: string[] = []
  const surge = surgeCount(policy.maxSurge, desired)

  // Stale views can let two nodes fill the same surge slot. Every node orders the unproven target
  // replicas the same way; the newest ones past the surge that have not started running yet back
  // off - but only as many as the fleet has beyond the desired count, so a replica that fills a
  // deficit is never taken away.
  const live = classes.old.length + classes.newer.length
  const excess = Math.min(classes.unproven.length - surge, live - desired)
  if (excess > 0) {
    for (const i of classes.unproven.slice(classes.unproven.length - excess)) {
      if (i.nodeId === selfId && i.state === 'starting') {
        actions.push({ kind: 'drain', cell: i.cell, instanceId: i.id, reason: `surge exceeded: ${classes.unproven.length} unproven ${target.version} replicas > surge ${surge}` })
      }
    }
  }

  // Keep enough old replicas that old + proven new >= desired; retire the rest, preferring old
  // replicas on nodes that proved a new one (the node that surged gives its old one back).
  const retiring = retiringOld(classes, desired)
  for (const i of classes.old) {
    if (retiring.has(i.id) && i.nodeId === selfId) {
      actions.push({ kind: 'drain', cell: i.cell, instanceId: i.id, reason: `rollout: ${classes.proven.length} ${target.version} replica(s) proven for ${policy.healthGraceMs} ms; retiring ${i.version} ${i.id}` })
    }
  }

  // No node in sight can host a surge replica (every slot is full): old replicas are replaced in
  // place, one at a time fleet-wide. The node that retired one starts the target in its slot.
  const pending = input.replacing
  if (pending !== undefined) {
    const room = !input.suspect && classes.unproven.length < surge && classes.newer.length < desired
    if (room && input.selfEligible) {
      const delayMs = jitterDelayMs(input.random, params.volunteerJitterMs)
      actions.push({ kind: 'volunteer', cell: target.cell, version: target.version, digest: target.digest, purpose: 'surge', delayMs, reason: `rollout to ${target.version}: starting it in place of ${pending.id}, retired to make room (no node could host a surge replica)` })
      return { actions, reasons, replacing: pending.id }
    }
    if (room && pending.present) {
      reasons.push(`rollout to ${target.version}: waiting for ${pending.id} to end to start the target in its slot`)
      return { actions, reasons, replacing: pending.id }
    }
  } else {
    const victim = replaceInPlace(classes, retiring, input.nodes ?? [], target, desired, input.suspect, params)
    if (victim !== undefined) {
      if (victim.nodeId === selfId) {
        actions.push({ kind: 'drain', cell: victim.cell, instanceId: victim.id, reason: `rollout: no node can host a surge replica of ${target.version}; replacing ${victim.version} ${victim.id} in place` })
        return { actions, reasons, replacing: victim.id }
      }
      reasons.push(`rollout to ${target.version}: no node can host a surge replica; node ${victim.nodeId} replaces ${victim.id} in place`)
      return { actions, reasons }
    }
  }

  const ownOld = classes.old.filter(i => i.nodeId === selfId && !retiring.has(i.id)).length
  const elsewhere = ownOld === 0 ? surgeElsewhere(classes, retiring, input.nodes ?? [], target, selfId, params) : undefined
  const retry = input.suspect && input.retryHere === true && ownOld > 0 && !classes.unproven.some(i => i.nodeId === selfId)
  if (ownOld === 0 && elsewhere?.open !== true) {
    reasons.push(`rollout to ${target.version}: no old replica here${elsewhere === undefined ? '' : `; ${elsewhere.why}`}`)
  } else if (input.suspect && !retry) {
    reasons.push(`rollout to ${target.version} paused: it failed within the last ${params.haltWindowMs} ms`)
  } else if (classes.unproven.length >= surge) {
    reasons.push(`rollout to ${target.version}: surge full (${classes.unproven.length}/${surge} unproven)`)
  } else if (classes.newer.length >= desired) {
    reasons.push(`rollout to ${target.version}: ${classes.newer.length} new replicas already cover desired ${desired}`)
  } else if (!input.selfEligible) {
    reasons.push(`rollout to ${target.version}: this node cannot host another replica`)
  } else if (retry) {
    // No coin: this node already ran the release, so starting it again spreads it nowhere new.
    const delayMs = jitterDelayMs(input.random, params.volunteerJitterMs)
    actions.push({ kind: 'volunteer', cell: target.cell, version: target.version, digest: target.digest, purpose: 'surge', delayMs, reason: `rollout to ${target.version}: it failed here; retrying it here after the back-off, ${classes.unproven.length}/${surge} unproven` })
  } else {
    // A node holding an old replica flips p = maxSurge/100. When none of them can host another
    // replica (all full), the nodes that can take over, p = free surge slots / such nodes, so about
    // that many start one; a proven one then retires an old replica wherever it runs.
    const p = elsewhere === undefined ? policy.maxSurge / 100 : Math.min(1, (surge - classes.unproven.length) / elsewhere.candidates)
    if (input.random.next() < p) {
      const delayMs = jitterDelayMs(input.random, params.volunteerJitterMs)
      const where = elsewhere === undefined ? '' : `; no node holding an old replica can host one, so ${elsewhere.candidates} other node(s) may`
      actions.push({ kind: 'volunteer', cell: target.cell, version: target.version, digest: target.digest, purpose: 'surge', delayMs, reason: `rollout to ${target.version}: won the surge coin (p=${Number(p.toFixed(3))}), ${classes.unproven.length}/${surge} unproven${where}` })
    } else {
      reasons.push(`rollout to ${target.version}: lost the surge coin`)
    }
  }
  return { actions, reasons }
}

/**
 * The old replicas that retire now: all but `desired - proven`. Those still starting go first (they
 * serve nothing yet: retiring a ready one instead lowers the ready count, as when a stale view had a
 * node fill a deficit that was not there just before a rollout), then those on nodes that proved a
 * new one, then the oldest. Every node computes the same set from the same view.
 */
export function retiringOld (classes: RolloutClasses, desired: number): Set<string> {
  const oldKeep = Math.max(0, desired - classes.proven.length)
  const retire = classes.old.length - oldKeep
  const retiring = new Set<string>()
  if (retire <= 0) return retiring
  const provers = new Set(classes.proven.map(i => i.nodeId))
  const rank = (i: InstanceRecord): number => (i.state === 'starting' ? 0 : 2) + (provers.has(i.nodeId) ? 0 : 1)
  const order = [...classes.old].sort((a, b) => rank(a) - rank(b) || byAge(a, b))
  for (const i of order.slice(0, retire)) retiring.add(i.id)
  return retiring
}

/**
 * Replace in place: when no node in sight can host a surge replica at all (every slot is full), the
 * oldest old replica is retired so that its node can start the target in the slot - only while
 * nothing of the target is unproven, nothing retires and every desired replica is ready, so at most
 * one replica is unavailable at a time (maxUnavailable 1). Every node picks the same one.
 */
export function replaceInPlace (classes: RolloutClasses, retiring: ReadonlySet<string>, nodes: readonly NodeRecord[], target: TargetRelease, desired: number, suspect: boolean, params: BiologyParams): InstanceRecord | undefined {
  if (suspect || classes.unproven.length > 0 || retiring.size > 0 || classes.newer.length >= desired) return undefined
  const ready = classes.old.filter(i => i.state === 'ready').length + classes.newer.filter(i => i.state === 'ready').length
  if (ready < desired || nodes.some(n => isEligible(n, target.authority, params))) return undefined
  const alive = new Set(nodes.filter(n => n.alive && target.authority !== undefined && n.trustsAuthorities.includes(target.authority)).map(n => n.id))
  return classes.old.find(i => i.state === 'ready' && alive.has(i.nodeId))
}

export interface SurgeElsewhere {
  /** Whether this node may surge although it holds no old replica. */
  open: boolean
  /** Nodes that may (eligible; those without a live replica of the cell first). */
  candidates: number
  why: string
}

/**
 * Surge by a node without an old replica. Only nodes holding old replicas surge (each gives one
 * back once its new replica proves itself); when none of them can host another replica (all their
 * slots are full, or they are out of headroom), the rollout would stall, so the eligible nodes
 * take over - those that run no replica of the cell first, as replication spreads. Undefined while
 * some node holding an old replica could still surge.
 */
export function surgeElsewhere (classes: RolloutClasses, retiring: ReadonlySet<string>, nodes: readonly NodeRecord[], target: TargetRelease, selfId: string, params: BiologyParams): SurgeElsewhere | undefined {
  const byId = new Map(nodes.map(n => [n.id, n]))
  const holders = new Set(classes.old.filter(i => !retiring.has(i.id)).map(i => i.nodeId))
  if (holders.size === 0) return undefined
  for (const id of holders) {
    const n = byId.get(id)
    if (n !== undefined && isEligible(n, target.authority, params)) return undefined
  }
  const eligible = nodes.filter(n => isEligible(n, target.authority, params))
  const hosting = new Set([...classes.old, ...classes.newer].map(i => i.nodeId))
  const without = eligible.filter(n => !hosting.has(n.id))
  const candidates = without.length > 0 ? without : eligible
  if (candidates.length === 0) return { open: false, candidates: 0, why: `no node holding an old replica can host one, and no other node can either` }
  const open = candidates.some(n => n.id === selfId)
  return { open, candidates: candidates.length, why: open ? 'surging for the full nodes holding old replicas' : `${candidates.length} other node(s) surge for the full nodes holding old replicas` }
}

/**
 * Which release fills a deficit during a live rollout: the target once one of its replicas proved
 * itself, otherwise the newest release that is running now. Until it is proven, the target spreads
 * only through the surge, so a bad release cannot ride on a deficit (e.g. a partition) to many nodes.
 */
export function replicateRelease (classes: RolloutClasses, target: TargetRelease): { version: string, digest: string } {
  if (classes.old.length === 0 || classes.proven.length > 0) return target
  let best = classes.old[0]
  for (const i of classes.old) if (compareReleaseVersions(i.version, best.version) > 0) best = i
  return { version: best.version, digest: best.digest }
}

export interface SurgeCheck {
  /** As RolloutInput.retryHere: this node failed the target and may start it again. */
  retryHere?: boolean
  /** From surgeElsewhere: this node surges for the full nodes holding old replicas. */
  elsewhere?: boolean
  /** This node retired an old replica to start the target in its place. */
  replacing?: boolean
}

/** Phase two of a surge spawn: is there still room? */
export function surgeStillOpen (classes: RolloutClasses, desired: number, policy: Policy, selfId: string, suspect: boolean, check: SurgeCheck = {}): string | undefined {
  const surge = surgeCount(policy.maxSurge, desired)
  const holdsOld = classes.old.some(i => i.nodeId === selfId)
  if (suspect && !(check.retryHere === true && holdsOld)) return 'target failed recently'
  if (classes.unproven.length >= surge) return `surge full (${classes.unproven.length}/${surge} unproven)`
  if (classes.newer.length >= desired) return 'new replicas already cover desired'
  if (!holdsOld && check.elsewhere !== true && check.replacing !== true) return 'no old replica here any more'
  return undefined
}
