// Composes libp2p with Cell's services from what a host hands in: transports, keys, credentials,
// trust, a clock and a random source. Full nodes add a synapse handler (their capsids); light peers
// and routing nodes only call out. No module-level state: every mesh owns its registries and caches.
import { createLibp2p, type Libp2p } from 'libp2p'
import { noise, type ICryptoInterface } from '@chainsafe/libp2p-noise'
import { coalescedWrites } from './coalesced-writes.ts'
import { CompactMemoryDatastore, type DatastoreStats } from './compact-datastore.ts'
import type { Datastore } from 'interface-datastore'
import { lazyWindowUpdates } from './lazy-window-updates.ts'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify, type Identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import type { GossipSub } from '@libp2p/gossipsub'
import { gossipsubStoppingCleanly } from './gossipsub-stop.ts'
import { bootstrap as bootstrapDiscovery } from '@libp2p/bootstrap'
import { logger } from '@libp2p/logger'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { AbortOptions, Ed25519PrivateKey, PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { Libp2pOptions } from 'libp2p'
import { systemClock, systemRandom, type Clock, type Random } from '../ports.ts'
import { type Credentials, verifySignedRecord, verifySignedRetire } from '../identity/index.ts'
import * as identityErrors from '../identity/errors.ts'
import { fleetScoreParams, FLEET_GOSSIPSUB_OPTIONS, FLEET_SCORE_THRESHOLDS, GuestScoring } from '../fleet/gossip-score.ts'
import { FailureDetector } from '../fleet/failure-detector.ts'
import { PER_CELL_DEFAULTS } from '../fleet/gossip.ts'
import { PER_CELL_ANTI_ENTROPY_MS } from '../fleet/sync.ts'
import { FleetView, FleetGossip, fleetSync, type FleetSync, type FleetSyncPullOptions, type FleetSyncResult, type LocalNodeState, type LocalInstanceState, type InstanceRecord, type SequenceFloor, type Dissemination } from '../fleet/index.ts'
import { synapse, type Synapse, type SynapseHandler, type SynapseComponents, type Channel, ChannelExpiredError, WireErrorRegistry, SYNAPSE_ERROR_CLASSES, type WireErrorClass } from '../synapse/index.ts'
import type { Principal } from '../synapse/types.ts'
import { chooseFrom, chooseReplica, prepareChoice, type PreparedChoice } from '../routing/index.ts'
import type { CallOptions, Remote } from '../cell.ts'
import { NoReplicaError, UnknownCellError, MeshNotStartedError, CellNameConflictError, ReplicaCrashedError, StaleEpochAnswerError, MESH_ERROR_CLASSES } from './errors.ts'
import { mayRetry } from './retry.ts'
import { encodeJson, decodeJson } from './json.ts'
import { callerAuthenticator, serverAuthenticator } from './handshake-auth.ts'
import { guardInbound, INBOUND_UPGRADES_TOTAL, LIBP2P_PENDING_HEADROOM, type InboundFailureHook } from './inbound-failures.ts'
import { GUEST_CONNECTIONS, GuestAdmission, MEMBER_RESERVE, vouchingCallers, type GuestLimits, type GuestRefusal } from './guest-connections.ts'
import { hostGrantCheck, hostGrantPolicy, type HostGrantCheck } from './host-grant-policy.ts'
import { PeerKeeper, type PeerKeeperInit } from './peer-keeper.ts'
import { traced, type Tracer } from '../telemetry/tracer.ts'
import { cellErrorClasses, rebuildCellError, type CellErrors } from './cell-errors.ts'
import { ClaimEpochs } from './claim-epochs.ts'

export const KAD_PROTOCOL = '/cell/kad/1.0.0'

export interface MeshInit {
  privateKey: Ed25519PrivateKey
  /** libp2p transport factories for this host (tcp, websockets, webrtc-direct, ...). */
  transports: NonNullable<Libp2pOptions['transports']>
  /** Told of every inbound connection that failed to upgrade (garbage, half handshakes), per transport. */
  onInboundFailure?: InboundFailureHook
  /** Inbound connections one remote host may have in their upgrade at once (default 8, core/mesh/inbound-failures.ts). */
  inboundUpgradesPerHost?: number
  /** Established inbound connections of non-members per remote host and in all (default 32 and 256, core/mesh/guest-connections.ts). */
  guestConnections?: Partial<GuestLimits>
  /** Told each guest connection closed to keep those limits. */
  onGuestClosed?: (reason: GuestRefusal, host: string, peerId: string) => void
  listen?: string[]
  /** Multiaddrs (with /p2p/ ids) of peers to join through. */
  bootstrap?: string[]
  /** Browsers and short-lived CLI peers run the DHT in client mode. */
  dhtClientMode?: boolean
  /** Routing nodes (edge-host) run without the DHT: bootstrap from config, fleet from gossip. Default true. */
  dht?: boolean
  credentials: Credentials
  /** Authority ids this peer accepts as chain roots and as release signers. Read live. */
  trusted: Set<string>
  /** Server side: authorities whose callers may call `cell` (default: `trusted`). */
  callerTrust?: (cell: string) => ReadonlySet<string>
  /** Whether `cell` admits any authenticated peer (Cell.toml `public = true`). */
  isPublic?: (cell: string) => boolean
  handler?: SynapseHandler
  /** The canary weight (%) of a cell's newest release, from its Cell.toml when the host has it. */
  canaryWeightOf?: (cell: string) => number | undefined
  localNode?: () => LocalNodeState | undefined
  localInstances?: () => LocalInstanceState[]
  heartbeatMs?: number
  /**
   * How fleet records travel (docs/biology.md "Scale"): 'fleet' (default) gossips every node's
   * record and replicas on one topic every heartbeat; 'per-cell' gossips compact member records
   * on change, each cell's replicas on the cell's own topic, and finds dead nodes with a failure
   * detector. Every node and client of one fleet must use the same.
   */
  dissemination?: Dissemination
  /** Per-cell: which cells with a release to follow automatically (default all; full nodes: hosted and standby-candidate cells). */
  followPolicy?: (cell: string) => boolean
  /** Highest release / desired seq per (authority, cell) the host remembers across restarts. */
  sequenceFloors?: { release: SequenceFloor, desired: SequenceFloor, retire?: SequenceFloor }
  defaultTimeoutMs?: number
  /**
   * At stop(): how long calls this peer is answering may still take (after GOAWAY told their callers
   * which were read) before its connections are cut. Default 5 000.
   */
  stopGraceMs?: number
  clock?: Clock
  random?: Random
  /** Calls made through this mesh run in a client span whose traceparent travels in the CALL frame. */
  tracer?: Tracer
  /** Extra error classes callers should rebuild by name (cells' own errors, capsid errors). */
  errorClasses?: WireErrorClass[]
  /** Extra libp2p services from the host (e.g. a relay server). */
  services?: Record<string, (components: any) => unknown>
  /** Extra libp2p options (connection gater, manager limits) from the host. */
  libp2p?: Partial<Libp2pOptions>
  /** Noise's crypto from the host (node-host/noise-crypto.ts); absent: Noise's default. */
  noiseCrypto?: ICryptoInterface
  /**
   * Full nodes: keep connections to this many fleet peers (bootstrap peers and full nodes of the
   * view), re-dialing lost ones with backoff (core/mesh/peer-keeper.ts). Absent: no keeper.
   */
  keeper?: Pick<PeerKeeperInit, 'keep' | 'checkMs' | 'minBackoffMs' | 'maxBackoffMs' | 'dialTimeoutMs'>
  /** Anti-entropy: pull the fleet from one random connected full node this often (jittered); 0 disables (default 30 s). */
  antiEntropyMs?: number
  /** How long @libp2p/bootstrap's priority tag lasts on bootstrap peers (its default: 2 minutes). */
  bootstrapTagTtlMs?: number
}

export interface MeshServices {
  identify: Identify
  ping: unknown
  /** Absent on a mesh created with `dht: false`. */
  dht?: KadDHT
  pubsub: GossipSub
  fleetSync: FleetSync
  synapse: Synapse
  [name: string]: unknown
}

/** Per-call options of the mesh beyond the typed client's. */
export interface MeshCallOptions extends CallOptions {
  idempotent?: string[]
  canaryWeight?: number
  /** Told which replica's node answered (dashboards attribute calls to releases with it). */
  onAnswer?: (replica: InstanceRecord) => void
}

export interface RemoteOptions {
  /** Methods the caller knows to be idempotent (in addition to what the replicas announce). */
  idempotent?: string[]
  timeoutMs?: number
  /**
   * The cell's own error classes (`{ NotFoundError }`, or a list): failures it threw with their
   * names come back as these classes instead of RemoteError (core/mesh/cell-errors.ts).
   */
  errors?: CellErrors
  /** Methods that return a stream (async generators): they resolve to an AsyncIterable of the items (see Mesh.stream). */
  streams?: string[]
}

const MAX_ATTEMPTS = 6
/**
 * A call with no usable replica waits for the view to change (a cell between replicas: a restart, a
 * rollout, a replica starting) until its deadline. Each wait ends at a change of the view, at most
 * 3 heartbeats later, and no sooner than MIN_VIEW_WAIT_MS: a busy view changes many times a second
 * (every node's heartbeat), and a cap on the number of waits (once 20) let a call fail with
 * NoReplicaError a second or two into a 15 s deadline while the next replica was starting. The
 * count below only bounds the work one call can cause (20 route checks a second at most).
 */
const MAX_VIEW_WAITS = 2_000
const MIN_VIEW_WAIT_MS = 50
/** Cell.toml's default canary_weight (core/manifest DEFAULTS), for callers that lack the manifest. */
const DEFAULT_CANARY_WEIGHT = 5
const MAX_CACHED_CHANNELS = 256
/** MeshInit.stopGraceMs' default. */
const DEFAULT_STOP_GRACE_MS = 5_000
/**
 * A cell's routing facts (its ready replicas, prepared for the choice, and its claimants) are kept
 * at most this long: records age out of the view silently (no change event until the view's next
 * expiry pass), so a kept route is recomputed at least this often. Any change of the cell's
 * records in the view drops it at once.
 */
const ROUTE_TTL_MS = 100
/** Most cells whose routes are kept (a caller calling more cells recomputes the rest per call). */
const MAX_ROUTES = 1024

/** A full node's addresses other full nodes dial: TCP before WebSockets; WebRTC-direct and relayed ones are for browsers. */
function dialable (n: { nodeId: string, addrs: readonly string[] }): string[] {
  const rank = (a: string): number => a.includes('/ws') ? 1 : 0
  return n.addrs.filter(a => a.includes('/tcp/') && !a.includes('/p2p-circuit') && !a.includes('/webrtc'))
    .sort((a, b) => rank(a) - rank(b))
    .map(a => a.includes('/p2p/') ? a : `${a}/p2p/${n.nodeId}`)
}
/**
 * Per-cell: the node to pull `cell`'s records from. The member records say who hosts it (only a
 * follower holds its instances): a connected host first, else any host (dialed from its record),
 * else any connected full node.
 */
export function cellSource (view: Pick<FleetView, 'hostsOf' | 'node'>, libp2p: Pick<Libp2p, 'getPeers' | 'peerId'>, random: Random, cell: string): string | undefined {
  const self = libp2p.peerId.toString()
  const connected = new Set(libp2p.getPeers().map(p => p.toString()))
  const hosts = view.hostsOf(cell).filter(id => id !== self)
  const near = hosts.filter(id => connected.has(id))
  const pool = near.length > 0 ? near : hosts.length > 0 ? hosts : [...connected].filter(id => view.node(id)?.roles.includes('full') === true)
  return pool[Math.floor(random.next() * pool.length)]
}

/** Per-cell: a calling full node's sample of a cell it does not follow (docs/biology.md "Scale"). */
const CALLER_SAMPLE = 16
const SAMPLE_REFRESH_MS = 10_000
/** After a call found no replica left to try, the sample is pulled again, at most this often. */
const SAMPLE_MIN_GAP_MS = 1_000
const SAMPLE_TIMEOUT_MS = 5_000

/** A ready replica as routing sees it: the view's record, its routing fields and its channel's key. */
type RouteCandidate = InstanceRecord & { id: string, inFlight: number | undefined, channelKey: string, record: InstanceRecord }

/** What a call to a cell needs of the view, computed once per change of the cell's records (see ROUTE_TTL_MS). */
interface Route {
  untilMs: number
  /** Trusted authorities claiming the cell's name (more than one: a conflict, calls refused). */
  claimants: number
  /** this.replicas(cell), as routing candidates. */
  candidates: RouteCandidate[]
  /** The candidates split for the choice (undefined: none ready). */
  prepared: PreparedChoice<RouteCandidate> | undefined
  /** The authority of the cell's release (credentialsFor asks it on every call, through the channel's currency check). */
  authority: string | undefined
}

const log = logger('cell:mesh')

/** Whether this node has an open connection to `peerId`. */
function hasOpenConnection (libp2p: Pick<Libp2p, 'getConnections'>, peerId: string): boolean {
  return libp2p.getConnections(peerIdFromString(peerId)).some(c => c.status === 'open')
}

export class Mesh {
  readonly libp2p: Libp2p<MeshServices>
  /** libp2p's datastore (kad-dht provider records and values, the peer store), for inspection. */
  datastore!: Datastore
  /** Gossip scores of members and guests: the anonymous guests holding mesh places (core/fleet/gossip-score.ts). */
  readonly guestScoring: GuestScoring
  readonly view: FleetView
  readonly gossip: FleetGossip
  readonly clock: Clock
  readonly random: Random
  readonly errors: WireErrorRegistry
  /** Does a node gossip a valid host grant from an authority? One verified-grant cache for the view and the host. */
  readonly hostGrant: HostGrantCheck
  private readonly init: MeshInit
  /** Keeps this node connected to its fleet peers (full nodes only; see MeshInit.keeper). */
  readonly keeper: PeerKeeper | undefined
  /** Keeps non-members' inbound connections within MeshInit.guestConnections. */
  readonly guests: GuestAdmission
  /** Per-cell dissemination on a full node: reports fleet peers it lost and cannot redial. */
  readonly detector: FailureDetector | undefined
  private readonly channels = new Map<string, Promise<Channel>>()
  /** The same channels once open, for calls that find theirs without waiting on a promise. */
  private readonly openChannels = new Map<string, Channel>()
  /** Per cell, what calls need of the view (see Route); dropped when the cell's records change. */
  private readonly routes = new Map<string, Route>()
  private readonly onViewChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, cell?: string }>).detail
    // Node, member and down records do not decide which replicas are ready or who claims a cell (a
    // node found down also expires each of its instances, with their cells).
    if (change.kind === 'node' || change.kind === 'member' || change.kind === 'down') return
    if (change.cell !== undefined) this.routes.delete(change.cell)
    else this.routes.clear()
  }
  /** Per-cell: when a calling full node last pulled a sample of each cell it does not follow (bounded by MAX_ROUTES). */
  private readonly samples = new Map<string, { atMs: number, pulling: boolean }>()
  /** Per-cell: samples pulled for calls, and pulls that failed. */
  readonly counters = { samplePulls: 0, samplePullFailures: 0 }
  /** The highest epoch seen of each stateful claim: fenced replicas are neither called nor believed. */
  private readonly claims = new ClaimEpochs()
  private started = false
  /** What the mesh's owner asked to stop with it (a client's grant renewer). */
  private readonly stopHooks: Array<() => void> = []
  private readonly onNodeSeen = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, op: string, nodeId?: string }>).detail
    // A peer may connect before its node record arrives: count it as a fleet peer once it does.
    if (change.kind === 'node' && change.op === 'upsert') this.keeper?.refresh()
  }

  static async create (init: MeshInit): Promise<Mesh> {
    const clock = init.clock ?? systemClock
    const trusted = init.trusted
    const verifyRecord = (kind: 'release' | 'desired') => async (signed: Uint8Array, opts: { signal?: AbortSignal }) =>
      await verifySignedRecord(signed, { ...opts, kind, trusted })
    let viewRef: FleetView | undefined
    const hostGrant = hostGrantCheck(clock)
    const perCell = init.dissemination === 'per-cell'
    const view = new FleetView({
      clock,
      isTrusted: hostGrantPolicy(() => viewRef!, hostGrant, trusted),
      heartbeatMs: init.heartbeatMs ?? 1000,
      // Per-cell: a node lives 3 × the member refresh (6 h) past its newest record unless found down.
      ...(perCell ? { liveness: 'members' as const, memberTtlMs: PER_CELL_DEFAULTS.memberTtlMs } : {}),
      ...(init.sequenceFloors !== undefined ? { sequenceFloors: init.sequenceFloors } : {}),
      verifyRelease: verifyRecord('release'),
      verifyDesired: verifyRecord('desired'),
      // Retire records (`cell retire`) are checked against the same trusted authorities.
      verifyRetire: async (signed, opts) => await verifySignedRetire(signed, { ...opts, trusted })
    })
    viewRef = view
    const errors = new WireErrorRegistry([
      ...SYNAPSE_ERROR_CLASSES,
      ...(Object.values(identityErrors) as unknown[]).filter((v): v is WireErrorClass => typeof v === 'function'),
      ...MESH_ERROR_CLASSES,
      ...(init.errorClasses ?? [])
    ])
    let mesh: Mesh | undefined
    const synapseFactory = synapse({
      clock,
      errors,
      handler: init.handler,
      defaultTimeoutMs: init.defaultTimeoutMs,
      credentialsFor: (cell) => mesh!.credentialsFor(cell),
      authenticate: vouchingCallers(callerAuthenticator({ trusted, clock, ...(init.callerTrust !== undefined ? { callerTrust: init.callerTrust } : {}), ...(init.isPublic !== undefined ? { isPublic: init.isPublic } : {}) }), (peerId, untilMs) => { mesh?.guests.vouch(peerId, untilMs) }),
      authenticateServer: serverAuthenticator({ trusted, clock, releaseAuthority: (cell) => mesh!.view.release(cell)?.authority })
    })
    // Gossip scores come from the mesh's GuestScoring (built with it; gossipsub scores only once started).
    const scoring = { appScore: (peer: string): number => mesh?.guestScoring.appScore(peer) ?? 0 }
    // Provider and value records other peers may store here are bounded; a fleet node's (a signed,
    // granted node record in the view) are kept before an outsider's (compact-datastore.ts).
    const datastore = new CompactMemoryDatastore({ selfId: peerIdFromPrivateKey(init.privateKey).toString(), isMember: (peer) => view.node(peer) !== undefined })
    const libp2p = await createLibp2p<MeshServices>({
      privateKey: init.privateKey,
      addresses: { listen: init.listen ?? [] },
      transports: guardInbound(init.transports, { ...(init.onInboundFailure !== undefined ? { onFailure: init.onInboundFailure } : {}), ...(init.inboundUpgradesPerHost !== undefined ? { perHost: init.inboundUpgradesPerHost } : {}) }),
      connectionEncrypters: [coalescedWrites(noise(init.noiseCrypto !== undefined ? { crypto: init.noiseCrypto } : {}))],
      streamMuxers: [lazyWindowUpdates(yamux())],
      peerDiscovery: (init.bootstrap?.length ?? 0) > 0 ? [bootstrapDiscovery({ list: init.bootstrap!, timeout: 0, ...(init.bootstrapTagTtlMs !== undefined ? { tagTTL: init.bootstrapTagTtlMs } : {}) })] : [],
      // Provider records and the peer store keep compact copies (a pooled 6-byte view pinned 64 KiB).
      datastore,
      ...init.libp2p,
      // One host holds at most inboundUpgradesPerHost of these and all at most 64 (guardInbound, which also gives a stalled
      // upgrade's slot to a newer connection); libp2p's own cap sits a little above, so the guard decides.
      // Guests (non-members) keep at most their budget of established connections (GuestAdmission):
      // the MEMBER_RESERVE above it is room only fleet members can take.
      connectionManager: { maxIncomingPendingConnections: INBOUND_UPGRADES_TOTAL + LIBP2P_PENDING_HEADROOM, maxConnections: (init.guestConnections?.total ?? GUEST_CONNECTIONS.total) + MEMBER_RESERVE, ...init.libp2p?.connectionManager },
      services: {
        identify: identify(),
        // libp2p's connection monitor pings every connection on the same protocol and aborts the
        // connection when its ping fails: with ping's default of one outbound stream, a user's ping
        // (or a second monitor round) colliding with it failed one of them, and could cut a link.
        ping: ping({ maxOutboundStreams: 4, maxInboundStreams: 8 }),
        ...(init.dht === false ? {} : { dht: kadDHT({ protocol: KAD_PROTOCOL, clientMode: init.dhtClientMode ?? false, peerInfoMapper: passthroughMapper }) }),
        // No IP colocation penalty (fleetScoreParams): gossipsub's default (-5 × (peers from one IP − 10)²) counts every
        // peer ever seen from an address for an hour (scores of departed peers are retained), so on
        // one machine, behind a NAT or in containers a dozen `cell call`s pushed every fleet peer
        // past the graylist threshold and gossip stopped in silence: the issue 8 split. Who may
        // speak in the fleet is decided by signed records and grants, not by addresses.
        // Peer scoring of the fleet topics (core/fleet/gossip-score.ts): a peer whose records the
        // view keeps rejecting is graylisted and pruned; members are kept before guests, and guests
        // past a few places stay out of the meshes (they still get gossip).
        pubsub: gossipsubStoppingCleanly({ ...FLEET_GOSSIPSUB_OPTIONS, globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, emitSelf: false, scoreParams: fleetScoreParams(scoring), scoreThresholds: FLEET_SCORE_THRESHOLDS }),
        // Fleet snapshots (and, through its gate, artifacts) only for peers holding a grant we trust.
        fleetSync: fleetSync({
          view, clock, autoPull: 2, trusted, credentials: init.credentials,
          // A peer that proved a trusted grant (a node joining before its record arrives) is vouched for as a guest.
          onGrantAdmitted: (peer, verified) => { mesh?.guests.vouch(peer, verified.notAfterMs) },
          ...(init.isPublic !== undefined ? { publicCells: init.isPublic } : {}),
          // Anti-entropy from full nodes only: a tab or a CLI client may hold a partial view.
          random: init.random ?? systemRandom, antiEntropyMs: init.antiEntropyMs ?? (perCell ? PER_CELL_ANTI_ENTROPY_MS : 30_000), antiEntropyPeer: (id) => view.node(id)?.roles.includes('full') === true,
          // Per-cell: digest rounds (only the buckets of the members layer, the release layer and the followed cells that differ), not the whole view.
          ...(perCell ? { antiEntropyMode: 'digest' as const, antiEntropyCells: (): readonly string[] => gossip.followed() } : {})
        }),
        synapse: (components: SynapseComponents) => synapseFactory(components),
        ...init.services
      } as any,
      start: false
    })
    const gossip = new FleetGossip({
      pubsub: libp2p.services.pubsub,
      view,
      clock,
      privateKey: init.privateKey,
      heartbeatMs: init.heartbeatMs ?? 1000,
      localNode: init.localNode,
      localInstances: init.localInstances,
      ...(perCell
        ? {
            dissemination: 'per-cell' as const,
            ...(init.followPolicy !== undefined ? { followPolicy: init.followPolicy } : {}),
            // A cell this peer starts to follow: its records from one of its hosts (a node that does
            // not follow the cell holds none of its instances), else from a connected full node.
            pullCell: async (cell: string, options: AbortOptions) => {
              const nodeId = cellSource(view, libp2p, init.random ?? systemRandom, cell)
              if (nodeId === undefined) return
              await mesh!.pullFrom(nodeId, { ...options, cells: [cell] })
            },
            // A member record of a node whose full record this view lacks: from the peer that relayed it.
            pullNode: async (nodeId: string, fromPeer: string, options: AbortOptions) => {
              await libp2p.services.fleetSync.pull(peerIdFromString(fromPeer), { ...options, nodes: [nodeId] })
            }
          }
        : {})
    })
    // Per-cell liveness: a full node reports a fleet peer it lost and cannot redial; clients do not.
    const detector = perCell && init.localNode !== undefined
      ? new FailureDetector({
        clock,
        events: libp2p,
        selfId: libp2p.peerId.toString(),
        isConnected: (id) => hasOpenConnection(libp2p, id),
        dial: async (id, options) => await libp2p.dial(peerIdFromString(id), options),
        watched: (id) => {
          const node = view.node(id)
          if (node?.roles.includes('full') !== true) return undefined
          // A down report must name the newest seq this view holds of its subject.
          const about = view.downReportsAbout(id)
          return about === undefined ? undefined : { seq: about.subjectSeq }
        },
        report: async (subject, subjectSeq) => { await gossip.reportDown(subject, subjectSeq) }
      })
      : undefined
    mesh = new Mesh(init, libp2p, view, gossip, errors, hostGrant, detector)
    mesh.datastore = init.libp2p?.datastore ?? datastore
    return mesh
  }

  private constructor (init: MeshInit, libp2p: Libp2p<MeshServices>, view: FleetView, gossip: FleetGossip, errors: WireErrorRegistry, hostGrant: HostGrantCheck, detector?: FailureDetector) {
    this.init = init
    this.detector = detector
    this.hostGrant = hostGrant
    this.libp2p = libp2p
    this.view = view
    this.gossip = gossip
    this.errors = errors
    this.clock = init.clock ?? systemClock
    this.random = init.random ?? systemRandom
    // Per-cell: a full node also stays connected to a few followers of each cell it follows.
    const topicGroups = init.dissemination === 'per-cell' && init.localNode !== undefined ? { topicGroups: () => this.followerGroups() } : {}
    this.guests = new GuestAdmission({
      libp2p,
      isMember: (id) => this.isMember(id),
      now: () => this.clock.now(),
      ...(init.guestConnections !== undefined ? { limits: init.guestConnections } : {}),
      ...(init.onGuestClosed !== undefined ? { onClosed: init.onGuestClosed } : {})
    })
    // Members score above guests in gossip meshes; anonymous guests hold at most a few places there.
    this.guestScoring = new GuestScoring({
      isMember: (id) => this.isMember(id),
      isVouched: (id) => this.guests.isVouched(id),
      isConnected: (id) => hasOpenConnection(libp2p, id),
      now: () => this.clock.now()
    })
    this.keeper = init.keeper !== undefined ? new PeerKeeper({ ...init.keeper, ...topicGroups, libp2p, clock: this.clock, random: this.random, candidates: () => this.fleetCandidates(), isFleetPeer: (id) => this.isFleetPeer(id) }) : undefined
  }

  /** Bootstrap peers and full nodes of the view (their records count only with a trusted host grant). */
  private isFleetPeer (peerId: string): boolean {
    return this.view.node(peerId)?.roles.includes('full') === true || this.isBootstrapPeer(peerId)
  }

  /**
   * A fleet member, for guest admission and gossip scoring: a node whose signed, granted record the
   * view holds, or a bootstrap peer (before its record arrives: a node restarting under attack).
   */
  private isMember (peerId: string): boolean {
    return this.view.node(peerId) !== undefined || this.isBootstrapPeer(peerId)
  }

  /** Whether a bootstrap address names this peer. */
  private isBootstrapPeer (peerId: string): boolean {
    return (this.init.bootstrap ?? []).some(a => a.endsWith(`/p2p/${peerId}`))
  }

  /**
   * Per-cell: for each cell this node follows, the dialable addresses of the other nodes hosting it
   * (member records list the cells each node hosts), sorted by id so that followers pick
   * overlapping peers; at most 16 hosts per cell.
   */
  private followerGroups (): string[][] {
    const self = this.peerId.toString()
    const groups: string[][] = []
    for (const cell of this.gossip.followed()) {
      const hosts = this.view.hostsOf(cell).filter(id => id !== self).slice(0, 16)
      const addrs = hosts.flatMap(id => { const n = this.view.node(id); return n === undefined ? [] : dialable(n) })
      if (addrs.length > 0) groups.push(addrs)
    }
    return groups
  }

  /** Dialable addresses of fleet peers: full nodes of the view (shuffled), then bootstrap addresses. */
  private fleetCandidates (): string[] {
    const nodes = this.view.nodes().filter(n => n.roles.includes('full'))
    for (let i = nodes.length - 1; i > 0; i--) {
      const j = Math.floor(this.random.next() * (i + 1))
      ;[nodes[i], nodes[j]] = [nodes[j], nodes[i]]
    }
    return [...nodes.flatMap(n => dialable(n)), ...(this.init.bootstrap ?? [])]
  }

  get peerId (): PeerId {
    return this.libp2p.peerId
  }

  /** What the bounded datastore holds for the DHT and what its bounds dropped (undefined with an embedder's own datastore). */
  dhtStoreStats (): DatastoreStats | undefined {
    return this.datastore instanceof CompactMemoryDatastore ? this.datastore.stats() : undefined
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.init.credentials.refresh()
    this.init.credentials.start()
    this.guests.start()
    await this.libp2p.start()
    this.gossip.start()
    this.detector?.start()
    this.view.addEventListener('change', this.onNodeSeen)
    this.routes.clear()
    this.view.addEventListener('change', this.onViewChange)
    this.keeper?.start()
  }

  /** Runs `fn` when the mesh stops, before it leaves the fleet (for what its owner started beside it). */
  onStop (fn: () => void): void {
    this.stopHooks.push(fn)
  }

  /** Leaves the mesh; aborting `signal` ends the grace for calls this peer is answering (MeshInit.stopGraceMs) at once. */
  async stop (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const fn of this.stopHooks.splice(0)) {
      try { fn() } catch (err) { log('stop hook: %s', (err as Error).message) }
    }
    // Callers hear GOAWAY with the count of their calls this peer read: those are answered (within
    // the grace), the rest they retry elsewhere as never run, before the connections below are cut.
    await this.libp2p.services.synapse.goAway({ graceMs: this.init.stopGraceMs ?? DEFAULT_STOP_GRACE_MS, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
    // First: a stopping node neither re-dials nor reports the peers its own shutdown disconnects.
    this.keeper?.stop()
    this.detector?.stop()
    this.guests.stop()
    this.view.removeEventListener('change', this.onNodeSeen)
    this.view.removeEventListener('change', this.onViewChange)
    this.routes.clear()
    // A mesh whose libp2p already stopped (it died under the node) still stops: gossipsub refuses
    // to unsubscribe once stopped, and there is nothing left to tell the fleet.
    try {
      this.gossip.stop()
    } catch (err) {
      log('gossip stop: %s', (err as Error).message)
    }
    for (const ch of this.channels.values()) void ch.then(c => { c.abort(new MeshNotStartedError('mesh stopped')) }, () => {})
    this.channels.clear()
    this.openChannels.clear()
    // One turn of the event loop first: the unsubscribe above queued writes on the gossip streams,
    // and Chromium's renderer crashes when a WebTransport session is closed in the same task as
    // writes queued on its streams (a tab over WebTransport calling peer.stop()).
    await new Promise<void>((resolve) => { setTimeout(resolve, 0) })
    // Graceful stream closes wait on peers; a stopping peer has nothing left to say, so cut connections.
    for (const conn of this.libp2p.getConnections()) conn.abort(new MeshNotStartedError('mesh stopping'))
    await this.libp2p.stop()
    clearAddressUpdate(this.libp2p)
    this.init.credentials.stop()
  }

  /** The chain this peer presents for `cell`: the grant of the cell's authority if held, else any. */
  credentialsFor (cell: string): Uint8Array {
    const creds = this.init.credentials
    // A kept route is as fresh as the view for this (a new release of the cell drops it).
    const route = this.routes.get(cell)
    const authority = route !== undefined && this.started ? route.authority : this.view.release(cell)?.authority
    if (authority != null && creds.grantFor(authority) != null) return creds.currentChain(authority)
    const any = creds.authorities()[0]
    return any != null ? creds.currentChain(any) : new Uint8Array()
  }

  /**
   * Ready replicas of `cell` this peer knows, newest heartbeat first. A stateful replica whose claim
   * this peer has seen at a higher epoch is not one: it was fenced, and what it writes is lost.
   */
  replicas (cell: string): InstanceRecord[] {
    // Every live replica's epoch counts (a starting new owner fences the old one), then only ready ones.
    return this.claims.current(this.view.liveInstances(cell)).filter(i => i.state === 'ready')
  }

  /** The cell's route, kept while its records do not change (at most ROUTE_TTL_MS). */
  private route (cell: string, now: number = this.clock.now()): Route {
    let route = this.routes.get(cell)
    if (route !== undefined && now < route.untilMs) return route
    const candidates = this.replicas(cell).map((i): RouteCandidate => ({ ...i, id: i.instanceId, inFlight: i.inflight, channelKey: `${i.nodeId}/${cell}/${i.digest}`, record: i }))
    route = { untilMs: now + ROUTE_TTL_MS, claimants: this.view.claimants(cell).length, candidates, prepared: prepareChoice(candidates), authority: this.view.release(cell)?.authority }
    if (!this.routes.has(cell) && this.routes.size >= MAX_ROUTES) this.routes.delete(this.routes.keys().next().value as string)
    this.routes.set(cell, route)
    return route
  }

  /** The highest epoch this peer has seen of claim `<cell>/<ordinal>` (0: none). */
  claimEpoch (cell: string, ordinal: number): number {
    return this.claims.epoch(cell, ordinal)
  }

  /**
   * Before the first dial of a node: the addresses its signed node record gossips go into the peer
   * store, so libp2p dials them at once instead of first asking the DHT where the node is (seconds
   * across hosts). A record naming someone else's addresses gains nothing: Noise checks the peer id.
   */
  /**
   * Pulls records from fleet node `nodeId` through fleet-sync (a filter as FleetSyncPullOptions
   * says), dialing the addresses its signed record names when not connected yet.
   */
  async pullFrom (nodeId: string, options: FleetSyncPullOptions): Promise<FleetSyncResult> {
    const peer = peerIdFromString(nodeId)
    await this.learnAddresses(peer, nodeId)
    return await this.libp2p.services.fleetSync.pull(peer, options)
  }

  private async learnAddresses (peer: PeerId, nodeId: string): Promise<void> {
    if (this.libp2p.getConnections(peer).length > 0) return
    const addrs = this.view.node(nodeId)?.addrs ?? []
    const multiaddrs: Multiaddr[] = []
    for (const a of addrs.slice(0, 16)) { try { multiaddrs.push(multiaddr(a)) } catch {} }
    if (multiaddrs.length === 0) return
    await this.libp2p.peerStore.merge(peer, { multiaddrs }).catch((err: unknown) => { log('peer store: %s', (err as Error).message) })
  }

  /**
   * Channels to `cell` on `nodeId` for releases that node no longer runs ready close once idle: a
   * client living through a release every few minutes would otherwise keep one per release, up to
   * the per-peer channel limit. Run when a channel for another release opens (`except`).
   */
  private closeChannelsOfGoneReleases (nodeId: string, cell: string, except: string): void {
    const prefix = `${nodeId}/${cell}/`
    let running: Set<string> | undefined
    for (const [key, pending] of this.channels) {
      if (key === except || !key.startsWith(prefix)) continue
      running ??= new Set(this.replicas(cell).filter(i => i.nodeId === nodeId).map(i => i.digest))
      if (running.has(key.slice(prefix.length))) continue
      this.channels.delete(key)
      this.openChannels.delete(key)
      void pending.then(ch => { ch.closeWhenIdle() }, () => {})
    }
  }

  /**
   * The channel to `cell` on `nodeId` for calls to its release `digest` (one per release: the node
   * serves each from a replica of that release when it runs one, so the caller's canary split holds
   * on a node running both releases of a rollout).
   */
  private async channel (nodeId: string, cell: string, digest: string, signal?: AbortSignal, reopened = false): Promise<Channel> {
    const key = `${nodeId}/${cell}/${digest}`
    let pending = this.channels.get(key)
    if (pending == null) {
      if (this.channels.size >= MAX_CACHED_CHANNELS) {
        const [oldest, ch] = this.channels.entries().next().value as [string, Promise<Channel>]
        this.channels.delete(oldest)
        this.openChannels.delete(oldest)
        void ch.then(c => c.close().catch(() => {}), () => {})
      }
      this.closeChannelsOfGoneReleases(nodeId, cell, key)
      const peer = peerIdFromString(nodeId)
      await this.learnAddresses(peer, nodeId)
      pending = this.libp2p.services.synapse.open(peer, cell, { signal, release: digest })
      this.channels.set(key, pending)
      const opening = pending
      pending.then(ch => {
        if (this.channels.get(key) === opening) this.openChannels.set(key, ch)
        void ch.closed.then(() => {
          if (this.channels.get(key) === opening) this.channels.delete(key)
          if (this.openChannels.get(key) === ch) this.openChannels.delete(key)
        })
      }, () => { if (this.channels.get(key) === opening) this.channels.delete(key) })
    }
    const ch = await pending
    if (!reopened && !this.libp2p.services.synapse.current(ch)) {
      // This peer's chain rotated since the channel's handshake (or the channel just ended): the
      // server would close it when the old chain expires, so new calls go on a new channel.
      if (this.channels.get(key) === pending) this.channels.delete(key)
      if (this.openChannels.get(key) === ch) this.openChannels.delete(key)
      ch.closeWhenIdle()
      return await this.channel(nodeId, cell, digest, signal, true)
    }
    return ch
  }

  /**
   * Calls `method` on a replica of `cell` with raw bytes. The replica is chosen by canary-weighted,
   * load-aware routing; failures where nothing ran are retried on another node, failures mid-call
   * only when the method is idempotent.
   */
  callBytes (cell: string, method: string, payload: Uint8Array, options: MeshCallOptions = {}): Promise<Uint8Array> { // eslint-disable-line @typescript-eslint/promise-function-async
    // No extra promise reaction unless the call is sampled: answers batch as they do untraced.
    const tracer = this.init.tracer
    if (tracer === undefined) return this.callUntraced(cell, method, payload, options, options.traceparent)
    // The span's name and options are built once per (cell, method) in a row, not per call: an
    // unsampled call (99 % at the default ratio) allocates nothing for its span.
    let span = this.lastSpan
    if (span === undefined || span.cell !== cell || span.method !== method) {
      span = { cell, method, name: `${cell}/${method}`, options: { kind: 'client', attributes: { 'rpc.system': 'cell', 'rpc.service': cell, 'rpc.method': method } } }
      this.lastSpan = span
    }
    return traced(tracer, span.name, options.traceparent !== undefined ? { ...span.options, parent: options.traceparent } : span.options,
      // eslint-disable-next-line @typescript-eslint/promise-function-async
      (traceparent) => this.callUntraced(cell, method, payload, options, traceparent))
  }

  /** Per-cell: what a call needs to find replicas of a cell this peer may not follow. */
  private perCellReplicas (cell: string, none: boolean, attempt: number): void {
    if (this.init.localNode === undefined) {
      if (none && attempt === 0) this.followForCalls(cell)
      return
    }
    const now = this.clock.now()
    const last = this.samples.get(cell)
    if (last?.pulling === true) return
    if (last !== undefined && now - last.atMs < (none ? SAMPLE_MIN_GAP_MS : SAMPLE_REFRESH_MS)) return
    if (this.gossip.followed().includes(cell)) return
    this.sampleReplicas(cell, now)
  }

  /** Pulls a sample of `cell`'s replicas (with their hosts' records) from one of its hosts. */
  private sampleReplicas (cell: string, now: number): void {
    if (!this.samples.has(cell) && this.samples.size >= MAX_ROUTES) this.samples.delete(this.samples.keys().next().value as string)
    const entry = { atMs: now, pulling: true }
    this.samples.set(cell, entry)
    const nodeId = cellSource(this.view, this.libp2p, this.random, cell)
    if (nodeId === undefined) { entry.pulling = false; return }
    this.counters.samplePulls++
    void this.pullFrom(nodeId, { cells: [cell], sample: CALLER_SAMPLE, signal: AbortSignal.timeout(SAMPLE_TIMEOUT_MS) })
      .catch((err: Error) => { this.counters.samplePullFailures++; log('sample of %s from %s: %s', cell, nodeId, err.message) })
      .finally(() => { entry.pulling = false })
  }

  /** Follows `cell` for this peer's calls (bounded by FleetGossip's followed-cells limit). */
  private followForCalls (cell: string): void {
    if (this.gossip.followed().includes(cell)) return
    try {
      this.gossip.follow(cell)
    } catch (err) {
      log('cannot follow %s for calls: %s', cell, (err as Error).message)
    }
  }

  /** The client span's name and options for the last (cell, method) called. */
  private lastSpan: { cell: string, method: string, name: string, options: { kind: 'client', attributes: Record<string, string> } } | undefined

  private async callUntraced (cell: string, method: string, payload: Uint8Array, options: MeshCallOptions, traceparent: string | undefined): Promise<Uint8Array> {
    if (!this.started) throw new MeshNotStartedError('mesh is not started')
    const timeoutMs = options.timeoutMs ?? this.init.defaultTimeoutMs ?? 30_000
    const startMs = this.clock.now()
    const deadlineMs = startMs + timeoutMs
    let route = this.route(cell, startMs)
    if (route.claimants > 1) {
      const claimants = this.view.claimants(cell)
      throw new CellNameConflictError(`cell "${cell}" is claimed by ${claimants.length} trusted authorities (${claimants.map(a => a.slice(0, 12) + '…').join(', ')}): refusing to guess which one to call`)
    }
    // Made on the first failure only: most calls are answered on their first attempt.
    let excluded: Set<string> | undefined
    let crashes: Map<string, number> | undefined
    let waits = 0
    let lastError: unknown
    // Once per call, not per attempt or wait: a client's policy lookup counts calls (ReleasePolicies.want).
    const canaryWeight = options.canaryWeight ?? this.canaryWeight(cell)
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      options.signal?.throwIfAborted()
      let choice
      if (excluded === undefined || excluded.size === 0) {
        choice = route.prepared === undefined ? undefined : chooseFrom(route.prepared, canaryWeight, this.random)
      } else {
        const left = excluded
        choice = chooseReplica(route.candidates.filter(i => !left.has(i.nodeId)), { canaryWeight }, this.random)
      }
      // Per-cell dissemination: a full node calling a cell it does not follow keeps a sample of its
      // replicas pulled from one of its hosts (again every 10 s while it calls, and at once when
      // no replica is left to try); a client follows the cell (subscribes and pulls its records).
      if (this.gossip.dissemination === 'per-cell') this.perCellReplicas(cell, choice == null, attempt)
      // A view that holds no node yet (a client that has just started, its first pull in flight)
      // cannot say a cell is unknown: wait for it like for a cell between replicas.
      if (choice == null && ((excluded?.size ?? 0) > 0 || this.view.release(cell) != null || this.view.nodes().length === 0) && this.clock.now() < deadlineMs && waits < MAX_VIEW_WAITS) {
        // No usable replica in this view: either every listed one failed (the view is behind the
        // fleet) or the cell is between replicas (a restart, a rollout). Wait for the next change of
        // the view and try again with a clean slate, within the call's deadline.
        waits++
        attempt--
        await this.nextViewChange(deadlineMs, options.signal)
        excluded?.clear()
        route = this.route(cell)
        continue
      }
      if (choice == null) {
        if (this.view.release(cell) == null && lastError == null) throw new UnknownCellError(`no trusted release of cell "${cell}" is known to this peer`)
        throw new NoReplicaError(`no ready replica of "${cell}"${excluded !== undefined && excluded.size > 0 ? ` left after ${excluded.size} failed` : ''}`, { cause: lastError })
      }
      const target = choice.replica
      let opened = false
      try {
        // An open channel whose chain is current is used at once; otherwise channel() opens one.
        const open = this.openChannels.get(target.channelKey)
        const ready = open !== undefined && this.libp2p.services.synapse.current(open)
        const ch = ready ? open : await this.channel(target.nodeId, cell, target.digest, options.signal)
        // Nothing was awaited on the first attempt with an open channel: no time has passed.
        const remaining = ready && attempt === 0 && waits === 0 ? timeoutMs : deadlineMs - this.clock.now()
        opened = true
        const answer = await ch.call(method, payload, { signal: options.signal, timeoutMs: Math.max(1, remaining), traceparent })
        if (target.claim !== undefined && this.claims.lateAnswer(target, this.replicas(cell))) {
          throw new StaleEpochAnswerError(`${cell}.${method} was answered by …${target.nodeId.slice(-6)} from claim ${cell}/${target.claim.ordinal} at epoch ${target.claim.epoch}, but the claim is at epoch ${this.claimEpoch(cell, target.claim.ordinal)} now: its writes may not survive`)
        }
        options.onAnswer?.(target.record)
        return answer
      } catch (err) {
        lastError = err
        const idempotent = (target.idempotent ?? []).includes(method) || (options.idempotent ?? []).includes(method)
        const retry = mayRetry(err, { opened, idempotent })
        log('call %s.%s on %s failed (%s), retry=%s', cell, method, target.nodeId, (err as Error).name, retry)
        if (!retry || this.clock.now() >= deadlineMs) throw err
        // The view may have changed while the call was out.
        route = this.route(cell)
        // Closed because this peer's chain expired (nothing ran): the next attempt opens a new channel.
        if (err instanceof ChannelExpiredError) continue
        // A crashed replica leaves its node able to serve from another local replica; a closed
        // channel or a node without replicas sends the next attempt elsewhere.
        crashes ??= new Map()
        excluded ??= new Set()
        const crashed = err instanceof ReplicaCrashedError ? (crashes.get(target.nodeId) ?? 0) + 1 : 2
        crashes.set(target.nodeId, crashed)
        if (crashed >= 2) excluded.add(target.nodeId)
      }
    }
    throw lastError
  }

  /**
   * Resolves at the next change of the view but not before MIN_VIEW_WAIT_MS, at most 3 heartbeats
   * later, at `deadlineMs`, or when `signal` aborts.
   */
  private async nextViewChange (deadlineMs: number, signal?: AbortSignal): Promise<void> {
    const fromMs = this.clock.now()
    const maxMs = Math.min(deadlineMs - fromMs, 3 * (this.init.heartbeatMs ?? 1000))
    const minMs = Math.min(MIN_VIEW_WAIT_MS, deadlineMs - fromMs)
    await new Promise<void>((resolve) => {
      let timer: unknown
      const finish = (): void => {
        this.clock.clearTimeout(timer)
        signal?.removeEventListener('abort', finish)
        if (this.viewWaiters.delete(changed) && this.viewWaiters.size === 0) this.view.removeEventListener('change', this.wakeViewWaiters)
        resolve()
      }
      // A change this soon only ends the wait once minMs is over (the timer is re-armed for it).
      const changed = (): void => {
        const early = minMs - (this.clock.now() - fromMs)
        if (early <= 0 || signal?.aborted === true) { finish(); return }
        this.clock.clearTimeout(timer)
        timer = this.clock.setTimeout(finish, early)
      }
      timer = this.clock.setTimeout(finish, Math.max(0, maxMs))
      // One listener on the view for all waiting calls (many calls in flight wait at once).
      if (this.viewWaiters.size === 0) this.view.addEventListener('change', this.wakeViewWaiters)
      this.viewWaiters.add(changed)
      signal?.addEventListener('abort', finish)
    })
  }

  /** Calls waiting in nextViewChange(). */
  private readonly viewWaiters = new Set<() => void>()
  private readonly wakeViewWaiters = (): void => {
    const waiters = [...this.viewWaiters]
    this.viewWaiters.clear()
    this.view.removeEventListener('change', this.wakeViewWaiters)
    for (const wake of waiters) wake()
  }

  /**
   * A server stream of `method` on one ready replica of `cell` (chosen as calls are; the view is
   * waited for within the deadline): items arrive in order, and leaving the loop cancels the handler.
   * The way to move more than one call frame (1 MiB) of data: in items below that size each.
   */
  async * stream<T = unknown> (cell: string, method: string, request: unknown, options: MeshCallOptions = {}): AsyncGenerator<T> {
    if (!this.started) throw new MeshNotStartedError('mesh is not started')
    const deadlineMs = this.clock.now() + (options.timeoutMs ?? this.init.defaultTimeoutMs ?? 30_000)
    const canaryWeight = options.canaryWeight ?? this.canaryWeight(cell)
    const pick = (): InstanceRecord | undefined => {
      const candidates = this.replicas(cell)
      return chooseReplica(candidates.map(i => ({ ...i, id: i.instanceId, inFlight: i.inflight })), { canaryWeight }, this.random)?.replica
    }
    let target = pick()
    for (let waits = 0; target === undefined && waits < MAX_VIEW_WAITS && this.clock.now() < deadlineMs; waits++) {
      if (this.view.release(cell) == null && this.view.nodes().length > 0) break
      await this.nextViewChange(deadlineMs, options.signal)
      options.signal?.throwIfAborted()
      target = pick()
    }
    if (target === undefined) {
      if (this.view.release(cell) == null) throw new UnknownCellError(`no trusted release of cell "${cell}" is known to this peer`)
      throw new NoReplicaError(`no ready replica of "${cell}"`)
    }
    const ch = await this.channel(target.nodeId, cell, target.digest, options.signal)
    for await (const item of ch.stream(method, encodeJson(request), { signal: options.signal, timeoutMs: Math.max(1, deadlineMs - this.clock.now()), ...(options.traceparent !== undefined ? { traceparent: options.traceparent } : {}) })) {
      yield decodeJson(item) as T
    }
  }

  /**
   * The share (%) of calls to `cell` this peer sends to its newest release while older ones run: the
   * `canary_weight` of that release's Cell.toml once this peer has read it (MeshInit.canaryWeightOf),
   * else Cell.toml's default. A call's `canaryWeight` option overrides it.
   */
  canaryWeight (cell: string): number {
    return this.init.canaryWeightOf?.(cell) ?? DEFAULT_CANARY_WEIGHT
  }

  async call<T = unknown> (cell: string, method: string, request: unknown, options: MeshCallOptions = {}): Promise<T> {
    return decodeJson(await this.callBytes(cell, method, encodeJson(request), options)) as T
  }

  /** The typed client of a cell: `mesh.remote<typeof Billing>('billing').charge({ amount: 5 })`. */
  remote<T> (cell: string, remoteOptions: RemoteOptions = {}): Remote<T> {
    const errors = cellErrorClasses(remoteOptions.errors)
    const rebuild = (err: unknown): never => { throw errors.size > 0 ? rebuildCellError(err, errors) : err }
    const streams = new Set(remoteOptions.streams ?? [])
    return new Proxy({}, {
      get: (_target, prop) => {
        if (typeof prop !== 'string' || prop === 'then') return undefined
        if (streams.has(prop)) {
          // Resolves to the items; a failure while they arrive is rebuilt like a call's.
          const open = (req: unknown, opts: CallOptions): AsyncIterable<unknown> => ({
            [Symbol.asyncIterator]: () => {
              const it = this.stream(cell, prop, req, { timeoutMs: remoteOptions.timeoutMs, ...opts })
              return { next: async () => await it.next().catch(rebuild), return: async (v?: unknown) => await it.return(v) }
            }
          })
          return async (req: unknown, opts: CallOptions = {}) => open(req, opts)
        }
        return async (req: unknown, opts: CallOptions = {}) => await this.call(cell, prop, req, {
          timeoutMs: remoteOptions.timeoutMs, ...opts, idempotent: remoteOptions.idempotent
        }).catch(rebuild)
      }
    }) as Remote<T>
  }
}

export type { Principal }

/**
 * libp2p 3's address manager debounces its peer-store update by 1 s on every `transport:listening`
 * and `transport:close`, and has no stop: the timer armed by the transports closing in
 * `libp2p.stop()` held the event loop for that second, so every one-shot command that listens
 * (`cell publish`, `cell rollback`) exited a second after it was done. The debounced function has a
 * stop(); a libp2p without that shape is left as it is.
 */
function clearAddressUpdate (libp2p: unknown): void {
  try {
    const update = (libp2p as { components?: { addressManager?: { _updatePeerStoreAddresses?: { stop?: () => void } } } }).components?.addressManager?._updatePeerStoreAddresses
    if (typeof update?.stop === 'function') update.stop()
  } catch {}
}
