import { turnCached } from './turn-clock.ts'
import { DEFAULT_MAX_FRAME_BYTES } from '../wire/index.ts'
import { systemClock } from '../ports.ts'
import type { Clock } from '../ports.ts'
import { Channel } from './channel.ts'
import { LastingChannel } from './lasting-channel.ts'
import type { EndpointLimits } from './endpoint.ts'
import { SynapseNotStartedError, TooManyChannelsError, TooManyHandshakesError } from './errors.ts'
import { defaultWireErrors } from './error-registry.ts'
import type { WireErrorRegistry } from './error-registry.ts'
import { SYNAPSE_PROTOCOL } from './handshake.ts'
import { ServerSession } from './session.ts'
import { StatsCounters, sumStats } from './stats.ts'
import type { SynapseStats } from './stats.ts'
import type { AuthenticatePort, AuthenticateServerPort, CredentialsPort, SynapseHandler } from './types.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, PeerId, Stream, StreamHandlerOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** SynapseInit.flushBytes' default (see there). */
const DEFAULT_FLUSH_BYTES = 63 * 1024

/** The slice of libp2p's registrar the service uses. */
export interface SynapseRegistrar {
  handle(protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: StreamHandlerOptions): Promise<void>
  unhandle(protocol: string, options?: AbortOptions): Promise<void>
}

/** The slice of libp2p's connection manager the service uses. */
export interface SynapseConnectionManager {
  openConnection(peer: PeerId | Multiaddr | Multiaddr[], options?: AbortOptions): Promise<Connection>
}

export interface SynapseComponents {
  registrar: SynapseRegistrar
  connectionManager: SynapseConnectionManager
  logger: ComponentLogger
}

export interface SynapseInit {
  /** Server: checks a client's credentials; throw a named error to refuse. */
  authenticate: AuthenticatePort
  /** Client: checks the server's credentials; throw to refuse. */
  authenticateServer: AuthenticateServerPort
  /** The credentials this node presents for a cell, in both roles. */
  credentialsFor: CredentialsPort
  /** Server dispatch; without one, the node only dials out (inbound calls fail UnknownMethodError). */
  handler?: SynapseHandler
  clock?: Clock
  /** Monotonic milliseconds for the elapsed time handed to `handler.settled` (read once per turn). Default performance.now(). */
  monotonicMs?: () => number
  errors?: WireErrorRegistry
  protocol?: string
  /** Default 1 MiB. */
  maxFrameBytes?: number
  /** Default 5 000. */
  handshakeTimeoutMs?: number
  /** Deadline of calls that pass no timeoutMs. Default 30 000. */
  defaultTimeoutMs?: number
  /** Calls + streams in flight per channel. Default 1024. */
  maxInflight?: number
  /** 'wait' (default) queues calls beyond maxInflight, up to maxWaitingCalls; 'throw' fails them. */
  inflightOverflow?: 'wait' | 'throw'
  /** Default 4096. */
  maxWaitingCalls?: number
  /** Channels per remote peer, each direction. Default 64. */
  maxChannelsPerPeer?: number
  /** Channels in total, each direction. Default 4096. Pending handshakes do not count here. */
  maxChannels?: number
  /**
   * Inbound handshakes pending (stream open, not yet accepted) from one peer. Default 8; the excess
   * is refused with TooManyHandshakesError, so one peer cannot hold more than this many slots.
   */
  maxPendingHandshakesPerPeer?: number
  /**
   * Inbound handshakes pending in total. Default 256. When full, a new stream evicts the oldest
   * pending handshake of the peer holding the most, so peers that never send HELLO cannot lock out
   * a caller whose handshake takes one round trip.
   */
  maxPendingHandshakes?: number
  /**
   * Batch size that triggers an immediate write. Default 63 KiB: a batch that reaches it by small
   * frames still fits, with yamux's 12-byte header, in one Noise message (65,519 bytes of text); at
   * 64 KiB every full batch became two Noise messages, the second a few dozen bytes, each
   * encrypted and written on its own.
   */
  flushBytes?: number
  /** Queue size above which send() returns false. Default 1 MiB. */
  highWaterBytes?: number
  /** Queue size at which send() throws BackpressureError. Default 8 MiB. */
  maxQueuedBytes?: number
  /** Items a server stream may run ahead of its consumer. Default 64. */
  streamWindow?: number
  /** Inbound synapse streams per connection (libp2p registrar limit). Default 256. */
  maxInboundStreams?: number
  /** Outbound synapse streams per connection. Default 256. */
  maxOutboundStreams?: number
}

export interface OpenOptions {
  signal?: AbortSignal
  /** W3C traceparent carried in HELLO. */
  traceparent?: string
  /** The release (artifact digest) this channel's calls are for: the server serves them from a replica of it when it runs one. */
  release?: string
}

/**
 * The synapse service: serves `/cell/synapse/1` and opens channels to cells on other peers.
 * Counters (`stats()`) cover live and closed channels/sessions.
 */
export class Synapse {
  readonly protocol: string
  private readonly components: SynapseComponents
  private readonly init: SynapseInit
  private readonly clock: Clock
  private readonly monotonicMs: () => number
  /** The clock read once per turn, shared by this service's channels and sessions (EndpointInit.now). */
  private readonly turnNow: () => number
  private readonly log: Logger
  private readonly errors: WireErrorRegistry
  private readonly limits: EndpointLimits
  private started = false
  /** Set by goAway(): new channels are refused while the sessions finish. */
  private leaving = false
  private readonly channels = new Set<Channel>()
  private readonly sessions = new Set<ServerSession>()
  private readonly outboundPerPeer = new Map<string, number>()
  private readonly inboundPerPeer = new Map<string, number>()
  /** Inbound sessions whose handshake is pending, per peer, oldest first. */
  private readonly pendingPerPeer = new Map<string, Set<ServerSession>>()
  private pendingTotal = 0
  /** Pending handshakes evicted to make room for newer ones. */
  private evictedHandshakes = 0
  private readonly closedClient = new StatsCounters()
  private readonly closedServer = new StatsCounters()

  constructor (components: SynapseComponents, init: SynapseInit) {
    this.components = components
    this.init = init
    this.protocol = init.protocol ?? SYNAPSE_PROTOCOL
    this.clock = init.clock ?? systemClock
    // One reading per batch of calls received or answered in the same turn (turn-clock.ts).
    this.monotonicMs = turnCached(init.monotonicMs ?? (() => performance.now()))
    const clock = this.clock
    this.turnNow = turnCached(() => clock.now())
    this.log = components.logger.forComponent('cell:synapse')
    this.errors = init.errors ?? defaultWireErrors
    this.limits = {
      maxFrameBytes: init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      flushBytes: init.flushBytes ?? DEFAULT_FLUSH_BYTES,
      highWaterBytes: init.highWaterBytes ?? 1024 * 1024,
      maxQueuedBytes: init.maxQueuedBytes ?? 8 * 1024 * 1024,
      maxDrainWaiters: 65_536,
      maxInflight: init.maxInflight ?? 1024,
      handshakeTimeoutMs: init.handshakeTimeoutMs ?? 5_000
    }
    this.onStream = this.onStream.bind(this)
  }

  readonly [Symbol.toStringTag] = '@cell/synapse'

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) return
    await this.components.registrar.handle(this.protocol, this.onStream, {
      maxInboundStreams: this.init.maxInboundStreams ?? 256,
      maxOutboundStreams: this.init.maxOutboundStreams ?? 256
    })
    this.leaving = false
    this.started = true
  }

  /**
   * The server side of a planned stop, before the connections go: new channels are refused, and
   * every open session says GOAWAY with the count of calls it read (the callers fail the rest with
   * ServerGoingAwayError, nothing ran, and call elsewhere), answers those calls for up to `graceMs`
   * and closes. Resolves when every session has closed or the grace ran out (or `signal` aborted).
   * Outbound channels (this node calling others) are untouched: a call it answers may wait on one.
   */
  async goAway (options: { graceMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    this.leaving = true
    await Promise.all([...this.sessions].map(async (s) => { await s.goAway(options.graceMs ?? 0, options.signal) }))
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.components.registrar.unhandle(this.protocol)
    for (const s of [...this.sessions]) void s.goAway(0)
    for (const c of [...this.channels]) c.abort(new SynapseNotStartedError('synapse service stopped'))
  }

  /** Opens an authenticated channel to `cell` on a peer; resolves after both ends accepted. */
  async open (target: PeerId | Multiaddr, cell: string, options: OpenOptions = {}): Promise<Channel> {
    if (!this.started) throw new SynapseNotStartedError('synapse service is not started')
    options.signal?.throwIfAborted()
    if (this.channels.size >= (this.init.maxChannels ?? 4096)) {
      throw new TooManyChannelsError(`${this.channels.size} synapse channels open (limit ${this.init.maxChannels ?? 4096})`)
    }
    const connection = await this.components.connectionManager.openConnection(target, { signal: options.signal })
    const peer = connection.remotePeer.toString()
    const perPeer = this.outboundPerPeer.get(peer) ?? 0
    const maxPerPeer = this.init.maxChannelsPerPeer ?? 64
    if (perPeer >= maxPerPeer) throw new TooManyChannelsError(`${perPeer} synapse channels open to ${peer} (limit ${maxPerPeer})`)
    this.outboundPerPeer.set(peer, perPeer + 1)
    let stream: Stream
    try {
      stream = await connection.newStream(this.protocol, {
        signal: options.signal,
        maxOutboundStreams: this.init.maxOutboundStreams ?? 256
      })
    } catch (err) {
      this.release(this.outboundPerPeer, peer)
      throw err
    }
    const channel = new Channel({
      stream,
      remotePeer: peer,
      clock: this.clock,
      now: this.turnNow,
      log: this.log.newScope(`out:${peer.slice(-8)}`),
      errors: this.errors,
      limits: this.limits,
      cell,
      ...(options.release !== undefined ? { release: options.release } : {}),
      defaultTimeoutMs: this.init.defaultTimeoutMs ?? 30_000,
      streamWindow: this.init.streamWindow ?? 64,
      inflightOverflow: this.init.inflightOverflow ?? 'wait',
      maxWaitingCalls: this.init.maxWaitingCalls ?? 4096
    })
    this.channels.add(channel)
    void channel.closed.then(() => {
      this.channels.delete(channel)
      this.release(this.outboundPerPeer, peer)
      this.closedClient.absorb(channel.counters)
    })
    const credentials = this.init.credentialsFor(cell)
    await channel.handshakeWith(credentials, options.traceparent, this.init.authenticateServer, options)
    return channel
  }

  /**
   * Whether `channel` may carry new calls: it is open, its server is not going away, and it presents this end's current credentials
   * for its cell. A caller whose chain rotated moves to a new channel (`closeWhenIdle` the old one)
   * before the server closes the old one for expiry.
   */
  current (channel: Channel): boolean {
    if (!channel.isOpen || channel.goingAway) return false
    try {
      const presented = channel.presented
      if (presented === undefined) return true
      const now = this.init.credentialsFor(channel.cell)
      // The same chain object until it rotates; no credentials at all (a public cell's anonymous caller) stay none.
      return presented === now || (presented.byteLength === 0 && now.byteLength === 0)
    } catch {
      return false
    }
  }

  /**
   * A channel to `cell` on `target` that reopens itself: before a call when this end's chain has
   * rotated or the channel ended, and once more when the server closed it for expiry (nothing ran).
   */
  lasting (target: PeerId | Multiaddr, cell: string): LastingChannel {
    return new LastingChannel(this, target, cell)
  }

  /** Totals over live and closed channels (client) and sessions (server). */
  stats (): { client: SynapseStats, server: SynapseStats } {
    return {
      client: sumStats([this.closedClient, ...[...this.channels].map(c => c.counters)], this.channels.size),
      server: sumStats([this.closedServer, ...[...this.sessions].map(s => s.counters)], this.sessions.size)
    }
  }

  /** Inbound handshakes pending now (all peers, or one). */
  pendingHandshakes (peer?: string): number {
    return peer === undefined ? this.pendingTotal : (this.pendingPerPeer.get(peer)?.size ?? 0)
  }

  /** Pending handshakes evicted so far to make room (the total pending cap was reached). */
  handshakeEvictions (): number {
    return this.evictedHandshakes
  }

  private onStream (stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString()
    const perPeer = this.inboundPerPeer.get(peer) ?? 0
    const maxPerPeer = this.init.maxChannelsPerPeer ?? 64
    const maxChannels = this.init.maxChannels ?? 4096
    const pendingOfPeer = this.pendingPerPeer.get(peer)?.size ?? 0
    const maxPendingPerPeer = this.init.maxPendingHandshakesPerPeer ?? 8
    const established = this.sessions.size - this.pendingTotal
    let refuse: Error | undefined
    if (!this.started || this.leaving) refuse = new SynapseNotStartedError('synapse service is stopping')
    else if (perPeer >= maxPerPeer) refuse = new TooManyChannelsError(`${perPeer} synapse channels open from ${peer} (limit ${maxPerPeer})`)
    else if (pendingOfPeer >= maxPendingPerPeer) refuse = new TooManyHandshakesError(`${pendingOfPeer} synapse handshakes pending from ${peer} (limit ${maxPendingPerPeer})`)
    else if (established >= maxChannels) refuse = new TooManyChannelsError(`${established} synapse channels open (limit ${maxChannels})`)
    if (refuse === undefined && this.pendingTotal >= (this.init.maxPendingHandshakes ?? 256)) this.evictPendingHandshake()
    const session: ServerSession = new ServerSession({
      stream,
      remotePeer: peer,
      clock: this.clock,
      now: this.turnNow,
      log: this.log.newScope(`in:${peer.slice(-8)}`),
      errors: this.errors,
      limits: this.limits,
      handler: this.init.handler,
      monotonicMs: this.monotonicMs,
      authenticate: this.init.authenticate,
      credentialsFor: this.init.credentialsFor,
      refuse,
      onOpen: () => { this.unpend(peer, session) }
    })
    if (refuse !== undefined) {
      // Answers REJECT at once so the client learns why; never counted as a channel.
      void session.closed.then(() => { this.closedServer.absorb(session.counters) })
      return
    }
    this.sessions.add(session)
    this.inboundPerPeer.set(peer, perPeer + 1)
    if (session.handshaking) {
      let pendingSet = this.pendingPerPeer.get(peer)
      if (pendingSet === undefined) this.pendingPerPeer.set(peer, pendingSet = new Set())
      pendingSet.add(session)
      this.pendingTotal++
    }
    void session.closed.then(() => {
      this.unpend(peer, session)
      this.sessions.delete(session)
      this.release(this.inboundPerPeer, peer)
      this.closedServer.absorb(session.counters)
    })
  }

  private unpend (peer: string, session: ServerSession): void {
    const set = this.pendingPerPeer.get(peer)
    if (set?.delete(session) !== true) return
    this.pendingTotal--
    if (set.size === 0) this.pendingPerPeer.delete(peer)
  }

  /** Refuses the oldest pending handshake of the peer holding the most pending slots. */
  private evictPendingHandshake (): void {
    let heaviest: [string, Set<ServerSession>] | undefined
    for (const entry of this.pendingPerPeer) if (heaviest === undefined || entry[1].size > heaviest[1].size) heaviest = entry
    const victim = heaviest?.[1].values().next().value
    if (heaviest === undefined || victim === undefined) return
    this.evictedHandshakes++
    // Free the slot now (the session's `closed` handler would, later) so the new stream fits.
    this.unpend(heaviest[0], victim)
    victim.refuseHandshake(new TooManyHandshakesError(`evicted: ${this.pendingTotal + 1} synapse handshakes pending (limit ${this.init.maxPendingHandshakes ?? 256})`))
  }

  private release (map: Map<string, number>, peer: string): void {
    const n = (map.get(peer) ?? 1) - 1
    if (n <= 0) map.delete(peer)
    else map.set(peer, n)
  }
}

/** libp2p service factory: `services: { synapse: synapse({ authenticate, ... }) }`. */
export function synapse (init: SynapseInit): (components: SynapseComponents) => Synapse {
  return (components) => new Synapse(components, init)
}
