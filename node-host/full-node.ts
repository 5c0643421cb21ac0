// A full node: a libp2p mesh peer that gossips the fleet, serves the DHT, holds and serves artifacts
// and runs replicas of trusted cells in capsids, driven by its own autonomic loop.
import { cpus, freemem, totalmem } from 'node:os'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { Mesh, type GuestLimits } from '../core/mesh/index.ts'
import { Credentials, authorityIdOf, encodeCertificate, verifySignedRecord, CertificateExpiredError, type AuthorityKey, type Certificate } from '../core/identity/index.ts'
import { systemClock, systemRandom, type Clock, type Random } from '../core/ports.ts'
import type { Dissemination, LocalNodeState, NodeHalt } from '../core/fleet/index.ts'
import { SelfGrants } from './self-grants.ts'
import { GrantWatch, readGrantFiles, verifyGivenGrant } from './grant-watch.ts'
import { ListenerGarbage } from './listener-garbage.ts'
import { loadOrCreatePeerKey } from './keys/peer-key-file.ts'
import { fullNodeTransports, listenAddresses, type ListenPorts } from './transports.ts'
import type { WebTransportHandle, WebTransportListenInit } from './webtransport/transport.ts'
import { openRunDir, type RunDir } from './run-dir.ts'
import { serveArtifacts } from './artifacts/artifact-exchange.ts'
import { KEPT_RELEASES, ReleaseStore } from './release-store.ts'
import { ReplicaSet } from './replica-set.ts'
import { AutonomicLoop, trustRoles } from './autonomic-loop.ts'
import type { BiologyParams } from '../core/biology/index.ts'
import * as capsidErrors from './capsid/errors.ts'
import { sandboxRole, levelOfRoles, satisfiesSandbox, type SandboxMode } from './capsid/index.ts'
import { preparedReleases } from './prepared-releases.ts'
import { loadFleetIntent, INTENT_RECORD_KINDS, type FleetIntent, type IntentRecordKind } from './fleet-intent.ts'
import { reuseListenPorts, listeningPorts, withFreeWebrtcPort } from './listen-ports.ts'
import type { FleetView } from '../core/fleet/index.ts'
import { NodeMetrics } from './telemetry/node-metrics.ts'
import { serveMetrics, MetricsPortInUseError, type MetricsAddress, type MetricsServer } from './telemetry/metrics-server.ts'
import { artifactServeStats } from './artifacts/artifact-exchange.ts'
import { MetricsProxy } from './telemetry/metrics-proxy.ts'
import { serveMetricsProtocol, fetchMetrics, metricsServeStats, registerMetricsServeStats } from './telemetry/metrics-exchange.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { tracedHandler } from '../core/telemetry/tracer.ts'
import type { OtelTracerAdapter, OtlpTraceInit } from './telemetry/otel-tracer.ts'
import { registerTraceExportStats } from './telemetry/trace-metrics.ts'
import { offersStorageClass, storageDriversOfRoles } from '../core/biology/storage-class.ts'
import { haltRecordsOf } from '../core/biology/target.ts'
import { NodeVolumes, type NodeVolumesInit } from './volumes/node-volumes.ts'
import { createSnapshotPort, type SnapshotService } from './volumes/snapshot-port.ts'
import { serveRestoreProtocol } from './volumes/restore-protocol.ts'
import { OperatorGate } from './introspect/operator-gate.ts'
import { ReplicaVolumesUnavailableError } from './volumes/volume-manager.ts'
import { serveIntrospection, introspectionStats, claimantsOn } from './introspect/serve-introspection.ts'
import { nodeNoiseCrypto } from './noise-crypto.ts'
import { lockDataDir, prepareDataDir, type DataDirLock } from './data-dir-lock.ts'

const log = logger('cell:node')

export { GrantRejectedError } from './grant-watch.ts'

export interface FullNodeInit {
  dataDir: string
  listen?: ListenPorts
  /** Certificate policy and limits of the WebTransport listener (on when listen.webtransport is a port). */
  webTransport?: WebTransportListenInit
  bootstrap?: string[]
  /** Authority ids whose cells this node hosts and whose callers it admits. */
  trust?: string[]
  /** Authority keys held by this node's operator: the node grants itself the host role under each. */
  authorityKeys?: AuthorityKey[]
  /** Grants (tokens or certificates) issued to this node by authorities. */
  grants?: Array<string | Certificate>
  /** How often <data>/grants/ is read for renewed grants (default 60 s; tests). */
  grantCheckMs?: number
  /** Where what the node says of its grants goes (taken from a file, ending, ended, a file refused); default: its log at error level. */
  grantNotice?: (text: string) => void
  sandbox?: SandboxMode
  /** Where the node makes its socket directories (default /tmp: a socket path must stay under 108 bytes). */
  runParent?: string
  maxReplicas?: number
  /** Node-level tuning of the autonomic loop (core/biology BiologyParams). */
  biology?: Partial<BiologyParams>
  heartbeatMs?: number
  /** How fleet records travel (core/fleet, docs/biology.md "Scale"); every node of a fleet uses the same. Default 'fleet'. */
  dissemination?: Dissemination
  /** Limits on inbound connections of non-members without a trusted grant (MeshInit.guestConnections; node.toml guests_per_host, guests_total). */
  guestConnections?: Partial<GuestLimits>
  /** Per-cell: standby candidates per cell besides its hosts (default 8; tests use fewer to see narrowing on a small fleet). */
  standbyCandidates?: number
  tickMs?: number
  /** Fleet links: peers kept connected, their re-check and re-dial backoff, anti-entropy period, bootstrap tag ttl. */
  links?: { keep?: number, checkMs?: number, maxBackoffMs?: number, antiEntropyMs?: number, bootstrapTagTtlMs?: number }
  /** How long a stop or a drain waits for calls in flight before stopping replicas anyway (default 30 s). */
  drainGraceMs?: number
  /**
   * Listen again on the ports of the last run (those `listen` leaves unset) and dial the full nodes
   * known then, so bootstrap addresses other nodes hold stay valid and a fleet restarting at once
   * finds itself again. `cell up` sets it.
   */
  reuseAddresses?: boolean
  /**
   * Serve Prometheus text on `GET /metrics` at this address while the node runs (port 0: any free
   * port, read `metricsUrl`). Unset: no server (the registry is still kept). `cell up` defaults it
   * to 127.0.0.1:9090.
   */
  metrics?: MetricsAddress
  /**
   * When the metrics port is taken, serve on a free port instead (said in `notes`) rather than fail:
   * for the default address, so a second node on one machine starts. An address the operator
   * chose fails the start by name (MetricsPortInUseError).
   */
  metricsFallback?: boolean
  /**
   * Export spans over OTLP/HTTP (JSON) to `url` (`cell up --otlp URL --trace-ratio R`): a server span
   * per call served (child of the caller's traceparent), a child span around the replica's capsid
   * call and a client span per call this node makes. Sampling is parent-based with `ratio` for new
   * traces (default 0.01). Unset: no spans.
   */
  otlp?: OtlpTraceInit
  /**
   * Stateful cells' volumes: `zfsPool` (`cell up --zfs-pool`) adds the zfs driver to the dir driver
   * every node has; the rest tunes claim leases and hand-overs (tests shorten them).
   */
  storage?: { zfsPool?: string, leaseMs?: number, tuning?: NodeVolumesInit['tuning'], snapshotsKept?: number, voterReplaceAfterMs?: number, voterCheckMs?: number }
  clock?: Clock
  random?: Random
}

export interface NodeStatus {
  peerId: string
  cells: Array<{ cell: string, prepared: string[], gossiped?: string, replicas: string[], reasons: string[] }>
  unprepared: Array<{ cell: string, version: string, attempts: number, error: string }>
  peers: number
  counters: AutonomicLoop['counters']
  halted: string[]
  retired: Array<{ cell: string, authority: string, seq: number }>
  lastError?: string
}

export class FullNode {
  readonly mesh: Mesh
  readonly releases: ReleaseStore
  readonly replicas: ReplicaSet
  readonly loop: AutonomicLoop
  readonly trusted: Set<string>
  /** This node's Prometheus registry (node-host/telemetry). */
  readonly metrics: NodeMetrics
  /** Garbage refused on this node's listeners (libp2p and HTTP), counted in its metrics. */
  readonly garbage = new ListenerGarbage()
  private metricsServer?: MetricsServer
  private readonly artifactServes = artifactServeStats()
  private readonly metricsServes = metricsServeStats()
  /** Requests of the operator protocols (`cell logs`, `cell status`) by outcome. */
  readonly introspection = introspectionStats()
  /** The fleet's metrics through this node (`/metrics/nodes/<id>`, `/metrics/cells/<cell>`, `/sd/prometheus`). */
  readonly fleetMetrics: MetricsProxy
  private readonly init: FullNodeInit
  private started = false
  /** Pulls made because a grant file made the node trust a new authority, and the records they brought. */
  readonly trustCatchUps = { pulls: 0, accepted: 0 }
  /** This node's hold on its data directory (released by stop()). */
  private lock?: DataDirLock
  private runDir?: RunDir
  /** Set when the node starts stopping: its last heartbeats carry the `leaving` role. */
  leaving = false
  private readonly retries = new Map<string, { failures: number, atMs: number, cell: string, version: string, error: string }>()
  /** Digests being prepared now: every tick asks again, and one failure must count (and log) once. */
  private readonly preparing = new Set<string>()
  private reconcileTimer?: ReturnType<typeof setInterval>
  /** Retries of releases that failed to prepare, due before the next reconcile tick (at most one per digest, 256 in all). */
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>()
  private readonly intent: FleetIntent
  private selfGrants?: SelfGrants
  /** Grants handed to the node: renewals taken from <data>/grants/, endings said (grant-watch.ts). */
  grantWatch?: GrantWatch
  private intentTimer?: ReturnType<typeof setTimeout>
  private intentSignature = ''
  /** The span exporter when `otlp` is set (its counters: exported, failed, dropped). */
  tracer?: OtelTracerAdapter
  /** Stateful cells' storage: drivers offered, claim votes, claim volumes. */
  volumes!: NodeVolumes
  private secrets!: { credentials: Credentials, peerKey: Awaited<ReturnType<typeof loadOrCreatePeerKey>> }
  /** Snapshots taken here, announced, pinned for others, served and fetched. */
  snapshots?: SnapshotService
  /** Things worth telling the operator at start (e.g. a remembered port was taken). */
  readonly notes: string[] = []
  /** The WebTransport listener (stats, rotate) once it listens; undefined without one. */
  webTransport: () => WebTransportHandle | undefined = () => undefined

  /**
   * A node on `init.dataDir`, which it locks until stop() (node-host/data-dir-lock.ts): a second
   * node on the same directory, in this process or another, fails with DataDirInUseError.
   */
  static async create (init: FullNodeInit): Promise<FullNode> {
    await prepareDataDir(init.dataDir)
    const lock = await lockDataDir(init.dataDir)
    try {
      const node = await FullNode.open(init)
      node.lock = lock
      return node
    } catch (err) {
      await lock.release()
      throw err
    }
  }

  private static async open (init: FullNodeInit): Promise<FullNode> {
    const clock = init.clock ?? systemClock
    const random = init.random ?? systemRandom
    const peerKey = await loadOrCreatePeerKey(join(init.dataDir, 'peer.key'))
    const credentials = new Credentials({ peerKey, clock })
    const trusted = new Set(init.trust ?? [])
    const now = clock.now()
    for (const key of init.authorityKeys ?? []) trusted.add(authorityIdOf(key.publicKey))
    // Host grants from the operator's own authority keys, renewed while the node runs.
    const selfGrants = new SelfGrants({ keys: init.authorityKeys ?? [], credentials, clock })
    await selfGrants.renew()
    const grants: Array<{ grant: string | Certificate, source: string }> = [
      ...(init.grants ?? []).map((grant, i) => ({ grant, source: `grant #${i + 1} given to the node` })),
      ...await readGrantFiles(join(init.dataDir, 'grants'))
    ]
    for (const { grant, source } of grants) {
      // The issuer becomes trusted only through a grant that verifies: its own signature, issued to
      // this node's peer id, valid now. A forged token must not add an authority to the trust set.
      let cert: Certificate
      try {
        cert = await verifyGivenGrant(grant, source, credentials.peerId, clock.now())
      } catch (err) {
        if (!(err instanceof CertificateExpiredError)) throw err
        // Ended: a renewal beside it (a later grant file, or one added while the node runs) counts.
        log.error('ignoring %s: %s', source, err.message)
        continue
      }
      credentials.addGrant(cert)
      trusted.add(cert.issuer)
    }
    // Grants end (`cell grant` makes them for 7 days): renewed ones are taken from <data>/grants/
    // while the node runs, and one about to end is said with what to do.
    const grantWatch = new GrantWatch({
      dir: join(init.dataDir, 'grants'),
      credentials,
      trusted,
      selfIssued: new Set((init.authorityKeys ?? []).map(k => authorityIdOf(k.publicKey))),
      clock,
      ...(init.grantCheckMs !== undefined ? { checkMs: init.grantCheckMs } : {}),
      ...(init.grantNotice !== undefined ? { warn: init.grantNotice } : {})
    })
    const intent = await loadFleetIntent(init.dataDir)
    // The OpenTelemetry SDK and exporter (some 20 MiB of a node's RSS) load only when traces are exported.
    const tracer = init.otlp !== undefined ? new (await import('./telemetry/otel-tracer.ts')).OtelTracerAdapter({ serviceName: 'cell-node', ...init.otlp }) : undefined
    // The replicas' socket directories: fresh each start, what a killed run left removed (run-dir.ts).
    const runDir = await openRunDir(init.dataDir, 'run', init.runParent !== undefined ? { parent: init.runParent } : {})
    try {
      return await FullNode.build(init, { clock, random, peerKey, credentials, trusted, now, selfGrants, grantWatch, intent, tracer, runDir })
    } catch (err) {
      // A start that fails here (a zfs pool that is not there, a sandbox that does not work, a bad
      // listen address) leaves no socket directory under /tmp and no exporter behind.
      await runDir.remove().catch((e: unknown) => { log('removing the run dir after a failed start: %e', e) })
      await tracer?.shutdown().catch((e: unknown) => { log('trace exporter after a failed start: %e', e) })
      throw err
    }
  }

  /** The rest of open(): everything that runs in the run dir and may fail. */
  private static async build (init: FullNodeInit, parts: OpenedParts): Promise<FullNode> {
    const { clock, random, peerKey, credentials, trusted, now, selfGrants, grantWatch, intent, tracer, runDir } = parts
    let listen = init.listen
    let bootstrap = init.bootstrap
    const notes: string[] = []
    if (init.reuseAddresses === true) {
      const reused = await reuseListenPorts(init.listen ?? {}, intent.listen())
      listen = reused.ports
      notes.push(...reused.notes)
      bootstrap = [...new Set([...(init.bootstrap ?? []), ...intent.peers()])]
    }
    listen = await withFreeWebrtcPort(listen ?? {})
    const releases = new ReleaseStore(init.dataDir)
    // An artifact whose release left the history stays while a replica here still runs from it.
    releases.inUse = (digest) => replicas.runsDigest(digest)
    const maxReplicas = init.maxReplicas ?? Math.max(4, cpus().length * 4)
    // The node's volumes for stateful cells (set below, once the fleet view exists).
    let volumes: NodeVolumes | undefined
    const replicas = new ReplicaSet({
      dataDir: init.dataDir, runDir: runDir.path, sandbox: init.sandbox ?? 'auto', clock, random, maxReplicas, ...(tracer !== undefined ? { tracer } : {}), ...(init.drainGraceMs !== undefined ? { drainGraceMs: init.drainGraceMs } : {}),
      volumes: {
        open: async (spec, instanceId, options) => {
          if (volumes?.manager === undefined) throw new ReplicaVolumesUnavailableError(`the node's volumes are not started yet; ${spec.cell} not started`)
          return await volumes.manager.open(spec, instanceId, options)
        }
      }
    })
    // Resolved now: a node without a working bubblewrap (and no explicit --sandbox process) fails here
    // by name, not in its first heartbeat. Peers read the level from the node record's roles.
    const level = replicas.sandboxLevel
    const startedMs = now
    // Process metrics (a GC observer, an event-loop delay monitor) only for a node that serves them:
    // test processes create many nodes.
    const metrics = new NodeMetrics({ processMetrics: init.metrics !== undefined })
    let addrs: () => string[] = () => []
    let webTransport: WebTransportHandle | undefined
    let halts: () => NodeHalt[] = () => []
    let self: FullNode | undefined
    const localNode = (): LocalNodeState => ({
      addrs: addrs().slice(0, 16),
      capacity: { slots: maxReplicas, freeSlots: Math.max(0, maxReplicas - replicas.running()), cpuCores: cpus().length, memoryBytes: totalmem(), freeMemoryBytes: freemem() },
      // CPU the node's own replicas use, as sampled from /proc: what this node has committed. (Host-wide
      // load would count unrelated work and stop a busy laptop or CI machine from hosting anything.)
      load: { cpuPercent: Math.min(100, replicas.cpuPercentTotal() / Math.max(1, cpus().length)), memoryPercent: Math.min(100, 100 * (1 - freemem() / totalmem())) },
      // `leaving` in the heartbeats of a stopping node: the others do not count it as a member a
      // partition could be hiding (see AutonomicLoop.membership).
      roles: ['full', ...(self?.leaving === true ? ['leaving'] : []), sandboxRole(level), ...(volumes?.roles() ?? []), ...trustRoles(trusted)].slice(0, 8),
      grants: credentials.authorities().slice(0, 4).map(a => encodeCertificate(credentials.grantFor(a)!)),
      halts: halts(),
      prepared: self?.preparedReleases() ?? [],
      startedMs
    })
    let loopRef: AutonomicLoop | undefined
    const mesh = await Mesh.create({
      privateKey: peerKey,
      noiseCrypto: nodeNoiseCrypto,
      // Garbage on the libp2p listeners is counted (cell_listener_garbage_total) and logged.
      onInboundFailure: (transport, err) => { self?.garbage.onInboundFailure(transport, err) },
      // Guest connections closed to keep their budget count as the listeners' garbage too.
      onGuestClosed: (reason, host, peerId) => { self?.garbage.note('guests', reason, `${peerId} from ${host}`) },
      transports: fullNodeTransports(listen, { certDir: join(init.dataDir, 'webtransport'), workDir: async () => await openRunDir(init.dataDir, 'wt', init.runParent !== undefined ? { parent: init.runParent } : {}), ...init.webTransport, onHandle: (h) => { webTransport = h } }, { onRefused: (listener, reason, detail) => { self?.garbage.note(listener, reason, detail) } }),
      listen: listenAddresses(listen),
      bootstrap,
      credentials,
      trusted,
      callerTrust: (cell) => {
        const r = releases.latest(cell)
        return new Set(r != null ? [r.authority, ...r.manifest.authority.trust] : trusted)
      },
      isPublic: (cell) => releases.latest(cell)?.manifest.public === true,
      handler: tracedHandler(tracer, metrics.calls.wrap(replicas.handler())),
      ...(tracer !== undefined ? { tracer } : {}),
      localNode,
      localInstances: () => replicas.instanceStates(),
      heartbeatMs: init.heartbeatMs,
      ...(init.dissemination !== undefined ? { dissemination: init.dissemination } : {}),
      ...(init.guestConnections !== undefined ? { guestConnections: init.guestConnections } : {}),
      // Per-cell: this node follows the cells it hosts and those it is a standby candidate for.
      ...(init.dissemination === 'per-cell' ? { followPolicy: (cell: string) => loopRef?.follows(cell) ?? true } : {}),
      sequenceFloors: intent,
      clock,
      random,
      // Browser tabs reach each other over WebRTC through a circuit relay on a full node.
      services: { relay: circuitRelayServer({ reservations: { maxReservations: 128 } }) },
      // Full nodes reach each other over TCP/WebSockets; WebRTC-direct is for browsers to dial in.
      // (Node-to-node WebRTC sessions also leave native node-datachannel state to tear down at stop.)
      libp2p: { connectionGater: { denyDialMultiaddr: (ma) => ma.toString().includes('/webrtc-direct') } },
      keeper: { keep: init.links?.keep, checkMs: init.links?.checkMs, maxBackoffMs: init.links?.maxBackoffMs },
      antiEntropyMs: init.links?.antiEntropyMs,
      bootstrapTagTtlMs: init.links?.bootstrapTagTtlMs,
      errorClasses: Object.values(capsidErrors).filter((v) => typeof v === 'function') as any
    })
    addrs = () => mesh.libp2p.getMultiaddrs().map(String)
    const loop: AutonomicLoop = loopRef = new AutonomicLoop({
      selfId: credentials.peerId,
      view: mesh.view,
      releases,
      replicas,
      clock,
      random,
      tickMs: init.tickMs,
      params: init.biology,
      hostGrant: mesh.hostGrant,
      announce: () => { mesh.gossip.soon() },
      ...(init.dissemination === 'per-cell' ? { following: { onFollowChange: () => { mesh.gossip.refollow() }, ...(init.standbyCandidates !== undefined ? { candidates: init.standbyCandidates } : {}) } } : {}),
      canHost: (authority) => trusted.has(authority) && credentials.grantFor(authority)?.roles.includes('host') === true,
      // A cell that requires a strict sandbox (the default) is placed only on nodes advertising one,
      // and never started here when this node is weaker (ReplicaSet refuses it by name too).
      nodeSuits: (node, release) => satisfiesSandbox(node.nodeId === credentials.peerId ? level : levelOfRoles(node.roles), release.manifest.sandbox.require) &&
        // A stateful cell only on nodes that offer its storage class (zfs never falls back to dir).
        (release.manifest.storage === undefined || offersStorageClass(node.nodeId === credentials.peerId ? (volumes?.roles() ?? []) : node.roles, release.manifest.storage.class)),
      unplaceable: (release) => {
        const cls = release.manifest.storage?.class
        if (cls === undefined || offersStorageClass(volumes?.roles() ?? [], cls)) return undefined
        const full = mesh.view.nodes().filter(n => n.roles.includes('full'))
        if (full.some(n => offersStorageClass(n.roles, cls))) return undefined
        const offered = [...new Set(full.flatMap(n => storageDriversOfRoles(n.roles)))].sort()
        return `NoStorageClassError: no node in view offers storage class "${cls}" (offered: ${offered.join(', ') || 'none'}); ${release.cell} is placed nowhere${cls === 'zfs' ? ' until a node runs with --zfs-pool' : ''}`
      }
    })
    volumes = await NodeVolumes.create({
      selfId: credentials.peerId,
      dataDir: init.dataDir,
      ...(init.storage?.zfsPool !== undefined ? { zfsPool: init.storage.zfsPool } : {}),
      clock,
      view: mesh.view,
      credentials,
      trusted,
      ...(init.storage?.leaseMs !== undefined ? { leaseMs: init.storage.leaseMs } : {}),
      ...(init.storage?.tuning !== undefined ? { tuning: init.storage.tuning } : {}),
      ...(init.storage?.voterReplaceAfterMs !== undefined ? { voterReplaceAfterMs: init.storage.voterReplaceAfterMs } : {}),
      ...(init.storage?.voterCheckMs !== undefined ? { voterCheckMs: init.storage.voterCheckMs } : {})
    })
    halts = () => loop.haltRecords()
    const node = new FullNode(init, mesh, releases, replicas, loop, trusted, intent, metrics)
    node.volumes = volumes
    node.runDir = runDir
    node.secrets = { credentials, peerKey }
    node.webTransport = () => webTransport
    metrics.attach({
      connections: () => mesh.libp2p.getConnections().map(c => ({ direction: c.direction, streams: c.streams.map(st => st.protocol) })),
      peers: () => mesh.libp2p.getPeers().length,
      guests: () => mesh.guests.stats(),
      meshGuests: () => ({ placed: mesh.guestScoring.placedGuests().length, places: mesh.guestScoring.places }),
      view: () => mesh.view.stats(),
      gossip: () => mesh.gossip.stats(),
      sync: () => mesh.libp2p.services.fleetSync.stats(),
      keeper: () => mesh.keeper?.stats,
      dht: () => mesh.dhtStoreStats(),
      synapse: () => mesh.libp2p.services.synapse.stats(),
      loop: () => ({ counters: loop.counters, halted: loop.halted.size }),
      replicas: () => replicas.list().map(r => ({ cell: r.cell, version: r.version, instanceId: r.instanceId, state: r.state, cpuPercent: r.load.cpuPercent, memoryBytes: r.load.memoryBytes })),
      grants: () => grantWatch.expiries(),
      artifacts: () => ({ ...releases.fetchStats, forgotten: releases.forgotten, swept: releases.swept, served: node.artifactServes.served, notFound: node.artifactServes.notFound, refused: node.artifactServes.refused, serveFailures: node.artifactServes.failed }),
      readyReplicas: () => mesh.view.cells().slice(0, 256).map(cell => [{ cell }, mesh.view.liveInstances(cell).filter(i => i.state === 'ready').length])
    })
    node.selfGrants = selfGrants
    node.grantWatch = grantWatch
    grantWatch.onTrusted = (authority) => { void node.catchUpWith(authority) }
    if (tracer !== undefined) {
      node.tracer = tracer
      registerTraceExportStats(metrics.registry, tracer.stats)
    }
    self = node
    node.notes.push(...notes)
    return node
  }

  private constructor (init: FullNodeInit, mesh: Mesh, releases: ReleaseStore, replicas: ReplicaSet, loop: AutonomicLoop, trusted: Set<string>, intent: FleetIntent, metrics: NodeMetrics) {
    this.init = init
    this.metrics = metrics
    registerMetricsServeStats(metrics.registry, this.metricsServes)
    this.garbage.register(metrics.registry)
    this.fleetMetrics = new MetricsProxy({
      selfId: mesh.peerId.toString(),
      view: mesh.view,
      local: async () => await metrics.text(),
      fetch: async (nodeId, what, options) => await fetchMetrics(mesh.libp2p, peerIdFromString(nodeId), what, options),
      registry: metrics.registry
    })
    this.intent = intent
    this.mesh = mesh
    this.releases = releases
    this.replicas = replicas
    this.loop = loop
    this.trusted = trusted
  }

  /** One line on the storage this node offers, for `cell up`. */
  storageSummary (): string {
    return this.volumes.summary()
  }

  get peerId (): string {
    return this.mesh.peerId.toString()
  }

  addresses (): string[] {
    return this.mesh.libp2p.getMultiaddrs().map(String)
  }

  /** Where `GET /metrics` answers while the node runs, when `metrics` was given. */
  get metricsUrl (): string | undefined {
    return this.metricsServer?.url
  }

  async start (): Promise<void> {
    if (this.started) return
    try {
      await this.serveMetricsPort()
      this.started = true
      await this.join()
    } catch (err) {
      // A start that fails (a metrics or listen port taken, a protocol that would not register)
      // stops what it started: no listener, timer, socket directory or lock outlives it.
      await this.stop().catch((e: unknown) => { log('stopping after a failed start: %e', e) })
      throw err
    }
  }

  /** First: a taken metrics port fails the start (MetricsPortInUseError) before the node joins the fleet. */
  private async serveMetricsPort (): Promise<void> {
    if (this.init.metrics !== undefined && this.metricsServer === undefined) {
      try {
        this.metricsServer = await serveMetrics(this.metrics, this.init.metrics, { fleet: this.fleetMetrics, garbage: this.garbage })
      } catch (err) {
        if (!(err instanceof MetricsPortInUseError) || this.init.metricsFallback !== true) throw err
        this.metricsServer = await serveMetrics(this.metrics, { ...this.init.metrics, port: 0 }, { fleet: this.fleetMetrics, garbage: this.garbage })
        this.notes.push(`metrics port ${this.init.metrics.port} is taken: serving metrics on ${this.metricsServer.url} instead`)
      }
    }
  }

  /** start() from the mesh on: listen, serve the node's protocols, restore intent, run the loop. */
  private async join (): Promise<void> {
    await this.mesh.start()
    await serveArtifacts(this.mesh.libp2p, this.releases, { stats: this.artifactServes })
    await serveMetricsProtocol(this.mesh.libp2p, async () => await this.metrics.text(), { stats: this.metricsServes })
    this.snapshots = await createSnapshotPort({
      mesh: this.mesh, credentials: this.secrets.credentials, privateKey: this.secrets.peerKey, dataDir: this.init.dataDir, trusted: this.trusted, clock: this.init.clock ?? systemClock,
      ownsClaim: (claimId) => this.volumes.manager?.claim(claimId) !== undefined,
      ...(this.init.storage?.snapshotsKept !== undefined ? { keep: this.init.storage.snapshotsKept } : {})
    })
    await this.volumes.start(this.mesh.libp2p, this.snapshots)
    this.volumes.registerMetrics(this.metrics.registry)
    await serveRestoreProtocol(this.mesh.libp2p, { view: this.mesh.view, replicas: this.replicas, volumes: () => this.volumes.manager }, {
      gate: new OperatorGate({ trusted: this.trusted, claimants: (cell) => claimantsOn(this, cell), ...(this.init.clock !== undefined ? { clock: this.init.clock } : {}) })
    })
    await serveIntrospection(this, { stats: this.introspection, ...(this.init.clock !== undefined ? { clock: this.init.clock } : {}) })
    // A trusted release seen in the fleet is fetched, verified and unpacked before the loop may use it.
    this.mesh.view.addEventListener('change', (evt) => {
      const change = (evt as CustomEvent<{ kind: string, cell?: string }>).detail
      if ((change.kind === 'release' || change.kind === 'desired' || change.kind === 'retire') && change.cell != null) {
        if (change.kind !== 'retire') this.onRelease(change.cell, change.kind)
        // Persist the record and its replay floor soon (coalesced): a restart must neither reopen
        // replays nor forget the cell.
        for (const authority of this.mesh.view.claimants(change.cell)) {
          const kind = change.kind as IntentRecordKind
          const signed = intentRecordOf(this.mesh.view, kind, authority, change.cell)
          if (signed !== undefined) this.intent.putRecord(kind, `${authority} ${change.cell}`, signed)
          if (signed !== undefined && kind === 'release') this.rememberPrepared(authority, change.cell, signed)
        }
        this.scheduleIntentFlush()
      }
    })
    // Ports of this run, for the next one: other nodes' bootstrap addresses stay valid.
    this.intent.setListen(listeningPorts(this.addresses()))
    this.scheduleIntentFlush()
    const startedMs = Date.now()
    await this.restoreIntent()
    // Snapshot records of the last run, once the releases that say who claims a cell are back: a
    // whole fleet started again knows its claims' snapshots before any replica asks for a claim.
    await this.snapshots.restoreRecords()
    this.reconcileReleases()
    void this.sweepArtifacts(startedMs)
    this.reconcileTimer = setInterval(() => { this.reconcileReleases() }, this.init.tickMs ?? 1000)
    this.replicas.startSampling(this.init.heartbeatMs ?? 1000)
    this.loop.start()
    this.selfGrants?.start()
    this.grantWatch?.start()
    log('full node %s started', this.peerId)
  }

  /**
   * A grant file made this node trust `authority` while it ran: until now its view dropped that
   * authority's releases and the records of the nodes it grants, and anti-entropy picks its peers
   * among full nodes the view holds, so pull the whole view from connected peers now (the node's new
   * grant admits the pull) instead of waiting for gossip that already went by.
   */
  async catchUpWith (authority: string): Promise<void> {
    for (const peer of this.mesh.libp2p.getPeers().slice(0, 4)) {
      if (!this.started) return
      try {
        const pulled = await this.mesh.libp2p.services.fleetSync.pull(peer, { signal: AbortSignal.timeout(10_000) })
        this.trustCatchUps.pulls++
        this.trustCatchUps.accepted += pulled.accepted
        log('pulled %d records from %p after trusting %s', pulled.accepted, peer, authority)
        if (pulled.publicOnly === undefined) return
      } catch (err) {
        log('pull from %p after trusting %s failed: %e', peer, authority, err)
      }
    }
  }

  private onRelease (cell: string, kind: string): void {
    this.prepareRecord(cell, kind === 'desired' ? this.mesh.view.desired(cell) : this.mesh.view.release(cell))
  }

  /**
   * When the newest release of `cell` is halted (here, or by a node in view), the release before it
   * that is not halted is prepared too: the loop falls back to it, so a node that joined after the
   * halt can host it (the view keeps the last releases of each cell for this).
   */
  private prepareFallback (cell: string): void {
    const [newest, ...older] = this.mesh.view.releases(cell)
    if (newest === undefined) return
    const halted = new Set([...this.loop.halted.values()].map(h => h.digest))
    for (const h of haltRecordsOf(this.mesh.view.nodes(), cell)) halted.add(h.digest)
    if (!halted.has(newest.digest)) return
    this.prepareRecord(cell, older.find(r => !halted.has(r.digest)))
  }

  private prepareRecord (cell: string, record: { cell: string, version: string, digest: string, authority: string, seq: number, signed: Uint8Array } | undefined): void {
    if (record == null || !this.trusted.has(record.authority)) return
    if (this.releases.byDigest(cell, record.digest) != null) return
    const retry = this.retries.get(record.digest)
    const now = Date.now()
    if (retry != null && now < retry.atMs) return
    if (this.preparing.has(record.digest) || this.preparing.size >= 256) return
    this.retries.delete(record.digest)
    this.preparing.add(record.digest)
    void this.releases.prepare(this.mesh.libp2p, record).finally(() => this.preparing.delete(record.digest)).catch((err) => {
      // A provider may appear later (or the DHT was slow): try again with backoff, bounded.
      // The first retry comes soon: a node that heard of the release at the same moment as this one
      // (and was asked first) usually holds the artifact a few hundred ms later. Then 2, 4, 8 … s:
      // the report calls a release failed after FAILED_AFTER_ATTEMPTS, which stays seconds away.
      const failures = (retry?.failures ?? 0) + 1
      const delayMs = failures === 1 ? 250 : Math.min(30_000, 500 * 2 ** failures)
      if (this.retries.size < 256) {
        this.retries.set(record.digest, { failures, atMs: Date.now() + delayMs, cell, version: record.version, error: `${(err as Error).name}: ${(err as Error).message}` })
        // Sooner than the reconcile tick would come round to it; later ones are the tick's.
        if (this.started && delayMs < (this.init.tickMs ?? 1000) && !this.retryTimers.has(record.digest)) {
          this.retryTimers.set(record.digest, setTimeout(() => {
            this.retryTimers.delete(record.digest)
            // What the view holds for the cell now (a newer release may have come meanwhile).
            if (this.started) this.reconcileCell(cell)
          }, delayMs))
        }
      }
      // A first failure is routine (the publisher's provider record still settling) and is retried:
      // not an error on the operator's screen; from the second attempt on it is.
      ;(failures > 1 ? log.error : log)('release %s@%s not prepared (attempt %d, retrying): %s: %s', cell, record.version, failures, (err as Error).name, (err as Error).message)
    })
  }

  /** For the node record: whether the newest releases of trusted cells are prepared here, or why not. */
  preparedReleases (): ReturnType<typeof preparedReleases> {
    return preparedReleases({
      view: this.mesh.view,
      trusted: this.trusted,
      isPrepared: (cell, digest) => this.releases.byDigest(cell, digest) != null,
      failure: (digest) => this.retries.get(digest)
    })
  }

  /** Every tick: releases the view holds that are not prepared yet get another try. */
  private reconcileReleases (): void {
    for (const cell of this.mesh.view.cells()) this.reconcileCell(cell)
    this.rememberHaltsAndPeers()
  }

  /** One cell's target releases (newest, desired, the fallback past a halt) prepared if they are not. */
  private reconcileCell (cell: string): void {
    this.onRelease(cell, 'release')
    this.onRelease(cell, 'desired')
    this.prepareFallback(cell)
  }

  /**
   * The signed records and halts of the last run go through the fleet view's verification again (an
   * untrusted, broken or superseded one is dropped and logged, never fatal); the release store then
   * prepares the accepted ones from the artifacts on disk (digest checked again) and the autonomic
   * loop starts replicas at the target version with no publish.
   */
  private async restoreIntent (): Promise<void> {
    let accepted = 0
    const dropped: string[] = []
    for (const kind of INTENT_RECORD_KINDS) {
      for (const { key, signed } of this.intent.records(kind)) {
        const result = await this.mesh.view.apply({ kind, signed }, { from: this.peerId }).catch((err: Error) => ({ accepted: false as const, reason: err.name }))
        if (result.accepted || result.reason === 'duplicate') { accepted++; continue }
        // Dropped (untrusted, broken, superseded): not kept for the next start either.
        this.intent.forget(kind, key)
        dropped.push(`${kind} ${key.slice(0, 12)}…${key.slice(key.indexOf(' '))}: ${result.reason}`)
      }
    }
    // Older releases the view no longer holds go to the release store (verified against the trusted
    // authorities first): the previous release of a halted one must be known after a restart.
    for (const { key, signed } of this.intent.records('prepared')) {
      try {
        const r = await verifySignedRecord(signed, { kind: 'release', trusted: this.trusted })
        if (this.mesh.view.releaseOf(r.authority, r.cell)?.digest === r.digest) continue
        void this.releases.prepare(this.mesh.libp2p, { cell: r.cell, version: r.version, digest: r.digest, authority: r.authority, seq: r.seq, signed })
          .catch((err: Error) => { log.error('remembered release %s@%s not prepared: %s: %s', r.cell, r.version, err.name, err.message) })
        accepted++
      } catch (err) {
        this.intent.forget('prepared', key)
        dropped.push(`prepared ${key.slice(0, 12)}…: ${(err as Error).name}`)
      }
    }
    if (dropped.length > 0) log.error('dropped %d remembered record(s): %s', dropped.length, dropped.slice(0, 8).join('; '))
    const halts = this.intent.halts()
    this.loop.restoreHalts(halts)
    if (accepted > 0 || halts.length > 0) log('restored %d signed record(s) and %d halt(s) from the last run', accepted, halts.length)
  }

  /**
   * Once per start: artifacts and code files of an earlier run that no release this node remembers
   * (its intent file), holds or runs names are deleted (ReleaseStore.sweep).
   */
  private async sweepArtifacts (startedMs: number): Promise<void> {
    const remembered = new Set<string>()
    for (const { key } of this.intent.records('prepared')) remembered.add(key.slice(key.lastIndexOf(' ') + 1))
    for (const cell of this.mesh.view.cells()) {
      for (const authority of this.mesh.view.claimants(cell)) {
        for (const digest of [this.mesh.view.releaseOf(authority, cell)?.digest, this.mesh.view.desiredOf(authority, cell)?.digest]) {
          if (digest !== undefined) remembered.add(digest)
        }
      }
    }
    await this.releases.sweep(digest => remembered.has(digest), startedMs).catch((err: Error) => { log.error('sweeping old artifacts: %s', err.message) })
  }

  /** Halts the loop holds and the full nodes in view (a few, to dial after a restart), persisted when they change. */
  private rememberHaltsAndPeers (): void {
    const halts = this.loop.heldHalts()
    const peers: string[] = []
    for (const n of this.mesh.view.nodes()) {
      if (n.nodeId === this.peerId) continue
      const addr = n.addrs.find(a => a.includes('/tcp/') && !a.includes('/ws') && !a.includes('/p2p-circuit'))
      if (addr !== undefined) peers.push(addr.includes('/p2p/') ? addr : `${addr}/p2p/${n.nodeId}`)
      if (peers.length >= 16) break
    }
    peers.sort()
    const signature = `${halts.map(h => h.digest).join(',')}|${peers.join(',')}`
    if (signature === this.intentSignature) return
    this.intentSignature = signature
    this.intent.setHalts(halts)
    // An empty view (every peer gone) keeps the last known peers: those are what a restart needs.
    if (peers.length > 0) this.intent.setPeers(peers)
    this.scheduleIntentFlush()
  }

  /** Keeps the signed bytes of a release of (authority, cell), the KEPT_RELEASES newest per cell (as the release store does). */
  private rememberPrepared (authority: string, cell: string, signed: Uint8Array): void {
    const digest = this.mesh.view.releaseOf(authority, cell)?.digest
    if (digest === undefined) return
    this.intent.putRecord('prepared', `${authority} ${cell} ${digest}`, signed)
    const kept = this.intent.keys('prepared', `${authority} ${cell} `)
    for (const key of kept.slice(0, Math.max(0, kept.length - KEPT_RELEASES))) this.intent.forget('prepared', key)
  }

  private scheduleIntentFlush (): void {
    this.intentTimer ??= setTimeout(() => { this.intentTimer = undefined; void this.intent.flush() }, 200)
  }

  /**
   * What this node holds and why it does what it does: prepared releases, releases it failed to
   * prepare (with the error and attempts), its replicas, the loop's counters, last reasons and error.
   */
  status (): NodeStatus {
    const cells = new Set([...this.releases.cells(), ...this.mesh.view.cells()])
    return {
      peerId: this.peerId,
      cells: [...cells].sort().map(cell => ({
        cell,
        prepared: this.releases.releases(cell).map(r => r.version),
        gossiped: this.mesh.view.release(cell)?.version,
        replicas: this.replicas.list(cell).map(r => `${r.version}:${r.state}`),
        reasons: this.loop.lastReasons.get(cell) ?? []
      })),
      unprepared: [...this.retries.values()].map(r => ({ cell: r.cell, version: r.version, attempts: r.failures, error: r.error })),
      peers: this.mesh.libp2p.getPeers().length,
      counters: { ...this.loop.counters },
      halted: [...this.loop.halted.keys()],
      // Cells retired by `cell retire` (this node hosts none of them until a later publish).
      retired: [...this.loop.retired].map(([cell, r]) => ({ cell, authority: r.authority, seq: r.seq })),
      ...(this.loop.lastError !== undefined ? { lastError: this.loop.lastError.message } : {})
    }
  }

  /**
   * A planned stop fails no call that fits in the grace period: every replica turns `draining` at
   * once and a heartbeat says so (callers pick other nodes; a call that still lands here is refused
   * with CapsidDrainingError, which nothing ran, so it is retried elsewhere); calls in flight get up to
   * `drainGraceMs`; a last heartbeat says the replicas stopped; only then does the mesh (connections,
   * gossip) stop. Aborting `signal` (a second Ctrl-C) stops the replicas at once.
   */
  /**
   * Drains the replicas and leaves the fleet. `handoverSafeMs`: how long a stateful replica's final
   * snapshot may wait to be pinned by two other nodes before its claim is released (default 30 s; 0
   * when the whole fleet stops at once and no node is left to pin it).
   */
  async stop (options: { signal?: AbortSignal, handoverSafeMs?: number, onStep?: (step: string) => void } = {}): Promise<void> {
    if (!this.started) {
      // Made but never started (or its start failed before joining): what open() made goes too.
      await this.runDir?.remove().catch((err: unknown) => { log('removing the run dir: %e', err) })
      await this.tracer?.shutdown().catch((err: unknown) => { log('trace export at stop: %e', err) })
      await this.lock?.release()
      return
    }
    this.started = false
    this.leaving = true
    if (options.handoverSafeMs !== undefined) this.volumes.manager?.setHandoverSafeMs(options.handoverSafeMs)
    this.loop.stop()
    this.selfGrants?.stop()
    this.grantWatch?.stop()
    clearInterval(this.reconcileTimer)
    for (const timer of this.retryTimers.values()) clearTimeout(timer)
    this.retryTimers.clear()
    this.rememberHaltsAndPeers()
    const stopping = this.replicas.stopAll({ ...(this.init.drainGraceMs !== undefined ? { graceMs: this.init.drainGraceMs } : {}), ...(options.signal !== undefined ? { signal: options.signal } : {}) })
    const heartbeat = async (): Promise<void> => { await this.mesh.gossip.tick().catch((err) => { log('heartbeat while stopping: %e', err) }) }
    const step = (what: string): void => {
      try { options.onStep?.(what) } catch (err) { log('stop step hook: %e', err) }
    }
    await heartbeat()
    await stopping
    step('replicas stopped')
    await this.runDir?.remove().catch((err: unknown) => { log('removing the run dir: %e', err) })
    this.replicas.stopSampling()
    await this.snapshots?.stop()
    await this.volumes.stop()
    if (this.volumes.manager !== undefined) step('volumes closed')
    await heartbeat()
    await this.mesh.stop(options.signal !== undefined ? { signal: options.signal } : {})
    step('left the mesh')
    clearTimeout(this.intentTimer)
    this.intentTimer = undefined
    await this.intent.flush()
    await this.metricsServer?.close()
    this.metricsServer = undefined
    // Last spans out, bounded by the exporter's timeout; a receiver that is down only counts failures.
    await this.tracer?.shutdown().catch((err: unknown) => { log('trace export at stop: %e', err) })
    await this.lock?.release()
  }
}

/** What FullNode.open has made before the run dir: identity, trust, grants, intent, the exporter. */
interface OpenedParts {
  clock: Clock
  random: Random
  peerKey: Awaited<ReturnType<typeof loadOrCreatePeerKey>>
  credentials: Credentials
  trusted: Set<string>
  now: number
  selfGrants: SelfGrants
  grantWatch: GrantWatch
  intent: FleetIntent
  tracer: OtelTracerAdapter | undefined
  runDir: RunDir
}

/** The signed bytes of a record kind the intent store keeps, as the fleet view holds it for (authority, cell). */
function intentRecordOf (view: FleetView, kind: IntentRecordKind, authority: string, cell: string): Uint8Array | undefined {
  switch (kind) {
    case 'release': return view.releaseOf(authority, cell)?.signed
    case 'desired': return view.desiredOf(authority, cell)?.signed
    case 'retire': return view.retiredOf(authority, cell)?.signed
  }
}

