// Which nodes prepared a release (fetched, verified and unpacked its artifact) and which did not,
// and why: read from the `prepared` list every full node gossips in its node record. `cell publish`
// and `cell rollback` print it, so a release that reached one node of three says so by name.
import { CellError, type RetryRule } from '../core/errors.ts'
import type { Mesh } from '../core/mesh/index.ts'
import type { FleetView, PreparedState } from '../core/fleet/index.ts'
import { trustRoles } from './autonomic-loop.ts'

export interface NodePrepareStatus {
  nodeId: string
  /**
   * `unreported`: the node's record does not mention the release (yet); `untrusted`: the node does
   * not say it trusts the release's authority (its trust-… role tags), so it will not prepare it.
   */
  state: PreparedState | 'unreported' | 'untrusted'
  reason?: string
}

/**
 * The release was gossiped, but the replicas waited for did not get ready in time. The message
 * carries the per-node report; `nodes` has it as data; the cause is the wait's timeout.
 */
export class ReleaseNotReadyError extends CellError {
  static override readonly errorName = 'ReleaseNotReadyError'
  static override readonly retry: RetryRule = 'never'
  readonly nodes: NodePrepareStatus[]

  constructor (message: string, nodes: NodePrepareStatus[], options?: { cause?: unknown }) {
    super(message, options)
    this.nodes = nodes
  }
}

/** Per full node of the view, sorted by node id: what it says about `digest` of `cell`. */
export function prepareReport (view: Pick<FleetView, 'nodes'>, cell: string, digest: string, authority?: string): NodePrepareStatus[] {
  const trustRole = authority !== undefined ? trustRoles([authority])[0] : undefined
  return view.nodes().filter(n => n.roles.includes('full')).map((n): NodePrepareStatus => {
    const entry = n.prepared?.find(p => p.cell === cell && p.digest === digest)
    // Role tags are the node's own claim: good enough to explain a report, never used to decide.
    const trusts = trustRole === undefined || n.roles.includes(trustRole) || !n.roles.some(r => r.startsWith('trust-'))
    if (entry === undefined) return { nodeId: n.nodeId, state: trusts ? 'unreported' : 'untrusted' }
    return { nodeId: n.nodeId, state: entry.state, ...(entry.reason !== undefined ? { reason: entry.reason } : {}) }
  }).sort((a, b) => a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0)
}

/** Settled: every node reports prepared or failed, or does not trust the authority (and one node at least). */
export function reportSettled (report: NodePrepareStatus[]): boolean {
  return report.length > 0 && report.every(s => s.state === 'prepared' || s.state === 'failed' || s.state === 'untrusted')
}

/**
 * Waits until every full node in the view has prepared or failed `digest`, re-checking on each view
 * change, for at most `timeoutMs`; resolves with the report as it stands then (never rejects on time).
 */
export async function waitForPrepareReport (mesh: Mesh, cell: string, digest: string, options: { timeoutMs: number, authority?: string, signal?: AbortSignal }): Promise<NodePrepareStatus[]> {
  options.signal?.throwIfAborted()
  const current = (): NodePrepareStatus[] => prepareReport(mesh.view, cell, digest, options.authority)
  if (reportSettled(current()) || options.timeoutMs <= 0) return current()
  await new Promise<void>((resolve) => {
    const check = (): void => { if (reportSettled(current())) done() }
    const done = (): void => {
      clearTimeout(timer)
      mesh.view.removeEventListener('change', check)
      options.signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, options.timeoutMs)
    mesh.view.addEventListener('change', check)
    options.signal?.addEventListener('abort', done)
  })
  options.signal?.throwIfAborted()
  return current()
}

const UNREPORTED = 'has not reported it: it may not have heard of the release yet (it pulls the fleet on its next anti-entropy round) or does not host this authority\'s cells'

/** Human-readable lines, one per node, after a summary line. */
export function formatPrepareReport (report: NodePrepareStatus[]): string {
  const prepared = report.filter(s => s.state === 'prepared').length
  const lines = [`prepared on ${prepared} of ${report.length} node${report.length === 1 ? '' : 's'}`]
  for (const s of report) {
    const what = s.state === 'prepared'
      ? 'prepared'
      : s.state === 'failed'
        ? `not prepared: ${s.reason ?? 'failed'}`
        : s.state === 'preparing'
          ? `still preparing (fetching or unpacking the artifact)${s.reason !== undefined ? `: ${s.reason}` : ''}`
          : s.state === 'untrusted' ? 'does not trust the release\'s authority (not its cell to run)' : UNREPORTED
    lines.push(`  node …${s.nodeId.slice(-6)} ${what}`)
  }
  return lines.join('\n')
}
