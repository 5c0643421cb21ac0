// What the fleet says about a release's crashes, for people: `cell publish` / `cell rollback`
// timeouts, and (issue 13) `cell status`. Read from gossiped records only: a crashed replica's
// heartbeat carries its exit reason and last stderr lines, and a node that marked the release
// crash-looping says so in its node record's halts.
import { CellError, type RetryRule } from '../core/errors.ts'
import { CRASH_LOOPING_PREFIX } from '../core/biology/index.ts'
import type { FleetView, InstanceRecord, NodeHalt } from '../core/fleet/index.ts'

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

/** A node's crash-looping mark of the release, if any node in the view gossips one. */
export function crashLoopingHalt (view: Pick<FleetView, 'nodes'>, cell: string, digest: string): (NodeHalt & { nodeId: string }) | undefined {
  for (const n of view.nodes()) {
    const h = n.halts?.find(x => x.cell === cell && x.digest === digest && x.reason.startsWith(CRASH_LOOPING_PREFIX))
    if (h !== undefined) return { ...h, nodeId: n.nodeId }
  }
  return undefined
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
