// The light peer: the shared Mesh in a browser tab. It dials full nodes over WebSockets and
// WebRTC-direct (WebTransport too where a peer offers it), reaches other tabs over WebRTC through a
// full node's circuit relay, runs the DHT in client mode and follows the fleet gossip. Its key,
// trust, grants and last fleet view persist through a LightPeerStore (IndexedDB in a tab).
import { webSocketsClosingAborted } from '../core/mesh/websockets-dial.ts'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { webTransport } from '@libp2p/webtransport'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { logger } from '@libp2p/logger'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { CellError } from '../core/errors.ts'
import { ReleasePolicies } from './release-policies.ts'
import { Mesh, NoReplicaError, UnknownCellError, type RemoteOptions, type MeshCallOptions } from '../core/mesh/index.ts'
import type { Dissemination } from '../core/fleet/index.ts'
import { Credentials, decodeGrantToken, MalformedRecordError, NoGrantError, TrustError, type Certificate } from '../core/identity/index.ts'
import { systemClock, systemRandom, type Clock, type Random } from '../core/ports.ts'
import type { CallOptions, Remote } from '../core/cell.ts'
import { IdbLightPeerStore, LIMITS, type CachedFleet, type LightPeerStore } from './keystore.ts'
import { captureFleet, summarise, type FleetSummary } from './fleet-cache.ts'
import { Reconnector, type ReconnectStats } from './reconnect.ts'
import { OtelTracerAdapter, type OtlpTraceInit } from '../node-host/telemetry/otel-tracer.ts'

const log = logger('cell:browser')

/** The stored peer key is not an ed25519 key (the database was written by something else). */
export class BadStoredKeyError extends CellError { static override readonly errorName = 'BadStoredKeyError' }
/** No bootstrap address and no cached full node: the tab has nowhere to join. */
export class NoBootstrapError extends CellError { static override readonly errorName = 'NoBootstrapError' }

export interface LightPeerInit {
  /** Full node multiaddrs with /p2p/ ids (ws, wss, webrtc-direct, webtransport). */
  bootstrap: string[]
  /** A `cell-grant-v1:` token for this tab's peer id; its issuer becomes trusted. Persisted. */
  grantToken?: string
  /**
   * Authority ids whose releases and replicas this tab accepts. Persisted (added to what is stored),
   * so pass only what the person or the host's operator vouches for: the dashboard passes its
   * host's cell-config.json trust here, and a link's `?trust=` only after the person accepts it.
   */
  trust?: string[]
  /** Default: IndexedDB database `storeName` (default "cell-light-peer"). */
  store?: LightPeerStore
  storeName?: string
  /** Listen for other tabs through relays; default ['/p2p-circuit', '/webrtc']. */
  listen?: string[]
  /**
   * Browsers' libp2p refuses private addresses and plain ws:// by default; a fleet on a laptop or a
   * LAN lives exactly there, so this defaults to true.
   */
  allowPrivateAddresses?: boolean
  /** Dial full nodes over WebRTC-direct too (default true). */
  webRTCDirect?: boolean
  /** Fleet heartbeat period the view's ttl derives from (default 1000, as full nodes). */
  heartbeatMs?: number
  /**
   * How the fleet's records travel (docs/biology.md "Scale"); default 'fleet'. It must be the
   * fleet's own mode (the dashboard reads it from its host's cell-config.json). In 'per-cell' mode
   * the tab follows every cell with a release (what a dashboard shows) and any cell it calls.
   */
  dissemination?: Dissemination
  defaultTimeoutMs?: number
  reconnect?: { minBackoffMs?: number, maxBackoffMs?: number, checkMs?: number, dialTimeoutMs?: number }
  /** How often (at most) the live view is written to the store; default 2000 ms. */
  saveEveryMs?: number
  /** Start networking at once (default). With false the cached view is readable before start(). */
  start?: boolean
  /**
   * Export this tab's client spans (one per call) over OTLP/HTTP (JSON) with the OpenTelemetry exporter; the
   * receiver must answer CORS preflight. The span's traceparent travels in the call frame.
   */
  otlp?: OtlpTraceInit
  clock?: Clock
  random?: Random
}

export interface ConnectionInfo { peerId: string, addr: string, limited: boolean, direction: string }

export interface LightPeer extends EventTarget {
  readonly peerId: string
  readonly mesh: Mesh
  start (options?: { signal?: AbortSignal }): Promise<void>
  stop (): Promise<void>
  /** Sends the spans waiting for export now (no-op without `otlp`); export failures are counted, not thrown. */
  flushTraces (): Promise<void>
  /** Spans exported, failed and dropped (undefined without `otlp`). */
  traceStats (): { exported: number, failed: number, dropped: number } | undefined
  remote<T> (cell: string, options?: RemoteOptions): Remote<T>
  call<T = unknown> (cell: string, method: string, request: unknown, options?: MeshCallOptions): Promise<T>
  /** A call, and which replica's node answered it. */
  callRouted (cell: string, method: string, request: unknown, options?: MeshCallOptions): Promise<{ result: unknown, route?: { nodeId: string, instanceId: string, version: string, digest: string } }>
  /** Imports a grant token for this peer id, trusts its issuer and persists both. */
  importGrant (token: string, options?: { signal?: AbortSignal }): Promise<Certificate>
  trust (authorityId: string, options?: { signal?: AbortSignal }): Promise<void>
  trusted (): string[]
  /** The live fleet, or the cached one marked stale until gossip refreshes it. */
  fleet (): FleetSummary
  addresses (): string[]
  connections (): ConnectionInfo[]
  /** Full nodes this tab holds an unlimited connection to. */
  fullNodes (): string[]
  /** Each cell's policy from the Cell.toml in its signed artifact, once fetched. */
  readonly policies: ReleasePolicies
  ping (addr: string, options?: { signal?: AbortSignal }): Promise<number>
  reconnectStats (): ReconnectStats
}

const DIALABLE = /\/(ws|wss|tls\/ws|webrtc-direct|webtransport)(\/|$)/

export async function createLightPeer (init: LightPeerInit, options: { signal?: AbortSignal } = {}): Promise<LightPeer> {
  options.signal?.throwIfAborted()
  const clock = init.clock ?? systemClock
  const random = init.random ?? systemRandom
  const store = init.store ?? new IdbLightPeerStore(init.storeName)
  const state = await store.load(options)

  let privateKey: Ed25519PrivateKey
  if (state.peerKey != null) {
    const key = privateKeyFromProtobuf(state.peerKey)
    if (key.type !== 'Ed25519') throw new BadStoredKeyError(`stored peer key is ${key.type}, expected Ed25519`)
    privateKey = key
  } else {
    privateKey = await generateKeyPair('Ed25519')
    await store.savePeerKey(privateKeyToProtobuf(privateKey), options)
  }
  const credentials = new Credentials({ peerKey: privateKey, clock })
  const trusted = new Set<string>([...state.trust, ...(init.trust ?? [])].slice(0, LIMITS.trust))
  const tokens: string[] = []
  for (const token of [...state.grantTokens, ...(init.grantToken != null ? [init.grantToken] : [])]) {
    try {
      const cert = decodeGrantToken(token)
      credentials.addGrant(cert)
      trusted.add(cert.issuer)
      if (!tokens.includes(token)) tokens.push(token)
    } catch (err) {
      // A stored token for another identity or a malformed one must not stop the tab; a token the
      // page passes in now is the user's action, so its failure is theirs to see.
      if (token === init.grantToken && !state.grantTokens.includes(token)) throw err
      log('dropped stored grant token: %s', (err as Error).name)
    }
  }
  await store.saveTrust([...trusted], options)
  await store.saveGrantTokens(tokens, options)

  const allowPrivate = init.allowPrivateAddresses ?? true
  let policies: ReleasePolicies | undefined
  const tracer = init.otlp !== undefined ? new OtelTracerAdapter({ serviceName: 'cell-light-peer', ...init.otlp }) : undefined
  const mesh = await Mesh.create({
    ...(tracer !== undefined ? { tracer } : {}),
    privateKey,
    transports: [
      webSocketsClosingAborted(),
      ...(init.webRTCDirect === false ? [] : [webRTCDirect()]),
      webTransport(),
      webRTC(),
      circuitRelayTransport()
    ],
    listen: init.listen ?? ['/p2p-circuit', '/webrtc'],
    bootstrap: init.bootstrap,
    dhtClientMode: true,
    credentials,
    trusted,
    heartbeatMs: init.heartbeatMs,
    ...(init.dissemination !== undefined ? { dissemination: init.dissemination } : {}),
    defaultTimeoutMs: init.defaultTimeoutMs,
    clock,
    random,
    canaryWeightOf: (cell) => policies?.policy(cell)?.canaryWeight,
    libp2p: allowPrivate ? { connectionGater: { denyDialMultiaddr: () => false } } : {}
  })
  const peer = new BrowserLightPeer({ init, mesh, store, credentials, trusted, tokens, cache: state.fleet, clock, random, tracer })
  policies = peer.policies
  await peer.restore(options)
  if (init.start !== false) await peer.start(options)
  return peer
}

interface PeerParts {
  init: LightPeerInit
  mesh: Mesh
  store: LightPeerStore
  credentials: Credentials
  trusted: Set<string>
  tokens: string[]
  cache?: CachedFleet
  clock: Clock
  random: Random
  tracer: OtelTracerAdapter | undefined
}

class BrowserLightPeer extends EventTarget implements LightPeer {
  readonly mesh: Mesh
  readonly policies: ReleasePolicies
  private readonly parts: PeerParts
  private readonly reconnector: Reconnector
  private cache?: CachedFleet
  private live = false
  private restoring = false
  private started = false
  private saveTimer: unknown
  private readonly onViewChange = (evt: Event): void => {
    const change = (evt as CustomEvent<{ kind: string, op: string, nodeId?: string }>).detail
    if (this.restoring) return
    if (!this.live && change.op === 'upsert' && change.kind === 'node') this.live = true
    if (change.kind === 'node' && change.op === 'upsert' && change.nodeId != null) this.learnAddrs(change.nodeId)
    this.scheduleSave()
    this.dispatchEvent(new CustomEvent('fleet'))
  }

  private readonly onOnline = (): void => { this.reconnector.nudge() }

  constructor (parts: PeerParts) {
    super()
    this.parts = parts
    this.mesh = parts.mesh
    this.cache = parts.cache
    this.policies = new ReleasePolicies(this.mesh.libp2p, this.mesh.view, () => this.fullNodes())
    this.reconnector = new Reconnector({
      libp2p: this.mesh.libp2p,
      clock: parts.clock,
      random: parts.random,
      candidates: () => this.candidates(),
      isFullNode: (id) => this.isFullNode(id),
      ...parts.init.reconnect,
      onReconnect: (peerId, addr) => { this.dispatchEvent(new CustomEvent('reconnect', { detail: { peerId, addr } })) }
    })
  }

  get peerId (): string {
    return this.mesh.peerId.toString()
  }

  /** Re-verifies the saved frames: releases (no ttl) come back at once, expired heartbeats do not. */
  async restore (options: { signal?: AbortSignal } = {}): Promise<void> {
    this.restoring = true
    try {
      for (const frame of this.cache?.frames ?? []) await this.mesh.view.merge(frame, { signal: options.signal })
    } finally {
      this.restoring = false
    }
  }

  async start (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.started) return
    options.signal?.throwIfAborted()
    if (this.parts.init.bootstrap.length === 0 && this.candidates().length === 0) throw new NoBootstrapError('no bootstrap address and no cached full node to join')
    this.started = true
    this.mesh.view.addEventListener('change', this.onViewChange)
    await this.mesh.start()
    // Signed sessions must exist before the first handshake asks for a chain synchronously.
    for (const authority of this.parts.credentials.authorities()) await this.parts.credentials.chainFor(authority, options).catch(() => {})
    this.reconnector.start()
    globalThis.addEventListener?.('online', this.onOnline)
  }

  async flushTraces (): Promise<void> {
    await this.parts.tracer?.flush()
  }

  traceStats (): { exported: number, failed: number, dropped: number } | undefined {
    const s = this.parts.tracer?.stats
    return s !== undefined ? { ...s } : undefined
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    globalThis.removeEventListener?.('online', this.onOnline)
    this.reconnector.stop()
    this.policies.close()
    this.parts.clock.clearTimeout(this.saveTimer)
    this.mesh.view.removeEventListener('change', this.onViewChange)
    await this.save().catch((err) => { log.error('saving the fleet view failed: %s', (err as Error).message) })
    await this.mesh.stop()
    await this.parts.tracer?.flush().catch((err: unknown) => { log.error('trace export failed: %s', (err as Error).message) })
    this.parts.store.close()
  }

  /** The Mesh's typed client, with handshake refusals surfaced by name (see `call`). */
  remote<T> (cell: string, remoteOptions: RemoteOptions = {}): Remote<T> {
    return new Proxy({}, {
      get: (_target, prop) => {
        if (typeof prop !== 'string' || prop === 'then') return undefined
        return async (req: unknown, opts: CallOptions = {}) => await this.call(cell, prop, req, { timeoutMs: remoteOptions.timeoutMs, ...opts, idempotent: remoteOptions.idempotent })
      }
    }) as Remote<T>
  }

  async call<T = unknown> (cell: string, method: string, request: unknown, options?: MeshCallOptions): Promise<T> {
    try {
      return await this.mesh.call<T>(cell, method, request, options)
    } catch (err) {
      throw this.explain(cell, err)
    }
  }

  async callRouted (cell: string, method: string, request: unknown, options: MeshCallOptions = {}): Promise<{ result: unknown, route?: { nodeId: string, instanceId: string, version: string, digest: string } }> {
    let route: { nodeId: string, instanceId: string, version: string, digest: string } | undefined
    const result = await this.call(cell, method, request, { ...options, onAnswer: (r) => { route = { nodeId: r.nodeId, instanceId: r.instanceId, version: r.version, digest: r.digest } } })
    return { result, route }
  }

  /**
   * The mesh tries another replica after a refused handshake and then reports NoReplicaError; a
   * user needs the refusal itself. With no grant from the cell's authority the chain sent was
   * empty, so the precise reason is NoGrantError; a trust refusal is passed on as it came.
   */
  private explain (cell: string, err: unknown): unknown {
    // Full nodes show private cells only to peers holding a grant from an authority they trust
    // (fleet-sync): a tab without any grant knows of no such cell, and the reason is the grant.
    if (err instanceof UnknownCellError && this.parts.credentials.authorities().length === 0) {
      return new NoGrantError(`this browser (${this.peerId}) holds no grant: the fleet shows "${cell}" only to peers granted by an authority it trusts`, { cause: err })
    }
    const refusal = err instanceof NoReplicaError ? err.cause : err
    const authority = this.mesh.view.release(cell)?.authority
    if ((refusal instanceof MalformedRecordError || refusal instanceof TrustError) && authority != null && this.parts.credentials.grantFor(authority) == null) {
      return new NoGrantError(`this browser (${this.peerId}) holds no grant from ${authority}, the authority of "${cell}"`, { cause: refusal })
    }
    return refusal instanceof TrustError ? refusal : err
  }

  async importGrant (token: string, options: { signal?: AbortSignal } = {}): Promise<Certificate> {
    const cert = decodeGrantToken(token)
    this.parts.credentials.addGrant(cert)
    this.parts.trusted.add(cert.issuer)
    // The tokens kept for the next visit: this one, and others' that have not ended; a renewal (a
    // tab open for days asks again at each grant's half-life) replaces its issuer's older token
    // rather than adding one more to the stored list.
    const now = this.parts.clock.now()
    const kept = this.parts.tokens.filter(t => {
      if (t === token) return false
      try {
        const c = decodeGrantToken(t)
        return c.notAfterMs > now && (c.issuer !== cert.issuer || c.notAfterMs > cert.notAfterMs)
      } catch {
        return false
      }
    })
    this.parts.tokens.splice(0, this.parts.tokens.length, ...kept, token)
    await this.parts.credentials.chainFor(cert.issuer, options)
    await this.parts.store.saveGrantTokens(this.parts.tokens, options)
    await this.parts.store.saveTrust([...this.parts.trusted], options)
    // The fleet refused this tab its full view without a grant: ask the connected full nodes again
    // now, rather than at the next refused-pull retry (which backs off to a minute).
    void this.resync()
    return cert
  }

  /** Pulls the fleet snapshot from up to two connected peers that serve it (errors are logged). */
  private async resync (): Promise<void> {
    const sync = this.mesh.libp2p.services.fleetSync
    const peers = this.mesh.libp2p.getPeers().slice(0, 2)
    await Promise.all(peers.map(async (peer) => {
      await sync.pull(peer, { signal: AbortSignal.timeout(10_000) }).catch((err) => { log('fleet-sync from %p after a new grant: %s', peer, (err as Error).message) })
    }))
  }

  async trust (authorityId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.parts.trusted.size >= LIMITS.trust) throw new CellError(`at most ${LIMITS.trust} trusted authorities`)
    this.parts.trusted.add(authorityId)
    await this.parts.store.saveTrust([...this.parts.trusted], options)
  }

  trusted (): string[] {
    return [...this.parts.trusted]
  }

  fleet (): FleetSummary {
    return summarise(this.mesh.view, this.cache, this.live, this.parts.clock.now())
  }

  addresses (): string[] {
    return this.mesh.libp2p.getMultiaddrs().map(String)
  }

  connections (): ConnectionInfo[] {
    return this.mesh.libp2p.getConnections().map(c => ({
      peerId: c.remotePeer.toString(), addr: c.remoteAddr.toString(), limited: c.limits != null, direction: c.direction
    }))
  }

  fullNodes (): string[] {
    return this.reconnector.connectedFullNodes()
  }

  async ping (addr: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    const ping = this.mesh.libp2p.services.ping as { ping: (ma: unknown, o: { signal?: AbortSignal }) => Promise<number> }
    return await ping.ping(multiaddr(addr), options)
  }

  reconnectStats (): ReconnectStats {
    return { ...this.reconnector.stats }
  }

  private isFullNode (peerId: string): boolean {
    if (this.mesh.view.node(peerId)?.roles.includes('full') === true) return true
    if (this.cache?.nodes.some(n => n.record.nodeId === peerId) === true) return true
    return this.parts.init.bootstrap.some(a => a.endsWith(`/p2p/${peerId}`))
  }

  /** Dialable full-node addresses: live view first, then the cache, then bootstrap, shuffled within each. */
  private candidates (): string[] {
    const fromRecords = (nodes: Array<{ nodeId: string, addrs: string[] }>): string[] => shuffle(nodes, this.parts.random).flatMap(n =>
      n.addrs.filter(a => DIALABLE.test(a) && !a.includes('/p2p-circuit')).map(a => a.includes('/p2p/') ? a : `${a}/p2p/${n.nodeId}`))
    return [
      ...fromRecords(this.mesh.view.nodes()),
      ...fromRecords((this.cache?.nodes ?? []).map(n => n.record)),
      ...shuffle(this.parts.init.bootstrap, this.parts.random)
    ]
  }

  /** Tells libp2p where a gossiped full node listens, so calls to its replicas can dial it. */
  private learnAddrs (nodeId: string): void {
    const record = this.mesh.view.node(nodeId)
    if (record == null || nodeId === this.peerId) return
    const multiaddrs = record.addrs.filter(a => DIALABLE.test(a) && !a.includes('/p2p-circuit')).slice(0, LIMITS.cachedNodes).map(a => multiaddr(a))
    if (multiaddrs.length === 0) return
    void this.mesh.libp2p.peerStore.merge(peerIdFromString(nodeId), { multiaddrs }).catch(() => {})
  }

  private scheduleSave (): void {
    if (this.saveTimer != null || !this.live) return
    this.saveTimer = this.parts.clock.setTimeout(() => {
      this.saveTimer = undefined
      void this.save().catch((err) => { log.error('saving the fleet view failed: %s', (err as Error).message) })
    }, this.parts.init.saveEveryMs ?? 2_000)
  }

  /** Writes the live view; never overwrites the cache with a view that was not refreshed yet. */
  private async save (): Promise<void> {
    if (!this.live) return
    const fleet = captureFleet(this.mesh.view, this.parts.clock.now())
    if (fleet.nodes.length === 0 && fleet.cells.length === 0) return
    this.cache = fleet
    await this.parts.store.saveFleet(fleet)
  }
}

function shuffle<T> (items: T[], random: Random): T[] {
  const out = items.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random.next() * (i + 1))
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}
