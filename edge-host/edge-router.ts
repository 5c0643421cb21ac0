// The routing node: the shared Mesh with WebSockets only (Noise, yamux, identify, gossipsub; no
// DHT), joined to the fleet through bootstrap addresses, holding the fleet view from gossip and
// calling cells with the same replica choice and canary split as Node and browser callers (the
// canary weight read from the Cell.toml inside each release's signed artifact, as a tab does).
// Runtime-agnostic: the Durable Object (worker.ts) hands in its storage; a Node test can run it.
import { webSockets } from '@libp2p/websockets'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { logger } from '@libp2p/logger'
import type { Libp2pOptions } from 'libp2p'
import { Mesh, NoReplicaError, UnknownCellError, PeerKeeper, type KeeperStats } from '../core/mesh/index.ts'
import { Credentials, MalformedRecordError, NoGrantError, TrustError } from '../core/identity/index.ts'
import type { InstanceRecord } from '../core/fleet/index.ts'
import { systemClock, systemRandom, type Clock, type Random } from '../core/ports.ts'
import { ReleasePolicies } from '../browser-host/release-policies.ts'
import { summarise, type FleetSummary } from '../browser-host/fleet-cache.ts'
import { denyDial } from './address-gate.ts'
import type { EdgeConfig } from './config.ts'
import { FleetNotJoinedError } from './errors.ts'

const log = logger('cell:edge')

/** Port: where the edge keeps what must survive an eviction (Durable Object storage in workerd). */
export interface EdgeStore {
  get<T>(key: string): Promise<T | undefined>
  put(key: string, value: unknown): Promise<void>
}

export class MemoryEdgeStore implements EdgeStore {
  readonly data = new Map<string, unknown>()
  async get<T>(key: string): Promise<T | undefined> { return structuredClone(this.data.get(key)) as T | undefined }
  async put (key: string, value: unknown): Promise<void> { this.data.set(key, structuredClone(value)) }
}

/** What is stored, under these keys. */
export const STORE_KEYS = { peers: 'peers', starts: 'starts' } as const

export const EDGE_LIMITS = {
  /** Full-node addresses remembered across evictions. */
  storedPeers: 32,
  /** How often (at most) the known full nodes are written to storage. */
  savePeersEveryMs: 5_000
} as const

export interface EdgeRouterInit {
  config: EdgeConfig
  store: EdgeStore
  clock?: Clock
  random?: Random
  /** Full nodes to stay connected to (default 2: losing one leaves a connected one while re-dialing). */
  keep?: number
  reconnect?: { minBackoffMs?: number, maxBackoffMs?: number, checkMs?: number, dialTimeoutMs?: number }
  /** libp2p transports; default WebSockets only (what a Worker can open). */
  transports?: NonNullable<Libp2pOptions['transports']>
}

export interface Route { nodeId: string, instanceId: string, version: string, digest: string }

export interface EdgeHealth {
  peerId: string
  /** True once a fleet snapshot was pulled from a full node since this node started. */
  joined: boolean
  connected: string[]
  nodes: number
  cells: number
  /** How many times a node was created for this Durable Object (kept in storage across evictions). */
  starts: number
  uptimeMs: number
  /**
   * The grants the edge holds (EDGE_GRANT): issuer, roles and end. A grant ends (`cell grant --ttl`,
   * at most 366 days) and the edge's calls are refused after that: alert on `notAfter`, and renew by
   * updating the EDGE_GRANT secret.
   */
  grants: Array<{ authority: string, roles: string[], notAfter: string, endsInMs: number }>
  /** Alarms this node has served (each re-checks the connections). */
  alarms: number
  reconnect: KeeperStats
}

const DIALABLE = /\/(ws|wss|tls\/ws)(\/|$)/

export class EdgeRouter {
  readonly mesh: Mesh
  readonly policies: ReleasePolicies
  private readonly init: EdgeRouterInit
  private readonly clock: Clock
  private readonly random: Random
  private readonly keeper: PeerKeeper
  private readonly credentials: Credentials
  private storedPeers: string[] = []
  private starts = 0
  private startedAtMs = 0
  private joined = false
  private started = false
  private alarms = 0
  private lastSaveMs = 0
  private readonly joinWaiters = new Set<() => void>()
  private readonly onPulled = (): void => {
    if (!this.joined) log('joined the fleet')
    this.joined = true
    for (const w of this.joinWaiters) w()
  }

  private readonly onViewChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, op: string, nodeId?: string }>).detail
    if (change.kind === 'node' && change.op === 'upsert' && change.nodeId != null) {
      this.learnAddrs(change.nodeId)
      void this.savePeers().catch((err: unknown) => { log.error('saving known peers failed: %s', (err as Error).message) })
    }
  }

  static async create (init: EdgeRouterInit): Promise<EdgeRouter> {
    const clock = init.clock ?? systemClock
    const { config } = init
    const credentials = new Credentials({ peerKey: config.privateKey, clock })
    if (config.grant !== undefined) credentials.addGrant(config.grant)
    const trusted = new Set(config.trust)
    const allow = new Set(config.allowHosts)
    let policies: ReleasePolicies | undefined
    const mesh = await Mesh.create({
      privateKey: config.privateKey,
      transports: init.transports ?? [webSockets()],
      listen: [],
      bootstrap: config.bootstrap,
      dht: false,
      credentials,
      trusted,
      heartbeatMs: config.heartbeatMs,
      defaultTimeoutMs: config.defaultDeadlineMs,
      clock,
      random: init.random ?? systemRandom,
      canaryWeightOf: (cell) => policies?.policy(cell)?.canaryWeight,
      libp2p: { connectionGater: { denyDialMultiaddr: (ma) => denyDial(ma.toString(), allow) } }
    })
    const router = new EdgeRouter(init, mesh, credentials)
    policies = router.policies
    return router
  }

  private constructor (init: EdgeRouterInit, mesh: Mesh, credentials: Credentials) {
    this.init = init
    this.mesh = mesh
    this.credentials = credentials
    this.clock = init.clock ?? systemClock
    this.random = init.random ?? systemRandom
    this.policies = new ReleasePolicies(mesh.libp2p, mesh.view, () => this.keeper.connectedFleetPeers())
    this.keeper = new PeerKeeper({
      libp2p: mesh.libp2p,
      clock: this.clock,
      random: this.random,
      keep: init.keep ?? 2,
      minBackoffMs: 250,
      maxBackoffMs: 5_000,
      checkMs: 2_000,
      dialTimeoutMs: 4_000,
      maxDialsPerRound: 2,
      ...init.reconnect,
      candidates: () => this.candidates(),
      isFleetPeer: (id) => this.isFullNode(id)
    })
    this.keeper.addEventListener('reconnect', (evt) => {
      const { peerId, addr } = (evt as CustomEvent<{ peerId: string, addr: string }>).detail
      log('connected to %s at %s', peerId, addr)
    })
  }

  get peerId (): string {
    return this.mesh.peerId.toString()
  }

  async start (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.started) return
    options.signal?.throwIfAborted()
    this.started = true
    this.startedAtMs = this.clock.now()
    const stored = await this.init.store.get<string[]>(STORE_KEYS.peers)
    this.storedPeers = Array.isArray(stored) ? stored.filter(a => typeof a === 'string' && DIALABLE.test(a)).slice(0, EDGE_LIMITS.storedPeers) : []
    this.starts = ((await this.init.store.get<number>(STORE_KEYS.starts)) ?? 0) + 1
    await this.init.store.put(STORE_KEYS.starts, this.starts)
    this.mesh.libp2p.services.fleetSync.addEventListener('pulled', this.onPulled)
    this.mesh.view.addEventListener('change', this.onViewChange)
    await this.mesh.start()
    // Signed sessions must exist before the first handshake asks for a chain synchronously.
    for (const authority of this.credentials.authorities()) await this.credentials.chainFor(authority, options).catch(() => {})
    this.keeper.start()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.keeper.stop()
    this.policies.close()
    this.mesh.libp2p.services.fleetSync.removeEventListener('pulled', this.onPulled)
    this.mesh.view.removeEventListener('change', this.onViewChange)
    for (const w of this.joinWaiters) w()
    await this.mesh.stop()
  }

  /** The Durable Object's alarm: re-check the connections now (counted in health().alarms). */
  alarm (): void {
    this.alarms++
    this.keeper.nudge()
  }

  /** Resolves once joined (a fleet snapshot pulled); FleetNotJoinedError after `timeoutMs`. */
  async waitJoined (timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.joined) return
    await new Promise<void>((resolve, reject) => {
      const done = (): void => {
        this.clock.clearTimeout(timer)
        this.joinWaiters.delete(done)
        signal?.removeEventListener('abort', done)
        if (this.joined) resolve()
        else reject(new FleetNotJoinedError(`no full node answered within ${timeoutMs} ms (${this.keeper.stats.failures} failed dials to ${this.candidates().length} known addresses)`))
      }
      const timer = this.clock.setTimeout(done, timeoutMs)
      this.joinWaiters.add(done)
      signal?.addEventListener('abort', done)
    })
  }

  /** One call through the mesh within `timeoutMs`, and which replica answered. */
  async call (cell: string, method: string, request: unknown, options: { timeoutMs: number, signal?: AbortSignal }): Promise<{ result: unknown, route?: Route }> {
    const deadlineMs = this.clock.now() + options.timeoutMs
    await this.waitJoined(options.timeoutMs, options.signal)
    let route: Route | undefined
    try {
      const result = await this.mesh.call(cell, method, request, {
        timeoutMs: Math.max(1, deadlineMs - this.clock.now()),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
        onAnswer: (r: InstanceRecord) => { route = { nodeId: r.nodeId, instanceId: r.instanceId, version: r.version, digest: r.digest } }
      })
      return { result, ...(route !== undefined ? { route } : {}) }
    } catch (err) {
      throw this.explain(cell, err)
    }
  }

  /**
   * As the light peer does: a refused handshake surfaces as NoReplicaError after every replica
   * refused; the caller needs the refusal, and without a grant from the cell's authority the precise
   * reason is NoGrantError.
   */
  private explain (cell: string, err: unknown): unknown {
    if (err instanceof UnknownCellError && this.credentials.authorities().length === 0) {
      return new NoGrantError(`this edge (${this.peerId}) holds no grant: the fleet shows "${cell}" only to peers granted by an authority it trusts`, { cause: err })
    }
    const refusal = err instanceof NoReplicaError ? err.cause : err
    const authority = this.mesh.view.release(cell)?.authority
    if ((refusal instanceof MalformedRecordError || refusal instanceof TrustError) && authority != null && this.credentials.grantFor(authority) == null) {
      return new NoGrantError(`this edge (${this.peerId}) holds no grant from ${authority}, the authority of "${cell}"`, { cause: refusal })
    }
    return refusal instanceof TrustError ? refusal : err
  }

  /** The view the edge holds, and the canary weight it routes each cell with (from the release's Cell.toml once fetched). */
  fleet (): FleetSummary & { peerId: string, canaryWeights: Record<string, number> } {
    const summary = summarise(this.mesh.view, undefined, this.joined, this.clock.now())
    const canaryWeights: Record<string, number> = {}
    for (const { cell } of summary.cells) {
      const weight = this.policies.policy(cell)?.canaryWeight
      if (weight !== undefined) canaryWeights[cell] = weight
    }
    return { peerId: this.peerId, ...summary, canaryWeights }
  }

  health (): EdgeHealth {
    return {
      peerId: this.peerId,
      joined: this.joined,
      connected: this.keeper.connectedFleetPeers(),
      nodes: this.mesh.view.nodes().length,
      cells: this.mesh.view.cells().length,
      starts: this.starts,
      uptimeMs: this.clock.now() - this.startedAtMs,
      grants: this.credentials.authorities().slice(0, 16).flatMap(a => {
        const g = this.credentials.grantFor(a)
        return g === undefined ? [] : [{ authority: a, roles: [...g.roles], notAfter: new Date(g.notAfterMs).toISOString(), endsInMs: g.notAfterMs - this.clock.now() }]
      }),
      alarms: this.alarms,
      reconnect: { ...this.keeper.stats }
    }
  }

  private isFullNode (peerId: string): boolean {
    if (this.mesh.view.node(peerId)?.roles.includes('full') === true) return true
    return [...this.init.config.bootstrap, ...this.storedPeers].some(a => a.endsWith(`/p2p/${peerId}`))
  }

  /** WebSocket addresses of full nodes: the live view (shuffled), then stored ones, then bootstrap. */
  private candidates (): string[] {
    const nodes = this.mesh.view.nodes().filter(n => n.roles.includes('full'))
    const fromView = shuffle(nodes, this.random).flatMap(n => wsAddrs(n.nodeId, n.addrs))
    return [...new Set([...fromView, ...shuffle(this.storedPeers, this.random), ...shuffle(this.init.config.bootstrap, this.random)])]
  }

  /** Tells libp2p where a gossiped full node listens, so calls to its replicas can dial it. */
  private learnAddrs (nodeId: string): void {
    const record = this.mesh.view.node(nodeId)
    if (record == null || nodeId === this.peerId) return
    const addrs = wsAddrs(nodeId, record.addrs).map(a => multiaddr(a.slice(0, a.lastIndexOf('/p2p/'))))
    if (addrs.length === 0) return
    void this.mesh.libp2p.peerStore.merge(peerIdFromString(nodeId), { multiaddrs: addrs }).catch(() => {})
  }

  /** Remembers the full nodes' addresses (bounded, throttled) so a re-created node can rejoin without bootstrap. */
  private async savePeers (): Promise<void> {
    const now = this.clock.now()
    if (now - this.lastSaveMs < EDGE_LIMITS.savePeersEveryMs) return
    this.lastSaveMs = now
    const peers = this.mesh.view.nodes().filter(n => n.roles.includes('full')).flatMap(n => wsAddrs(n.nodeId, n.addrs)).slice(0, EDGE_LIMITS.storedPeers)
    if (peers.length === 0) return
    this.storedPeers = peers
    await this.init.store.put(STORE_KEYS.peers, peers)
  }
}

function wsAddrs (nodeId: string, addrs: string[]): string[] {
  return addrs.filter(a => DIALABLE.test(a) && !a.includes('/p2p-circuit')).map(a => a.includes('/p2p/') ? a : `${a}/p2p/${nodeId}`)
}

function shuffle<T> (items: T[], random: Random): T[] {
  const out = items.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random.next() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}
