// The Prometheus registry of one full node. One registry per node (never prom-client's global
// default: several nodes share a test process). Almost everything is read at scrape time, through
// collect() callbacks, from counters the components already keep (the fleet view, gossip, fleet
// sync, the peer keeper, the synapse, the autonomic loop, the replica set, the release store), so
// the hot paths gain no work; only per-cell synapse calls are counted as they happen (call-meter.ts).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { FleetGossipStats, FleetStats, FleetSyncStats } from '../../core/fleet/index.ts'
import type { GuestStats, KeeperStats } from '../../core/mesh/index.ts'
import type { DatastoreStats } from '../../core/mesh/compact-datastore.ts'
import type { SynapseStats } from '../../core/synapse/index.ts'
import { CallMeter, OTHER_LABEL } from './call-meter.ts'

/** Artifact fetches of the release store and serves of the artifact protocol. */
export interface ArtifactFigures {
  fetched: number
  fetchFailures: number
  fetchedBytes: number
  /** Releases prepared from an artifact already on disk (no fetch). */
  local: number
  served: number
  notFound: number
  refused: number
  serveFailures: number
  /** Artifacts deleted because their release left its cell's newest releases (ReleaseStore.forget). */
  forgotten: number
  /** Files of an earlier run deleted at start: no kept, remembered or running release names them (ReleaseStore.sweep). */
  swept: number
}

export interface ReplicaFigures {
  cell: string
  version: string
  instanceId: string
  state: string
  cpuPercent: number
  memoryBytes: number
}

/** What the node's components report, read at each scrape. */
export interface NodeMetricsSources {
  /** Open libp2p connections: direction and the protocol of each stream. */
  connections: () => Array<{ direction: string, streams: Array<string | undefined> }>
  peers: () => number
  view: () => FleetStats
  gossip: () => FleetGossipStats
  sync: () => FleetSyncStats | undefined
  keeper: () => KeeperStats | undefined
  /** kad-dht records other peers stored here, and what their bounds dropped (core/mesh/compact-datastore.ts). */
  dht?: () => DatastoreStats | undefined
  /** Inbound connections of non-members (core/mesh/guest-connections.ts): anonymous and vouched for, and the peers vouched for. */
  guests?: () => GuestStats | undefined
  /** Anonymous guests holding a gossip mesh place (score 0; the others score −1), and the places (core/fleet/gossip-score.ts). */
  meshGuests?: () => { placed: number, places: number } | undefined
  synapse: () => { client: SynapseStats, server: SynapseStats } | undefined
  loop: () => { counters: { ticks: number, spawns: number, drains: number, halts: number, volunteers: number, failures: number, declined: number }, halted: number }
  replicas: () => ReplicaFigures[]
  artifacts: () => ArtifactFigures
  /** Ready replicas per cell in the node's fleet view (bounded by the view's own limits). */
  readyReplicas?: () => Array<[{ cell: string }, number]>
  /** The grants this node holds: when each ends, and whether the node issues it itself (and renews it). */
  grants?: () => Array<{ authority: string, notAfterMs: number, selfIssued: boolean }>
}

export interface NodeMetricsInit {
  /** Constant labels on every series (none by default: Prometheus adds instance). */
  labels?: Record<string, string>
  /** Node.js process metrics (process_*, nodejs_*). Default true. */
  processMetrics?: boolean
  /** Distinct stream protocols labelled; the rest count as `other`. Default 32. */
  maxProtocols?: number
}

export class NodeMetrics {
  readonly registry: Registry
  readonly calls: CallMeter
  private sources: NodeMetricsSources | undefined

  constructor (init: NodeMetricsInit = {}) {
    this.registry = new Registry()
    if (init.labels !== undefined) this.registry.setDefaultLabels(init.labels)
    if (init.processMetrics !== false) processMetrics(this.registry)
    this.calls = new CallMeter({ registry: this.registry })
    this.define(init.maxProtocols ?? 32)
  }

  /** Hands in the components to read; until then the collected metrics stay empty. */
  attach (sources: NodeMetricsSources): void {
    this.sources = sources
  }

  /** The Prometheus text exposition of every metric. */
  async text (): Promise<string> {
    return await this.registry.metrics()
  }

  get contentType (): string {
    return this.registry.contentType
  }

  private define (maxProtocols: number): void {
    const registers = [this.registry]
    const read = <T>(pick: (s: NodeMetricsSources) => T): T | undefined => this.sources !== undefined ? pick(this.sources) : undefined
    // A counter whose value is read from a component: reset and set to the component's total.
    const counter = <L extends string>(name: string, help: string, labelNames: L[], values: () => Array<[Partial<Record<L, string>>, number]> | undefined): void => {
      new Counter<L>({ // eslint-disable-line no-new
        name,
        help,
        labelNames,
        registers,
        collect () {
          const v = values()
          if (v === undefined) return
          this.reset()
          for (const [labels, n] of v) this.inc(labels, Math.max(0, n))
        }
      })
    }
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], values: () => Array<[Partial<Record<L, string>>, number]> | undefined): void => {
      new Gauge<L>({ // eslint-disable-line no-new
        name,
        help,
        labelNames,
        registers,
        collect () {
          const v = values()
          if (v === undefined) return
          this.reset()
          for (const [labels, n] of v) this.set(labels, n)
        }
      })
    }
    const one = (n: number | undefined): Array<[Record<string, never>, number]> | undefined => n === undefined ? undefined : [[{}, n]]

    // libp2p
    gauge('cell_libp2p_peers', 'Peers this node has a libp2p connection to.', [], () => one(read(s => s.peers())))
    gauge('cell_libp2p_connections', 'Open libp2p connections, by direction.', ['direction'], () => read(s => {
      const by = new Map<string, number>([['inbound', 0], ['outbound', 0]])
      for (const c of s.connections()) by.set(c.direction, (by.get(c.direction) ?? 0) + 1)
      return [...by].map(([direction, n]) => [{ direction }, n])
    }))
    gauge('cell_libp2p_streams', 'Open libp2p streams, by protocol.', ['protocol'], () => read(s => {
      const by = new Map<string, number>()
      for (const c of s.connections()) {
        for (const p of c.streams) {
          const protocol = p === undefined || p === '' ? 'none' : by.has(p) || by.size < maxProtocols ? p : OTHER_LABEL
          by.set(protocol, (by.get(protocol) ?? 0) + 1)
        }
      }
      return [...by].map(([protocol, n]) => [{ protocol }, n])
    }))

    // gossip (fleet heartbeats and releases over gossipsub)
    counter('cell_gossip_heartbeats_total', 'Fleet heartbeats this node ran.', [], () => one(read(s => s.gossip().ticks)))
    counter('cell_gossip_messages_sent_total', 'Fleet gossip messages this node published.', [], () => one(read(s => s.gossip().published)))
    counter('cell_gossip_publish_failures_total', 'Fleet gossip publishes that failed.', [], () => one(read(s => s.gossip().publishFailures)))
    counter('cell_gossip_messages_received_total', 'Fleet gossip messages received, by validation verdict (accept, ignore, reject).', ['verdict'], () => read(s => {
      const r = s.gossip().received
      return [[{ verdict: 'accept' }, r.accept], [{ verdict: 'ignore' }, r.ignore], [{ verdict: 'reject' }, r.reject]]
    }))
    counter('cell_gossip_messages_dropped_total', 'Fleet gossip messages received and not relayed (ignored or rejected).', [], () => one(read(s => s.gossip().received.ignore + s.gossip().received.reject)))
    counter('cell_gossip_instances_skipped_total', 'Local replicas left out of a heartbeat over the per-node limit.', [], () => one(read(s => s.gossip().skippedInstances)))
    counter('cell_gossip_bytes_total', 'Fleet gossip message bytes, by direction (in, out) and topic family (fleet, members, cells, releases).', ['direction', 'family'], () => read(s => {
      const bytes = s.gossip().bytes
      if (bytes === undefined) return []
      return (['in', 'out'] as const).flatMap(direction => Object.entries(bytes[direction]).map(([family, n]): [Record<string, string>, number] => [{ direction, family }, n]))
    }))

    gauge('cell_dissemination_mismatch_peers', 'Connected peers that disseminate fleet records the other way (fleet or per-cell; a mixed fleet, unsupported: neither side sees the other\'s replicas).', [], () => one(read(s => s.gossip().mismatchPeers ?? 0)))

    // the fleet view
    gauge('cell_fleet_nodes', 'Nodes in this node\'s fleet view.', [], () => one(read(s => s.view().nodes)))
    gauge('cell_fleet_instances', 'Replicas in this node\'s fleet view.', [], () => one(read(s => s.view().instances)))
    gauge('cell_fleet_releases', 'Releases in this node\'s fleet view.', [], () => one(read(s => s.view().releases)))
    gauge('cell_fleet_view_digest', 'A 32-bit hash of the live nodes, replicas (with node and state) and releases in this node\'s view: equal on two nodes that see the same fleet.', [], () => read(s => { const d = s.view().digest; return d === undefined ? [] : [[{}, d]] }))
    gauge('cell_fleet_ready_replicas', 'Ready replicas of each cell in this node\'s fleet view.', ['cell'], () => read(s => s.readyReplicas?.() ?? []))
    counter('cell_fleet_records_accepted_total', 'Fleet records accepted into the view, by kind.', ['kind'], () => read(s => Object.entries(s.view().accepted).map(([kind, n]) => [{ kind }, n])))
    counter('cell_fleet_records_dropped_total', 'Fleet records dropped, by reason.', ['reason'], () => read(s => Object.entries(s.view().dropped).map(([reason, n]) => [{ reason }, n])))
    counter('cell_fleet_records_expired_total', 'Fleet records expired from the view, by kind.', ['kind'], () => read(s => Object.entries(s.view().expired).map(([kind, n]) => [{ kind }, n])))
    counter('cell_fleet_snapshots_truncated_total', 'Fleet snapshots cut at the size limit.', [], () => one(read(s => s.view().snapshotTruncated)))
    counter('cell_fleet_sync_pulls_total', 'Anti-entropy pulls of the fleet from another node, by outcome.', ['outcome'], () => read(s => {
      const v = s.sync()
      return v === undefined ? [] : [[{ outcome: 'ok' }, v.pulls], [{ outcome: 'failed' }, v.pullFailures]]
    }))
    counter('cell_fleet_sync_requests_total', 'Anti-entropy requests from other nodes, by outcome.', ['outcome'], () => read(s => {
      const v = s.sync()
      return v === undefined ? [] : [[{ outcome: 'served' }, v.served], [{ outcome: 'failed' }, v.serveFailures], [{ outcome: 'refused' }, v.refused], [{ outcome: 'unauthorized' }, v.unauthorized]]
    }))
    counter('cell_fleet_peer_dials_total', 'Dials of fleet peers the node keeps connected, by outcome.', ['outcome'], () => read(s => {
      const k = s.keeper()
      return k === undefined ? [] : [[{ outcome: 'ok' }, k.dials - k.failures], [{ outcome: 'failed' }, k.failures]]
    }))
    gauge('cell_dht_records', 'Records libp2p holds about other peers, by kind (kad-dht provider records of all peers and of peers outside the fleet, kad-dht value records, peer store entries).', ['kind'], () => read(s => {
      const d = s.dht?.()
      return d === undefined ? [] : [[{ kind: 'providers' }, d.providers], [{ kind: 'outsider_providers' }, d.outsiderProviders], [{ kind: 'values' }, d.records], [{ kind: 'peers' }, d.peers]]
    }))
    counter('cell_dht_records_dropped_total', 'Records about other peers not kept: provider records refused (a peer\'s or the outsiders\' share full), records and peer store entries evicted (oldest first, to make room).', ['reason'], () => read(s => {
      const d = s.dht?.()
      return d === undefined ? [] : [[{ reason: 'provider_refused' }, d.providersRefused], [{ reason: 'provider_evicted' }, d.providersEvicted], [{ reason: 'value_evicted' }, d.recordsEvicted], [{ reason: 'peer_evicted' }, d.peersEvicted]]
    }))
    gauge('cell_guest_connections', 'Inbound connections of peers that are not fleet members, by kind: anonymous, or vouched for by a trusted grant they proved.', ['kind'], () => read(s => {
      const g = s.guests?.()
      return g === undefined ? [] : [[{ kind: 'anonymous' }, g.anonymous], [{ kind: 'vouched' }, g.vouched]]
    }))
    gauge('cell_guest_connections_limit', 'The limits on guest connections: per host (an IPv4 address, an IPv6 /64) for anonymous guests, and in all.', ['scope'], () => read(s => {
      const g = s.guests?.()
      return g === undefined ? [] : [[{ scope: 'per_host' }, g.limits.perHost], [{ scope: 'total' }, g.limits.total]]
    }))
    gauge('cell_gossip_guest_places', 'Anonymous guests that may be in this node\'s gossip meshes (the others are kept out, and still get gossip): held, and the limit.', ['state'], () => read(s => {
      const m = s.meshGuests?.()
      return m === undefined ? [] : [[{ state: 'held' }, m.placed], [{ state: 'limit' }, m.places]]
    }))
    gauge('cell_guest_vouched_peers', 'Peers remembered as vouched for (a trusted grant proved in a handshake or request, until it ends).', [], () => one(read(s => s.guests?.()?.vouchedPeers)))
    counter('cell_fleet_peer_joins_total', 'Fleet peers that joined this node.', [], () => one(read(s => s.keeper()?.joins ?? 0)))
    counter('cell_fleet_peer_leaves_total', 'Fleet peers that left this node.', [], () => one(read(s => s.keeper()?.leaves ?? 0)))

    // synapse totals from core (per-cell series come from the call meter)
    const sides = (pick: (s: SynapseStats) => number): Array<[{ side: string }, number]> | undefined => read(s => {
      const v = s.synapse()
      return v === undefined ? [] : [[{ side: 'client' }, pick(v.client)], [{ side: 'server' }, pick(v.server)]]
    })
    gauge('cell_synapse_channels', 'Open synapse channels, as client (calls out) and server (calls in).', ['side'], () => sides(v => v.channels))
    counter('cell_synapse_frames_total', 'Synapse frames sent and received, by side and direction.', ['side', 'direction'], () => read(s => {
      const v = s.synapse()
      return v === undefined
        ? []
        : [[{ side: 'client', direction: 'in' }, v.client.framesIn], [{ side: 'client', direction: 'out' }, v.client.framesOut], [{ side: 'server', direction: 'in' }, v.server.framesIn], [{ side: 'server', direction: 'out' }, v.server.framesOut]]
    }))
    counter('cell_synapse_client_calls_total', 'Synapse calls this node made to other nodes, by outcome.', ['outcome'], () => read(s => {
      const v = s.synapse()
      return v === undefined ? [] : [[{ outcome: 'ok' }, v.client.calls - v.client.errors - v.client.inflight], [{ outcome: 'error' }, v.client.errors]]
    }))
    counter('cell_synapse_handshakes_rejected_total', 'Synapse handshakes refused (server) or failed (client).', ['side'], () => sides(v => v.rejected))
    counter('cell_synapse_frames_dropped_total', 'Synapse frames dropped because their call had ended.', ['side'], () => sides(v => v.dropped))
    counter('cell_synapse_unread_calls_total', 'Calls a stopping server did not read: failed by its GOAWAY count (client) or refused after its GOAWAY (server); nothing ran.', ['side'], () => sides(v => v.unread))

    // capsids, per replica
    gauge('cell_capsid_cpu_ratio', 'CPU a replica\'s capsid used at the last sample, in cores (1 = one core busy).', ['cell', 'version', 'replica'], () => read(s => s.replicas()
      .filter(r => r.state !== 'stopped' && r.state !== 'crashed')
      .map(r => [{ cell: r.cell, version: r.version, replica: r.instanceId }, r.cpuPercent / 100])))
    gauge('cell_capsid_resident_memory_bytes', 'Resident memory of a replica\'s capsid at the last sample.', ['cell', 'version', 'replica'], () => read(s => s.replicas()
      .filter(r => r.state !== 'stopped' && r.state !== 'crashed')
      .map(r => [{ cell: r.cell, version: r.version, replica: r.instanceId }, r.memoryBytes])))
    gauge('cell_replicas', 'Replicas on this node, by cell and state.', ['cell', 'state'], () => read(s => {
      const by = new Map<string, { cell: string, state: string, n: number }>()
      for (const r of s.replicas()) {
        const key = `${r.cell}\0${r.state}`
        const e = by.get(key) ?? { cell: r.cell, state: r.state, n: 0 }
        e.n++
        by.set(key, e)
      }
      return [...by.values()].map(e => [{ cell: e.cell, state: e.state }, e.n])
    }))

    // biology: the autonomic loop's decisions
    counter('cell_biology_ticks_total', 'Autonomic loop ticks.', [], () => one(read(s => s.loop().counters.ticks)))
    counter('cell_biology_decisions_total', 'Actions the autonomic loop decided, by action (spawn, drain, volunteer, halt).', ['action'], () => read(s => {
      const c = s.loop().counters
      return [[{ action: 'spawn' }, c.spawns], [{ action: 'drain' }, c.drains], [{ action: 'volunteer' }, c.volunteers], [{ action: 'halt' }, c.halts]]
    }))
    counter('cell_biology_spawns_total', 'Replicas the autonomic loop started.', [], () => one(read(s => s.loop().counters.spawns)))
    counter('cell_biology_drains_total', 'Replicas the autonomic loop drained.', [], () => one(read(s => s.loop().counters.drains)))
    counter('cell_biology_release_halted_total', 'Releases this node halted (a rollout stopped on its health metric, or crash-looping).', [], () => one(read(s => s.loop().counters.halts)))
    counter('cell_biology_failures_total', 'Autonomic loop ticks or actions that failed.', [], () => one(read(s => s.loop().counters.failures)))
    counter('cell_biology_spawns_declined_total', 'Replicas the autonomic loop did not start because another node holds every claim of the cell (a lost race for a stateful cell, not a failure).', [], () => one(read(s => s.loop().counters.declined)))
    gauge('cell_biology_halted_releases', 'Releases halted on this node now.', [], () => one(read(s => s.loop().halted)))

    gauge('cell_node_grant_expiry_timestamp_seconds', 'When each grant this node holds ends (Unix seconds), by issuing authority; issued="node" ones the node renews itself, issued="given" ones need a new grant file in <data>/grants/ before they end.', ['authority', 'issued'], () => read(s => (s.grants?.() ?? []).map(g => [{ authority: g.authority, issued: g.selfIssued ? 'node' : 'given' }, g.notAfterMs / 1000])))

    // artifacts
    counter('cell_artifact_fetches_total', 'Artifacts fetched from other nodes, by outcome.', ['outcome'], () => read(s => {
      const a = s.artifacts()
      return [[{ outcome: 'ok' }, a.fetched], [{ outcome: 'failed' }, a.fetchFailures]]
    }))
    counter('cell_artifact_fetched_bytes_total', 'Bytes of artifacts fetched from other nodes.', [], () => one(read(s => s.artifacts().fetchedBytes)))
    counter('cell_artifact_local_hits_total', 'Releases prepared from an artifact already on disk.', [], () => one(read(s => s.artifacts().local)))
    counter('cell_artifacts_deleted_total', 'Artifacts and code files deleted from this node\'s disk, by why: their release left the kept history, or an earlier run left them (swept at start).', ['reason'], () => read(s => {
      const a = s.artifacts()
      return [[{ reason: 'left_history' }, a.forgotten], [{ reason: 'swept' }, a.swept]]
    }))
    counter('cell_artifact_serves_total', 'Artifact requests from other nodes, by outcome.', ['outcome'], () => read(s => {
      const a = s.artifacts()
      return [[{ outcome: 'served' }, a.served], [{ outcome: 'not_found' }, a.notFound], [{ outcome: 'refused' }, a.refused], [{ outcome: 'failed' }, a.serveFailures]]
    }))
  }
}

/**
 * prom-client's process and Node.js metrics, less its three gauges named `…_total`
 * (`nodejs_active_handles_total` …), which `promtool check metrics` refuses; the same figures stay
 * by type in `nodejs_active_handles`, `nodejs_active_requests` and `nodejs_active_resources`.
 */
function processMetrics (registry: Registry): void {
  collectDefaultMetrics({ register: registry })
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
}
