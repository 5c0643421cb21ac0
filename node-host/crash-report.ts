// What the fleet says about a release's crashes, for people: `cell publish` / `cell rollback` waits
// (they end as soon as the fleet halts the release), and (issue 13) `cell status`. Read from gossiped
// records only: a crashed replica's heartbeat carries its exit reason and last stderr lines, and a
// node that halted the release (or marked it crash-looping) says so in its node record's halts.
import { CellError, type RetryRule } from '../core/errors.ts'
import { isCrashLooping } from '../core/biology/index.ts'
import type { HostGrantCheck } from '../core/mesh/index.ts'
import type { FleetView, InstanceRecord, NodeHalt, NodeRecord } from '../core/fleet/index.ts'

/** The release crash-loops with nothing to fall back to: no node starts it until another artifact is published or rolled back to. */
export class ReleaseCrashLoopingError extends CellError {
  static override readonly errorName = 'ReleaseCrashLoopingError'
  static override readonly retry: RetryRule = 'never'
}

export interface CrashReport {
  nodeId: string
  instanceId: string
  version: string
  exitReason?: string
  stderrTail?: string[]
  endedMs?: number
}

/** Crashed replicas of `cell` (of `digest` when given) the view still holds, newest first, at most `max`. */
export function crashReports (view: Pick<FleetView, 'instances'>, cell: string, digest?: string, max = 8): CrashReport[] {
  return view.instances(cell)
    .filter((i: InstanceRecord) => i.state === 'crashed' && (digest == null || i.digest === digest))
    .sort((a, b) => (b.endedMs ?? b.sentMs) - (a.endedMs ?? a.sentMs))
    .slice(0, max)
    .map(i => ({
      nodeId: i.nodeId, instanceId: i.instanceId, version: i.version,
      ...(i.exitReason !== undefined ? { exitReason: i.exitReason } : {}),
      ...(i.stderrTail !== undefined ? { stderrTail: i.stderrTail } : {}),
      ...(i.endedMs !== undefined ? { endedMs: i.endedMs } : {})
    }))
}

/**
 * The release was halted (too many crashes or failed health checks) while an earlier release was
 * there to fall back to: the fleet runs that one, and no node starts this artifact again until
 * another is published or rolled back to.
 */
export class ReleaseHaltedError extends CellError {
  static override readonly errorName = 'ReleaseHaltedError'
  static override readonly retry: RetryRule = 'never'
}

export type NodeHaltOf = NodeHalt & { nodeId: string, node: NodeRecord }

/**
 * Halts of the release that nodes in the view gossip (skipping the nodes in `skip`): crash-looping
 * marks first (they say more: nothing to fall back to). Halts are per artifact and kept, so a halted
 * artifact never becomes a target again. Unverified: see `grantedHalt`.
 */
export function haltsOf (view: Pick<FleetView, 'nodes'>, cell: string, digest: string, skip: ReadonlySet<string> = new Set()): NodeHaltOf[] {
  const out: NodeHaltOf[] = []
  for (const n of view.nodes()) {
    if (skip.has(n.nodeId)) continue
    for (const h of n.halts ?? []) if (h.cell === cell && h.digest === digest) out.push({ ...h, nodeId: n.nodeId, node: n })
  }
  return out.sort((a, b) => Number(isCrashLooping(b)) - Number(isCrashLooping(a)))
}

/**
 * The first of `haltsOf` that counts: from a node holding a host grant for `cell` from `authority`,
 * as the nodes themselves adopt a gossiped halt (a node granted only other cells, or by another
 * authority, cannot end a publish with a false halt). Nodes whose halts did not count are added to
 * `skip`, so a wait does not check them again.
 */
export async function grantedHalt (view: Pick<FleetView, 'nodes'>, hostGrant: HostGrantCheck, authority: string, cell: string, digest: string, skip: Set<string> = new Set()): Promise<NodeHaltOf | undefined> {
  for (const h of haltsOf(view, cell, digest, skip)) {
    if (skip.has(h.nodeId)) continue
    if (await hostGrant(h.node, authority, cell)) return h
    skip.add(h.nodeId)
  }
  return undefined
}

/**
 * What the fleet runs of `cell` besides the halted artifact, by version: "the fleet runs 0.1.0 (2
 * ready) instead"; a version published again as another artifact is told apart by its digest.
 */
export function runsInstead (ready: readonly Pick<InstanceRecord, 'version' | 'digest'>[], halted: { version: string, digest: string }): string {
  const counts = new Map<string, number>()
  for (const i of ready) {
    if (i.digest === halted.digest) continue
    const label = i.version === halted.version ? `${i.version} (another artifact, sha256 ${i.digest.slice(0, 12)}…; ` : `${i.version} (`
    counts.set(label, (counts.get(label) ?? 0) + 1)
  }
  if (counts.size === 0) return 'no replica of another release is ready yet'
  return `the fleet runs ${[...counts].map(([label, n]) => `${label}${n} ready)`).join(', ')} instead`
}

/**
 * One line per distinct crash reason: "crashed on …a1b2c3: exited with code 1: Error: DATABASE_URL is
 * not set". Distinct by reason and last stderr line, so a crash loop on one node reads once.
 */
export function describeCrashes (reports: readonly CrashReport[], max = 3): string[] {
  const seen = new Set<string>()
  const out: string[] = []
  for (const r of reports) {
    const last = r.stderrTail?.[r.stderrTail.length - 1]
    const what = [r.exitReason, last].filter(x => x !== undefined && x !== '').join(': ')
    if (what === '' || seen.has(what)) continue
    seen.add(what)
    out.push(`${r.version} crashed on …${r.nodeId.slice(-6)}: ${what}`)
    if (out.length >= max) break
  }
  return out
}
