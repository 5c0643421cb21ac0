// Client-side traffic split, decided per call (no proxy): canaryWeight % of calls go to the newest
// release, the rest to the others; if one group is empty, the other takes everything. The caller
// opens one channel per (node, cell, release) and names the release in HELLO, so a node running
// both releases of a rollout serves each call from the release chosen here.
// Within a group, the less loaded of two random picks ("power of two choices") wins, which avoids
// both herding onto one least-loaded replica and the long tail of a purely random choice.

import { compareReleaseVersions } from '../biology/target.ts'
import type { Random } from '../ports.ts'

export interface ReplicaCandidate {
  id: string
  version: string
  digest: string
  /** Only 'ready' candidates (or ones without a state) are chosen. */
  state?: string
  /** Calls this client has outstanding on the replica; the freshest signal, so it decides first. */
  inFlight?: number
  qps: number
  p99Ms: number
}

export interface ChooseOptions {
  /** Percent (0–100) of channels that go to the newest release. */
  canaryWeight: number
  /** Digest of the newest release; when absent, the highest version among the candidates. */
  newestDigest?: string
}

export type ReplicaGroup = 'canary' | 'stable'

export interface Choice<T extends ReplicaCandidate> {
  replica: T
  group: ReplicaGroup
}

/** Less loaded first: in-flight calls, then qps, then p99 latency. */
export function compareLoad (a: ReplicaCandidate, b: ReplicaCandidate): number {
  const f = (a.inFlight ?? 0) - (b.inFlight ?? 0)
  if (f !== 0) return f
  if (a.qps !== b.qps) return a.qps - b.qps
  return a.p99Ms - b.p99Ms
}

/** Power of two choices: two distinct random members, the less loaded one. */
export function pickLessLoaded<T extends ReplicaCandidate> (group: readonly T[], random: Random): T | undefined {
  if (group.length === 0) return undefined
  if (group.length === 1) return group[0]
  const i = Math.floor(random.next() * group.length)
  let j = Math.floor(random.next() * (group.length - 1))
  if (j >= i) j++
  return compareLoad(group[j], group[i]) < 0 ? group[j] : group[i]
}

export function newestDigestOf (candidates: readonly ReplicaCandidate[]): string | undefined {
  let best: ReplicaCandidate | undefined
  for (const c of candidates) if (best === undefined || compareReleaseVersions(c.version, best.version) > 0) best = c
  return best?.digest
}

/** The groups chooseReplica picks from: a function of the candidates alone, so a caller may keep it while they do not change. */
export interface PreparedChoice<T extends ReplicaCandidate> {
  canary: readonly T[]
  stable: readonly T[]
}

/** Splits the ready candidates into the newest release's (canary) and the others'; undefined when none is ready. */
export function prepareChoice<T extends ReplicaCandidate> (candidates: readonly T[], newestDigest?: string): PreparedChoice<T> | undefined {
  const ready = candidates.filter(c => c.state === undefined || c.state === 'ready')
  if (ready.length === 0) return undefined
  const newest = newestDigest ?? newestDigestOf(ready)
  return { canary: ready.filter(c => c.digest === newest), stable: ready.filter(c => c.digest !== newest) }
}

/** One pick from prepared groups: canaryWeight % to the canary group (when both have members), then the less loaded of two. */
export function chooseFrom<T extends ReplicaCandidate> (prepared: PreparedChoice<T>, canaryWeight: number, random: Random): Choice<T> | undefined {
  const { canary, stable } = prepared
  const weight = Math.min(100, Math.max(0, canaryWeight))
  let group: ReplicaGroup
  if (canary.length === 0) group = 'stable'
  else if (stable.length === 0) group = 'canary'
  else group = random.next() * 100 < weight ? 'canary' : 'stable'
  const replica = pickLessLoaded(group === 'canary' ? canary : stable, random)
  return replica === undefined ? undefined : { replica, group }
}

/** Returns undefined when no candidate is ready; the caller turns that into its NoReplicaError. */
export function chooseReplica<T extends ReplicaCandidate> (candidates: readonly T[], options: ChooseOptions, random: Random): Choice<T> | undefined {
  const prepared = prepareChoice(candidates, options.newestDigest)
  return prepared === undefined ? undefined : chooseFrom(prepared, options.canaryWeight, random)
}
