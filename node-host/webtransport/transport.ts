// The libp2p side of the WebTransport listener (libp2p/specs webtransport, server role). The Deno
// sidecar terminates QUIC and WebTransport; here each session becomes a libp2p connection:
//   1. the browser's first bidirectional stream carries Noise XX, the node answering as responder
//      with its identity key and the hashes of its certificates in the `webtransport_certhashes`
//      extension (the browser checks the hashes it dialed are among them);
//   2. the upgrader then takes the session with encryption and muxer negotiation skipped: every
//      later WebTransport stream is one libp2p stream (no yamux), in both directions.
// The rest of the node (identify, gossipsub, synapse) sees an ordinary connection from the browser's
// peer id. The transport only listens: full nodes dial each other over TCP.
import { serviceCapabilities, transportSymbol, TypedEventEmitter, type ComponentLogger, type Connection, type CreateListenerOptions, type Listener, type ListenerEvents, type Logger, type Metrics, type PeerId, type PrivateKey, type Transport, type Upgrader } from '@libp2p/interface'
import { noise } from '@chainsafe/libp2p-noise'
import { AbstractMultiaddrConnection, AbstractStreamMuxer, getThinWaistAddresses } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { base64url } from 'multiformats/bases/base64'
import { CellError, type RetryRule } from '../../core/errors.ts'
import type { BridgeSession } from './bridge.ts'
import type { BridgeStream } from './bridge-stream.ts'
import type { RunDir } from '../run-dir.ts'
import { advancePair, defaultRotation, loadPair, reportedHashes, rotationDueMs, savePair, type CertificatePair, type RotationPolicy } from './certificates.ts'
import { SidecarSupervisor, SidecarUnavailableError, denoBinary } from './sidecar.ts'

export class WebTransportHandshakeError extends CellError {
  static override readonly errorName = 'WebTransportHandshakeError'
  static override readonly retry: RetryRule = 'never'
}

const LISTEN_ADDR = /^\/(ip4|ip6)\/([^/]+)\/udp\/(\d+)\/quic-v1\/webtransport$/
/** setTimeout's ceiling; a rotation further away is re-checked then. */
const MAX_TIMER_MS = 2 ** 31 - 1

export interface WebTransportListenInit {
  /** Where the certificate pair is kept across restarts; a fresh pair per start without it. */
  certDir?: string
  /** The sidecar's socket directory (a full node's comes from node-host/run-dir.ts); a temporary one without it. */
  workDir?: () => Promise<RunDir>
  /** Certificate lifetime and when to rotate (default 10 days, rotating with 4 days left). */
  rotation?: RotationPolicy
  maxSessions?: number
  maxStreamsPerSession?: number
  /** The Deno binary (default: the one from the `deno` npm package). */
  deno?: string
  /** How long listen waits for the sidecar before the node goes on without it (default 15 s). */
  startTimeoutMs?: number
  now?: () => number
}

export interface WebTransportStats {
  sessions: number
  starts: number
  /** Sessions refused by the sidecar before they reached the node, by reason. */
  rejected: Record<string, number>
  /** Sessions whose Noise handshake failed. */
  handshakeFailures: number
  /** Streams refused for going over maxStreamsPerSession. */
  streamsRefused: number
  /** Browser-opened streams the node took, in total. */
  streamsOpened: number
  certhashes: string[]
}

interface Components {
  peerId: PeerId
  privateKey: PrivateKey
  logger: ComponentLogger
  upgrader: Upgrader
  metrics?: Metrics
}

/** The listener's live handles, for tests and the node's status (one per transport). */
export interface WebTransportHandle {
  stats: () => WebTransportStats
  /** Rotate now: serve the next certificate, prepare a new next one, advertise both. */
  rotate: () => Promise<void>
  sidecarPid: () => number | undefined
}

class BridgeConnection extends AbstractMultiaddrConnection {
  private readonly session: BridgeSession

  constructor (session: BridgeSession, init: ConstructorParameters<typeof AbstractMultiaddrConnection>[0]) {
    super(init)
    this.session = session
    session.onClose(() => { this.onTransportClosed() })
  }

  // The session carries no bytes of its own: everything goes over its streams.
  sendData (data: { byteLength: number }): { sentBytes: number, canSendMore: boolean } { return { sentBytes: data.byteLength, canSendMore: true } }
  sendReset (): void { this.session.close() }
  async sendClose (): Promise<void> { this.session.close() }
  sendPause (): void {}
  sendResume (): void {}
}

class BridgeMuxer extends AbstractStreamMuxer<BridgeStream> {
  private readonly session: BridgeSession

  constructor (maConn: ConstructorParameters<typeof AbstractStreamMuxer>[0], session: BridgeSession) {
    super(maConn, { protocol: '/webtransport', name: 'muxer' })
    this.session = session
    session.onStream((s) => { this.onRemoteStream(s) })
  }

  onCreateStream (): BridgeStream { return this.session.openStream() }
  onData (): void {}
  sendReset (): void { this.session.close() }
}

class WebTransportListener extends TypedEventEmitter<ListenerEvents> implements Listener {
  private supervisor: SidecarSupervisor | undefined
  private pair: CertificatePair | undefined
  private host = ''
  private family: 'ip4' | 'ip6' = 'ip4'
  private port = 0
  private rotationTimer: ReturnType<typeof setTimeout> | undefined
  private readonly shutdown = new AbortController()
  private handshakeFailures = 0
  private readonly log: Logger
  private readonly policy: RotationPolicy
  private readonly now: () => number
  private readonly components: Components
  private readonly init: WebTransportListenInit
  private readonly upgrader: Upgrader
  private readonly handle: (h: WebTransportHandle) => void

  constructor (components: Components, init: WebTransportListenInit, upgrader: Upgrader, handle: (h: WebTransportHandle) => void) {
    super()
    this.components = components
    this.init = init
    this.upgrader = upgrader
    this.handle = handle
    this.log = components.logger.forComponent('cell:webtransport')
    this.policy = init.rotation ?? defaultRotation()
    this.now = init.now ?? Date.now
  }

  async listen (ma: Multiaddr): Promise<void> {
    const m = LISTEN_ADDR.exec(ma.toString())
    if (m == null) throw new WebTransportHandshakeError(`not a WebTransport listen address: ${ma.toString()}`)
    this.family = m[1] as 'ip4' | 'ip6'
    this.host = m[2]
    const deno = this.init.deno ?? denoBinary()
    if (deno === undefined) throw new WebTransportHandshakeError('no Deno binary for the WebTransport sidecar')
    this.pair = await advancePair(this.init.certDir !== undefined ? await loadPair(this.init.certDir) : undefined, this.now(), this.policy)
    if (this.init.certDir !== undefined) await savePair(this.init.certDir, this.pair)
    this.supervisor = new SidecarSupervisor({
      deno,
      host: this.host,
      port: Number(m[3]),
      limits: { maxSessions: this.init.maxSessions ?? 256, maxStreamsPerSession: this.init.maxStreamsPerSession ?? 256 },
      certificate: () => ({ cert: this.pair!.current.cert, key: this.pair!.current.key }),
      onSession: (session) => { void this.onSession(session) },
      onListening: (port) => {
        if (port === this.port) return
        this.port = port
        this.safeDispatchEvent('listening')
      },
      log: this.log,
      ...(this.init.workDir !== undefined ? { workDir: this.init.workDir } : {}),
      ...(this.init.startTimeoutMs !== undefined ? { startTimeoutMs: this.init.startTimeoutMs } : {})
    })
    this.handle({ stats: () => this.stats(), rotate: async () => { await this.rotate(true) }, sidecarPid: () => this.supervisor?.pid })
    this.scheduleRotation()
    try {
      this.port = await this.supervisor.start({ signal: this.shutdown.signal })
    } catch (err) {
      if (!(err instanceof SidecarUnavailableError)) throw err
      // The node runs on without it; the supervisor keeps trying and the address appears when it listens.
      this.log.error('%s; the node runs without a WebTransport address until it does', err.message)
      return
    }
    this.safeDispatchEvent('listening')
  }

  getAddrs (): Multiaddr[] {
    if (this.pair === undefined || this.port === 0) return []
    const suffix = `/quic-v1/webtransport/certhash/${this.pair.current.hash}/certhash/${this.pair.next.hash}`
    return getThinWaistAddresses(multiaddr(`/${this.family}/${this.host}/udp/${this.port}`), this.port).map(a => multiaddr(`${a.toString()}${suffix}`))
  }

  updateAnnounceAddrs (addrs: Multiaddr[]): void {
    if (this.pair === undefined) return
    for (let i = 0; i < addrs.length; i++) {
      const s = addrs[i].toString()
      if (s.endsWith('/quic-v1/webtransport')) addrs[i] = multiaddr(`${s}/certhash/${this.pair.current.hash}/certhash/${this.pair.next.hash}`)
    }
  }

  async close (): Promise<void> {
    this.shutdown.abort()
    clearTimeout(this.rotationTimer)
    await this.supervisor?.stop()
    this.supervisor = undefined
    this.safeDispatchEvent('close')
  }

  private stats (): WebTransportStats {
    const c = this.supervisor?.counters
    return {
      sessions: this.sessionCount,
      starts: this.supervisor?.starts ?? 0,
      rejected: Object.fromEntries(c?.rejected ?? []),
      handshakeFailures: this.handshakeFailures,
      streamsRefused: c?.streamsRefused ?? 0,
      streamsOpened: c?.streamsOpened ?? 0,
      certhashes: this.pair !== undefined ? [this.pair.current.hash, this.pair.next.hash] : []
    }
  }

  private sessionCount = 0

  private scheduleRotation (): void {
    clearTimeout(this.rotationTimer)
    if (this.pair === undefined || this.shutdown.signal.aborted) return
    const inMs = Math.max(1000, Math.min(MAX_TIMER_MS, rotationDueMs(this.pair, this.policy) - this.now()))
    this.rotationTimer = setTimeout(() => { void this.rotate(false).catch((err: Error) => { this.log.error('certificate rotation failed: %s', err.message) }) }, inMs)
    this.rotationTimer.unref()
  }

  private async rotate (force: boolean): Promise<void> {
    if (this.pair === undefined) return
    const before = this.pair
    this.pair = force ? await advancePair(before, Math.max(this.now(), rotationDueMs(before, this.policy)), this.policy) : await advancePair(before, this.now(), this.policy)
    if (this.pair !== before) {
      if (this.init.certDir !== undefined) await savePair(this.init.certDir, this.pair)
      this.supervisor?.serveCertificate(this.pair.current.cert, this.pair.current.key)
      this.log('rotated the WebTransport certificate; serving %s, next %s', this.pair.current.hash, this.pair.next.hash)
      // The transport manager re-reads getAddrs and the node re-announces them.
      this.safeDispatchEvent('listening')
    }
    this.scheduleRotation()
  }

  private async onSession (session: BridgeSession): Promise<void> {
    this.sessionCount++
    session.onClose(() => { this.sessionCount-- })
    const signal = this.upgrader.createInboundAbortSignal(this.shutdown.signal)
    const [ip, port] = splitHostPort(session.remote)
    const remoteAddr = multiaddr(`/${ip.includes(':') ? 'ip6' : 'ip4'}/${ip}/udp/${port}/quic-v1/webtransport`)
    try {
      const first = await new Promise<BridgeStream>((resolve, reject) => {
        session.onStream((s) => { session.holdStreams(); resolve(s) })
        signal.addEventListener('abort', () => { reject(new WebTransportHandshakeError('no Noise stream before the upgrade deadline')) }, { once: true })
        session.onClose(() => { reject(new WebTransportHandshakeError('session closed before its Noise stream')) })
      })
      const pair = this.pair
      if (pair === undefined) throw new WebTransportHandshakeError('listener closed')
      const encrypter = noise({ extensions: { webtransportCerthashes: reportedHashes(pair).map(h => base64url.decode(h)) } })(this.components)
      const { remotePeer } = await encrypter.secureInbound(first, { signal, skipStreamMuxerNegotiation: true })
      // The handshake stream has done its work; the browser closes its side too.
      await first.close({ signal }).catch(() => { first.abort(new WebTransportHandshakeError('handshake stream did not close')) })
      const maConn = new BridgeConnection(session, { remoteAddr, direction: 'inbound', log: this.log.newScope(`session:${session.id}`) })
      await this.upgrader.upgradeInbound(maConn, {
        skipEncryption: true,
        skipProtection: true,
        remotePeer,
        muxerFactory: { protocol: '/webtransport', createStreamMuxer: (c) => new BridgeMuxer(c, session) },
        signal
      })
    } catch (err) {
      this.handshakeFailures++
      this.log('webtransport session %d from %s failed: %s', session.id, session.remote, (err as Error).message)
      session.close()
    } finally {
      signal.clear()
    }
  }
}

function splitHostPort (remote: string): [string, string] {
  const at = remote.lastIndexOf(':')
  const ip = at > 0 ? remote.slice(0, at).replace(/^\[|\]$/g, '') : '0.0.0.0'
  const port = at > 0 ? remote.slice(at + 1) : '0'
  return [/^[0-9a-fA-F.:]+$/.test(ip) ? ip : '0.0.0.0', /^\d{1,5}$/.test(port) ? port : '0']
}

class WebTransportListenTransport implements Transport {
  readonly [Symbol.toStringTag] = '@cell/webtransport-listener'
  readonly [transportSymbol] = true
  readonly [serviceCapabilities] = ['@libp2p/transport']

  private readonly components: Components
  private readonly init: WebTransportListenInit
  private readonly handle: (h: WebTransportHandle) => void

  constructor (components: Components, init: WebTransportListenInit, handle: (h: WebTransportHandle) => void) {
    this.components = components
    this.init = init
    this.handle = handle
  }

  async dial (): Promise<Connection> {
    throw new WebTransportHandshakeError('full nodes do not dial WebTransport')
  }

  createListener (options: CreateListenerOptions): Listener {
    return new WebTransportListener(this.components, this.init, options.upgrader, this.handle)
  }

  listenFilter (addrs: Multiaddr[]): Multiaddr[] { return addrs.filter(a => LISTEN_ADDR.test(a.toString())) }
  dialFilter (): Multiaddr[] { return [] }
}

/**
 * A libp2p transport that listens for WebTransport through the Deno sidecar. `onHandle` receives the
 * listener's handle (stats, rotate) once it listens.
 */
export function webTransportListener (init: WebTransportListenInit = {}, onHandle: (h: WebTransportHandle) => void = () => {}): (components: Components) => Transport {
  return (components) => new WebTransportListenTransport(components, init, onHandle)
}
