// Crash accounting. Every node counts the crash and failed-health-check events of a release that it
// sees in the fleet within a window; at the threshold it halts the release. Halting is idempotent
// and gossiped (HaltRecord), so nodes that missed some of the crashes stop it too.

import type { BiologyParams, HaltRecord, HealthEvent } from './types.ts'

/** Metric incremented (by the host) for every `halt-release` action. */
export const RELEASE_HALTED_METRIC = 'cell_biology_release_halted_total'

/** Distinct failure events per digest of `cell` within the window ending at `nowMs`. */
export function failureCounts (events: readonly HealthEvent[], cell: string, nowMs: number, params: BiologyParams): Map<string, number> {
  const since = nowMs - params.haltWindowMs
  const seen = new Set<string>()
  const counts = new Map<string, number>()
  for (const e of events) {
    if (e.cell !== cell || e.atMs <= since || e.atMs > nowMs || seen.has(e.id)) continue
    seen.add(e.id)
    counts.set(e.digest, (counts.get(e.digest) ?? 0) + 1)
  }
  return counts
}

/** The view's events with the remembered evidence added (an event in both counts once anyway). */
export function withEvidence (events: readonly HealthEvent[], evidence: readonly HealthEvent[] | undefined): readonly HealthEvent[] {
  if (evidence === undefined || evidence.length === 0) return events
  const ids = new Set(events.map(e => e.id))
  const missing = evidence.filter(e => !ids.has(e.id))
  return missing.length === 0 ? events : [...events, ...missing]
}

/**
 * Evidence to remember for an unproven target: its distinct failure events among `events`, oldest
 * first, the newest `max(maxEvidence, haltThreshold)` kept (enough to reach the threshold).
 */
export function targetEvidence (events: readonly HealthEvent[], cell: string, digest: string, nowMs: number, params: BiologyParams): HealthEvent[] {
  const byId = new Map<string, HealthEvent>()
  for (const e of events) if (e.cell === cell && e.digest === digest && e.atMs <= nowMs && !byId.has(e.id)) byId.set(e.id, e)
  const sorted = [...byId.values()].sort((a, b) => a.atMs - b.atMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return sorted.slice(Math.max(0, sorted.length - Math.max(params.maxEvidence, params.haltThreshold)))
}

/** Instance ids that ever crashed or failed a health check, as far as the view remembers. */
export function failedInstanceIds (events: readonly HealthEvent[], cell: string): Set<string> {
  const ids = new Set<string>()
  for (const e of events) if (e.cell === cell) ids.add(e.instanceId)
  return ids
}

/** Most recent failure of an instance, for the restart backoff. */
export function lastFailureMs (events: readonly HealthEvent[], instanceId: string): number | undefined {
  let last: number | undefined
  for (const e of events) if (e.instanceId === instanceId && (last === undefined || e.atMs > last)) last = e.atMs
  return last
}

/** Union of halts by digest, oldest first, keeping at most `max` (the oldest are forgotten). */
export function mergeHalts (known: readonly HaltRecord[], seen: readonly HaltRecord[], cell: string, max: number): HaltRecord[] {
  const byDigest = new Map<string, HaltRecord>()
  for (const h of [...known, ...seen]) {
    if (h.cell !== cell) continue
    const prior = byDigest.get(h.digest)
    if (prior === undefined || h.atMs < prior.atMs) byDigest.set(h.digest, h)
  }
  const merged = [...byDigest.values()].sort((a, b) => a.atMs - b.atMs)
  return merged.slice(Math.max(0, merged.length - max))
}

/** Metric incremented (by the host) for a release marked crash-looping: it failed with nothing to fall back to. */
export const RELEASE_CRASH_LOOPING_METRIC = 'cell_biology_release_crash_looping_total'

/**
 * A crash-looping release is a halt whose reason starts with this: it travels in the same gossiped
 * halt records (every node, the CLI and the dashboard read it the same way), but says that the cell
 * has no earlier release and runs nowhere until a new publish or rollback names another artifact.
 */
export const CRASH_LOOPING_PREFIX = 'crash-looping: '

export function isCrashLooping (halt: { reason: string }): boolean {
  return halt.reason.startsWith(CRASH_LOOPING_PREFIX)
}

/**
 * CrashLoopBackOff: how long this node waits before it starts the release again after its
 * `failures`-th crash of it (1 → restartBackoffMs, doubling, capped at maxRestartBackoffMs).
 */
export function restartDelayMs (failures: number, params: BiologyParams): number {
  const n = Math.max(1, failures)
  // 2^(n-1) overflows to Infinity for huge n; the cap keeps the result finite.
  return Math.min(params.maxRestartBackoffMs, params.restartBackoffMs * 2 ** Math.min(n - 1, 64))
}

/** Distinct failures of `digest` on node `nodeId` within restartResetMs: the backoff exponent. */
export function ownFailures (events: readonly HealthEvent[], cell: string, digest: string, nodeId: string, nowMs: number, params: BiologyParams): number {
  const since = nowMs - params.restartResetMs
  const seen = new Set<string>()
  for (const e of events) {
    if (e.cell === cell && e.digest === digest && e.nodeId === nodeId && e.atMs > since && e.atMs <= nowMs) seen.add(e.id)
  }
  return seen.size
}
