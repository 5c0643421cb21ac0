// Which nodes prepared a release (fetched, verified and unpacked its artifact) and which did not,
// and why: read from the `prepared` list every full node gossips in its node record. `cell publish`
// and `cell rollback` print it, so a release that reached one node of three says so by name.
// Per-cell dissemination gossips no node record when only `prepared` changes (docs/biology.md
// "Scale"); the node re-signs it into its own view instead, so the report pulls each node's record
// from the node itself (fleet-sync with a `nodes` filter), in rounds, until it is complete or its
// deadline passes. A node that cannot be asked is reported as unreachable, by name.
import type { AbortOptions } from '@libp2p/interface'
import { setTimeout as pause } from 'node:timers/promises'
import { logger } from '@libp2p/logger'
import { CellError, type RetryRule } from '../core/errors.ts'
import type { Mesh } from '../core/mesh/index.ts'
import type { FleetView, PreparedState } from '../core/fleet/index.ts'
import { trustRoles } from './autonomic-loop.ts'

const log = logger('cell:prepare-report')

export interface NodePrepareStatus {
  nodeId: string
  /**
   * `unreported`: the node's record does not mention the release (yet); `untrusted`: the node does
   * not say it trusts the release's authority (its trust-… role tags), so it will not prepare it;
   * `unreachable` (per-cell dissemination): its record did not settle it and pulling it from the
   * node failed (`reason` says why).
   */
  state: PreparedState | 'unreported' | 'untrusted' | 'unreachable'
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

export interface PrepareReportWaitOptions {
  timeoutMs: number
  authority?: string
  signal?: AbortSignal
}

/**
 * Waits until every full node in the view has prepared or failed `digest`, for at most `timeoutMs`;
 * resolves with the report as it stands then (never rejects on time). Fleet dissemination: re-checks
 * on each view change (node records are gossiped every heartbeat). Per-cell: pulls the records of the
 * nodes that have not settled it from the nodes themselves (see waitForPulledPrepareReport).
 */
export async function waitForPrepareReport (mesh: Mesh, cell: string, digest: string, options: PrepareReportWaitOptions): Promise<NodePrepareStatus[]> {
  if (mesh.gossip.dissemination === 'per-cell') return await waitForPulledPrepareReport(mesh.view, meshNodePull(mesh), cell, digest, options)
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

/** Pulls one node's record from that node into the view (fleet-sync with a `nodes` filter); rejects when it cannot. */
export type NodeRecordPull = (nodeId: string, options: AbortOptions) => Promise<void>

/** Bounds of the per-cell report's pulls. */
export const PREPARE_PULL_LIMITS = {
  /** Pulls in flight at once. */
  inFlight: 16,
  /** Deadline of one pull. */
  pullMs: 5_000,
  /** Pause between two rounds of pulls. */
  roundPauseMs: 500
} as const

/**
 * Pulls the records of `nodeIds`, at most `inFlight` at once, each within `pullMs`. Resolves with
 * the nodes whose pull failed and why; a pull cut short by `options.signal` (the caller's deadline)
 * is not counted as failed (it says nothing about the node).
 */
export async function pullNodeRecords (nodeIds: readonly string[], pull: NodeRecordPull, options: { signal?: AbortSignal, inFlight?: number, pullMs?: number } = {}): Promise<Map<string, string>> {
  const failed = new Map<string, string>()
  const queue = [...new Set(nodeIds)]
  const pullMs = options.pullMs ?? PREPARE_PULL_LIMITS.pullMs
  // A function, not a narrowed property: the signal aborts while pulls are awaited.
  const cutShort = (): boolean => options.signal?.aborted === true
  const worker = async (): Promise<void> => {
    for (let nodeId = queue.shift(); nodeId !== undefined; nodeId = queue.shift()) {
      if (cutShort()) return
      const signal = AbortSignal.any([AbortSignal.timeout(pullMs), ...(options.signal !== undefined ? [options.signal] : [])])
      try {
        await pull(nodeId, { signal })
      } catch (err) {
        if (cutShort()) return
        const reason = signal.aborted ? `no answer within ${pullMs} ms` : describe(err)
        log('pulling the record of node %s failed: %s', nodeId, reason)
        failed.set(nodeId, reason)
      }
    }
  }
  const workers = Math.max(1, Math.min(options.inFlight ?? PREPARE_PULL_LIMITS.inFlight, queue.length))
  await Promise.all(Array.from({ length: workers }, worker))
  return failed
}

function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const cause = err.cause instanceof Error ? ` (${err.cause.name}: ${err.cause.message})` : ''
  return `${err.name}: ${err.message}${cause}`.slice(0, 300)
}

/**
 * The per-cell report: in rounds until every full node in `view` has prepared or failed `digest`
 * or `timeoutMs` has passed, pulls the records of the nodes that have not settled it (unreported,
 * preparing or unreachable) through `pull` (bounded, see pullNodeRecords), with a short abortable
 * pause between rounds. A node whose last pull failed and whose record does not settle it is
 * reported `unreachable` with the reason. Throws only when `options.signal` aborts.
 */
export async function waitForPulledPrepareReport (view: Pick<FleetView, 'nodes'>, pull: NodeRecordPull, cell: string, digest: string, options: PrepareReportWaitOptions & { inFlight?: number, pullMs?: number, roundPauseMs?: number }): Promise<NodePrepareStatus[]> {
  options.signal?.throwIfAborted()
  const unreachable = new Map<string, string>()
  const current = (): NodePrepareStatus[] => prepareReport(view, cell, digest, options.authority).map((s): NodePrepareStatus => {
    const why = unreachable.get(s.nodeId)
    if (why === undefined || (s.state !== 'unreported' && s.state !== 'preparing')) return s
    return { nodeId: s.nodeId, state: 'unreachable', reason: s.state === 'preparing' ? `${why} (its last record said: still preparing)` : why }
  })
  if (reportSettled(current()) || options.timeoutMs <= 0) return current()
  const deadline = AbortSignal.any([AbortSignal.timeout(options.timeoutMs), ...(options.signal !== undefined ? [options.signal] : [])])
  for (let round = 1; ; round++) {
    const ask = current().filter(s => s.state === 'unreported' || s.state === 'preparing' || s.state === 'unreachable').map(s => s.nodeId)
    const failed = await pullNodeRecords(ask, pull, { signal: deadline, inFlight: options.inFlight, pullMs: Math.min(options.pullMs ?? PREPARE_PULL_LIMITS.pullMs, options.timeoutMs) })
    options.signal?.throwIfAborted()
    // A pull cut short by the deadline leaves the node as the round before said.
    for (const id of ask) {
      const why = failed.get(id)
      if (why !== undefined) unreachable.set(id, why)
      else if (!deadline.aborted) unreachable.delete(id)
    }
    const report = current()
    log('round %d: pulled %d node record(s), %d failed; settled: %s', round, ask.length, failed.size, reportSettled(report))
    if (reportSettled(report) || deadline.aborted) return report
    await pause(options.roundPauseMs ?? PREPARE_PULL_LIMITS.roundPauseMs, undefined, { signal: deadline }).catch(() => {})
    options.signal?.throwIfAborted()
    if (deadline.aborted) return current()
  }
}

/** NodeRecordPull over the mesh: a fleet-sync pull of the node's record from the node itself (Mesh.pullFrom). */
export function meshNodePull (mesh: Mesh): NodeRecordPull {
  return async (nodeId, options) => { await mesh.pullFrom(nodeId, { nodes: [nodeId], signal: options.signal }) }
}

/**
 * The report when the wait for replicas failed (publish and rollback print it with the error): the
 * view as it is in fleet mode; per-cell, after pulling the unsettled nodes' records for at most `timeoutMs`.
 */
export async function finalPrepareReport (mesh: Mesh, cell: string, digest: string, options: PrepareReportWaitOptions): Promise<NodePrepareStatus[]> {
  if (mesh.gossip.dissemination !== 'per-cell') return prepareReport(mesh.view, cell, digest, options.authority)
  return await waitForPrepareReport(mesh, cell, digest, options)
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
          : s.state === 'untrusted'
            ? 'does not trust the release\'s authority (not its cell to run)'
            : s.state === 'unreachable' ? `is unreachable: its record could not be pulled from it (${s.reason ?? 'unknown error'})` : UNREPORTED
    lines.push(`  node …${s.nodeId.slice(-6)} ${what}`)
  }
  return lines.join('\n')
}
