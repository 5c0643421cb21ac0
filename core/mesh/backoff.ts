// Exponential backoff with full jitter: a pure function of the attempt number and a random source,
// so a fleet of tabs (or nodes) that lost the same peer does not re-dial in lockstep.
import type { Random } from '../ports.ts'

export interface BackoffLimits { minMs: number, maxMs: number }

/** Delay before retry `attempt` (1-based): uniform in [minMs, min(maxMs, minMs·2^(attempt-1))]. */
export function backoffMs (attempt: number, limits: BackoffLimits, random: Random): number {
  const ceiling = Math.min(limits.maxMs, limits.minMs * 2 ** Math.min(30, Math.max(0, attempt - 1)))
  return Math.round(limits.minMs + random.next() * (ceiling - limits.minMs))
}
