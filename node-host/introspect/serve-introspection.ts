// A full node's operator protocols (`/cell/logs/1`, `/cell/status/1`) behind one operator gate.
import type { FullNode } from '../full-node.ts'
import { OperatorGate } from './operator-gate.ts'
import { serveStatusProtocol, type StatusSource, type NodeCellStatus } from './status-protocol.ts'
import { serveLogsProtocol } from '../logs/log-protocol.ts'
import { replicaLogSource } from '../logs/replica-log-source.ts'
import type { Clock } from '../../core/ports.ts'
import { Counter, type Registry } from 'prom-client'

export interface IntrospectionStats {
  logs: { served: number, refused: number, malformed: number, failed: number }
  status: { served: number, refused: number, malformed: number, failed: number }
}

export function introspectionStats (): IntrospectionStats {
  return { logs: { served: 0, refused: 0, malformed: 0, failed: 0 }, status: { served: 0, refused: 0, malformed: 0, failed: 0 } }
}

/** Authorities that claim `cell` on `node`: the view's claimants and those of the releases it holds. */
export function claimantsOn (node: FullNode, cell: string): string[] {
  return [...new Set([...node.mesh.view.claimants(cell), ...node.releases.releases(cell).map(r => r.authority)])]
}

export function statusSource (node: FullNode): StatusSource {
  return {
    nodeId: node.peerId,
    cells: () => [...new Set([...node.releases.cells(), ...node.mesh.view.cells()])].sort(),
    claimants: (cell) => claimantsOn(node, cell),
    counters: () => ({ ...node.loop.counters }),
    lastError: () => node.loop.lastTickError,
    mismatches: () => node.mesh.gossip.mismatches(),
    cell: (cell): NodeCellStatus => {
      const retired = node.loop.retired.get(cell)
      const desiredReplicas = node.loop.desiredReplicas(cell)
      const biology = node.releases.latest(cell)?.manifest.biology
      const lastError = node.loop.cellErrors.get(cell)
      const lastDecline = node.loop.cellDeclines.get(cell)
      const claims = node.volumes?.claimVoters().filter(c => c.claimId.startsWith(`${cell}/`)) ?? []
      return {
        cell,
        reasons: node.loop.lastReasons.get(cell) ?? [],
        prepared: node.releases.releases(cell).map(r => ({ version: r.version, digest: r.digest, seq: r.seq, authority: r.authority })),
        ...(desiredReplicas !== undefined ? { desiredReplicas } : {}),
        ...(biology !== undefined ? { policy: { minReplicas: biology.minReplicas, maxReplicas: biology.maxReplicas, update: biology.update, canaryWeight: biology.canaryWeight } } : {}),
        unprepared: node.status().unprepared.filter(u => u.cell === cell).map(u => ({ version: u.version, attempts: u.attempts, error: u.error })),
        halted: [...node.loop.halted].filter(([key]) => key.startsWith(`${cell}@`)).map(([key, h]) => ({ version: key.slice(cell.length + 1), digest: h.digest, metric: h.metric, reason: h.reason })),
        ...(retired !== undefined ? { retired } : {}),
        ...(lastError !== undefined ? { lastError } : {}),
        ...(lastDecline !== undefined ? { lastDecline } : {}),
        ...(claims.length > 0 ? { claims } : {}),
        replicas: node.replicas.list(cell).map(r => ({
          replica: r.instanceId,
          version: r.version,
          state: r.state,
          startedMs: r.startedMs,
          ...(r.readyMs !== undefined ? { readyMs: r.readyMs } : {}),
          ...(r.endedMs !== undefined ? { endedMs: r.endedMs } : {}),
          ...(r.exitReason !== undefined ? { exitReason: r.exitReason } : {}),
          ...(r.stderrTail !== undefined && r.stderrTail.length > 0 ? { stderrTail: r.stderrTail } : {})
        }))
      }
    }
  }
}

const OPERATOR_METRIC = 'cell_operator_requests_total'

/** `cell_operator_requests_total{protocol, outcome}` in `registry` (once), read from `stats` at each scrape. */
export function registerIntrospectionStats (registry: Registry, stats: IntrospectionStats): void {
  if (registry.getSingleMetric(OPERATOR_METRIC) !== undefined) return
  const counter = new Counter({
    name: OPERATOR_METRIC,
    help: 'Requests of the operator protocols (/cell/logs/1, /cell/status/1) this node answered, by outcome (served, refused: not an operator of the cell, malformed, failed).',
    labelNames: ['protocol', 'outcome'],
    registers: [registry],
    collect () {
      counter.reset()
      for (const protocol of ['logs', 'status'] as const) {
        for (const outcome of ['served', 'refused', 'malformed', 'failed'] as const) counter.inc({ protocol, outcome }, stats[protocol][outcome])
      }
    }
  })
}

/** Registers both protocols on the node's libp2p (call once the mesh started). */
export async function serveIntrospection (node: FullNode, options: { stats?: IntrospectionStats, clock?: Clock } = {}): Promise<OperatorGate> {
  const gate = new OperatorGate({ trusted: node.trusted, claimants: (cell) => claimantsOn(node, cell), ...(options.clock !== undefined ? { clock: options.clock } : {}) })
  const stats = options.stats ?? introspectionStats()
  registerIntrospectionStats(node.metrics.registry, stats)
  await serveLogsProtocol(node.mesh.libp2p, replicaLogSource(node.replicas), { gate, stats: stats.logs })
  await serveStatusProtocol(node.mesh.libp2p, statusSource(node), { gate, stats: stats.status })
  return gate
}
