// Before a one-shot call (`cell call`, a script): wait for a ready replica of the cell, but answer
// at once, by name, when waiting cannot help. After the view has been pulled from a neighbour, a
// cell nobody claims is unknown (`UnknownCellError`, within a few seconds, never the call's whole
// deadline), and a known cell with no replica starting or running says what the fleet last knew of
// it (`NoReplicaError`: retired, halted, crashed, drained, not prepared anywhere).
import { NoReplicaError, UnknownCellError, type Mesh } from '../core/mesh/index.ts'
import { haltRecordsOf, retiredBy } from '../core/biology/index.ts'
import type { InstanceRecord } from '../core/fleet/index.ts'
import { waitForView } from './client.ts'
import { crashReports, describeCrashes } from './crash-report.ts'

export interface ReadyOptions {
  /** Until when to wait for a ready replica (ms since the epoch). */
  deadlineMs: number
  /**
   * After the view synced, how long a cell may stay unknown, or known without any replica starting
   * or running, before the answer is final (gossip in flight, a replica about to start). Default 2 s.
   */
  settleMs?: number
  /** The same for a cell the view does not know at all (default 1 s: the pulled snapshot is whole). */
  unknownSettleMs?: number
  signal?: AbortSignal
}

/** Nearest names by edit distance, for "did you mean" on a mistyped cell. */
export function nearestNames (name: string, names: readonly string[], max = 3): string[] {
  const limit = Math.max(1, Math.floor(name.length / 3))
  return names.map(n => ({ n, d: editDistance(name.toLowerCase(), n.toLowerCase()) }))
    .filter(x => x.d <= limit).sort((a, b) => a.d - b.d || (a.n < b.n ? -1 : 1)).slice(0, max).map(x => x.n)
}

export function editDistance (a: string, b: string): number {
  if (a.length > 256 || b.length > 256) return Math.abs(a.length - b.length) + 256
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = row
  }
  return prev[b.length]
}

/** Why no replica of a known cell runs, from the records the view holds; undefined when one is starting or running. */
export function whyNoReplica (mesh: Mesh, cell: string): string | undefined {
  const view = mesh.view
  if (view.liveInstances(cell).length > 0) return undefined
  const release = view.release(cell)
  const desired = view.desired(cell)
  const retired = view.retired(cell)
  const inForce = retiredBy(cell, retired !== undefined ? [retired] : [], release !== undefined ? [release] : [], desired)
  const target = desired !== undefined && (release === undefined || desired.seq >= release.seq) ? desired : release
  const what = target !== undefined ? `${cell}@${target.version}` : cell
  if (inForce !== undefined) return `${cell} was retired by authority ${inForce.authority.slice(0, 12)}… (seq ${inForce.seq}); a later \`cell publish\` or \`cell rollback\` brings it back`
  const parts: string[] = []
  const seen = new Set<string>()
  for (const h of haltRecordsOf(view.nodes(), cell)) {
    if (seen.has(h.digest)) continue
    seen.add(h.digest)
    parts.push(`${cell}@${h.version} is halted (node …${(h.nodeId ?? '').slice(-6)}: ${h.reason})`)
  }
  parts.push(...describeCrashes(crashReports(view, cell)))
  const ended = view.instances(cell).filter((i: InstanceRecord) => i.state !== 'crashed')
  if (ended.length > 0) {
    const byState = new Map<string, number>()
    for (const i of ended) byState.set(`${i.version} ${i.state}`, (byState.get(`${i.version} ${i.state}`) ?? 0) + 1)
    parts.push(`last replicas: ${[...byState].map(([s, n]) => `${n} ${s}`).join(', ')}`)
  }
  const nodes = view.nodes().filter(n => n.roles.includes('full'))
  if (target !== undefined) {
    const prepared = nodes.flatMap(n => (n.prepared ?? []).filter(p => p.cell === cell && p.digest === target.digest).map(p => ({ ...p, nodeId: n.nodeId })))
    const failed = prepared.filter(p => p.state === 'failed')
    if (failed.length > 0) parts.push(`not prepared on ${failed.map(p => `…${p.nodeId.slice(-6)} (${p.reason ?? 'failed'})`).slice(0, 3).join(', ')}`)
    else if (prepared.length === 0 && parts.length === 0) parts.push(`no node has prepared it`)
  }
  if (parts.length === 0) parts.push('no replica has been seen')
  return `no replica of ${what} starts or runs on the ${nodes.length} full node(s) in view: ${parts.join('; ')}`
}

/**
 * Resolves with the ready replicas of `cell`, or fails: `UnknownCellError` when the fleet knows no
 * such cell, `NoReplicaError` when it knows the cell but nothing of it starts or runs (both once the
 * view has been quiet about it for `settleMs`), `WaitTimeoutError` at the deadline otherwise.
 * Call after the view has been pulled from a neighbour.
 */
export async function awaitReplica (mesh: Mesh, cell: string, options: ReadyOptions): Promise<InstanceRecord[]> {
  const settleMs = options.settleMs ?? 2_000
  const unknownSettleMs = options.unknownSettleMs ?? 1_000
  let verdict: Error | undefined
  let since: number | undefined
  const decide = (): Error | undefined => {
    if (mesh.view.claimants(cell).length === 0 && mesh.view.instances(cell).length === 0) {
      const near = nearestNames(cell, mesh.view.cells())
      return new UnknownCellError(`the fleet knows no cell "${cell}" (${mesh.view.nodes().length} node(s) and ${mesh.view.cells().length} cell(s) in view${near.length > 0 ? `; did you mean ${near.map(n => `"${n}"`).join(' or ')}?` : ''})`)
    }
    const why = whyNoReplica(mesh, cell)
    return why !== undefined ? new NoReplicaError(why) : undefined
  }
  const replicas = await waitForView(mesh, () => {
    const ready = mesh.replicas(cell)
    if (ready.length > 0) return ready
    const now = Date.now()
    const v = decide()
    if (v === undefined || v.name !== verdict?.name) { since = v !== undefined ? now : undefined }
    verdict = v
    // An unknown cell after a full pull needs less settling than a known one whose replica may be starting.
    if (v !== undefined && since !== undefined && now - since >= (v instanceof UnknownCellError ? Math.min(settleMs, unknownSettleMs) : settleMs)) return []
    return undefined
  }, `a ready replica of ${cell}`, {
    timeoutMs: Math.max(1, options.deadlineMs - Date.now()),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    // The view may say nothing for a while: look again as the settle time passes.
    tickMs: Math.max(100, Math.floor(Math.min(settleMs, unknownSettleMs) / 4))
  })
  if (replicas.length === 0 && verdict !== undefined) throw verdict
  return replicas
}
