// The node's end of the Unix socket to the WebTransport sidecar: decodes frames, keeps the
// sessions and their streams, and turns node-side writes into frames. Everything the sidecar sends
// is checked (frame size, known session and stream, credit, stream and session counts); a frame
// that breaks the protocol closes the bridge and the supervisor starts a fresh sidecar.
import type { Socket } from 'node:net'
import type { Logger } from '@libp2p/interface'
import {
  FRAME, FrameDecoder, BridgeFrameError, encodeFrame, encodeJson, encodeCredit, creditOf, jsonOf,
  NODE_STREAM_BIT, type Frame, type SidecarConfig
} from './bridge-frames.ts'
import { BridgeStream } from './bridge-stream.ts'

/** Unsent bytes the node lets pile up on the Unix socket before its streams wait. */
const MAX_SOCKET_BACKLOG_BYTES = 4 * 1024 * 1024

export interface BridgeLimits {
  maxSessions: number
  maxStreamsPerSession: number
}

export interface BridgeCounters {
  /** Sessions the sidecar refused before they reached the node, by reason (wrong-path, too-many-sessions, …). */
  rejected: Map<string, number>
  /** Streams reset because a session had too many. */
  streamsRefused: number
  /** Browser-opened streams the node took (all sessions). */
  streamsOpened: number
  /** Sessions closed because the node already held maxSessions. */
  sessionsRefused: number
}

export function newBridgeCounters (): BridgeCounters {
  return { rejected: new Map(), streamsRefused: 0, streamsOpened: 0, sessionsRefused: 0 }
}

export interface BridgeHandlers {
  onListening: (port: number) => void
  onSession: (session: BridgeSession) => void
  onClose: (err?: Error) => void
}

/** One WebTransport session (one browser connection). */
export class BridgeSession {
  readonly id: number
  readonly remote: string
  readonly streams = new Map<number, BridgeStream>()
  /** Who takes the streams the browser opens; streams opened before one is set wait in `early`. */
  private taker: ((s: BridgeStream) => void) | undefined
  private early: BridgeStream[] = []
  private nextNodeStream = 1
  private closeHandlers: Array<() => void> = []
  closed = false
  private readonly bridge: NodeBridge

  constructor (bridge: NodeBridge, id: number, remote: string) {
    this.bridge = bridge
    this.id = id
    this.remote = remote
  }

  /** Deliver browser-opened streams to `taker`, the waiting ones first. */
  onStream (taker: (s: BridgeStream) => void): void {
    this.taker = taker
    const waiting = this.early
    this.early = []
    for (const s of waiting) taker(s)
  }

  /** Streams the browser opens from now on wait in `early` until the next `onStream`. */
  holdStreams (): void { this.taker = undefined }

  onClose (handler: () => void): void {
    if (this.closed) handler()
    else this.closeHandlers.push(handler)
  }

  /** A stream the node opens; the sidecar resets it if the browser refuses. */
  openStream (): BridgeStream {
    if (this.closed) throw new BridgeFrameError(`session ${this.id} is closed`)
    if (this.streams.size >= this.bridge.limits.maxStreamsPerSession) throw new BridgeFrameError(`session ${this.id} has ${this.streams.size} streams open`)
    const id = (NODE_STREAM_BIT | this.nextNodeStream++) >>> 0
    const s = this.bridge.makeStream(this, id, 'outbound')
    this.bridge.write(encodeFrame(FRAME.streamOpen, this.id, id))
    return s
  }

  /** Ends the session (the browser sees the WebTransport session close). */
  close (): void {
    if (this.closed) return
    this.bridge.write(encodeJson(FRAME.sessionClose, this.id, { code: 0, reason: 'closed' }))
    this.ended()
  }

  /** @internal a browser-opened stream */
  arrived (s: BridgeStream): void {
    if (this.taker !== undefined) this.taker(s)
    else this.early.push(s)
  }

  /** @internal */
  ended (): void {
    if (this.closed) return
    this.closed = true
    for (const s of [...this.streams.values()]) s.onTransportClosed()
    this.streams.clear()
    this.early = []
    for (const h of this.closeHandlers.splice(0)) h()
  }
}

export class NodeBridge {
  readonly sessions = new Map<number, BridgeSession>()
  readonly counters: BridgeCounters
  private readonly decoder = new FrameDecoder()
  private closed = false
  /** Streams that stopped writing because the socket was congested; woken on its 'drain'. */
  private readonly waitingForDrain = new Set<() => void>()
  private readonly socket: Socket
  readonly limits: BridgeLimits
  private readonly handlers: BridgeHandlers
  private readonly log: Logger

  /** `counters` may outlive the bridge (the supervisor keeps one set across sidecar restarts). */
  constructor (socket: Socket, limits: BridgeLimits, handlers: BridgeHandlers, log: Logger, counters: BridgeCounters = newBridgeCounters()) {
    this.counters = counters
    this.socket = socket
    this.limits = limits
    this.handlers = handlers
    this.log = log
    socket.on('data', (chunk: Buffer) => {
      let frames: Frame[]
      try {
        frames = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
        for (const f of frames) this.onFrame(f)
      } catch (err) {
        this.fail(err instanceof BridgeFrameError ? err : new BridgeFrameError('bridge frame handling failed', { cause: err }))
      }
    })
    socket.on('drain', () => {
      const waiting = [...this.waitingForDrain]
      this.waitingForDrain.clear()
      for (const resume of waiting) resume()
    })
    socket.on('error', (err) => { this.fail(err) })
    socket.on('close', () => { this.fail() })
  }

  configure (config: SidecarConfig): void {
    this.write(encodeJson(FRAME.config, 0, config))
  }

  serveCertificate (cert: string, key: string): void {
    this.write(encodeJson(FRAME.certs, 0, { cert, key }))
  }

  close (): void { this.fail() }

  /** @internal */
  write (frame: Uint8Array): void {
    if (!this.closed) this.socket.write(frame)
  }

  /** @internal */
  makeStream (session: BridgeSession, id: number, direction: 'inbound' | 'outbound'): BridgeStream {
    const sid = session.id
    const stream = new BridgeStream({
      id: `${sid}.${id}`,
      streamId: id,
      direction,
      log: this.log.newScope(`${sid}:${direction}:${id}`),
      link: {
        data: (bytes) => { this.write(encodeFrame(FRAME.data, sid, id, bytes)) },
        fin: () => { this.write(encodeFrame(FRAME.fin, sid, id)) },
        reset: () => { this.write(encodeFrame(FRAME.reset, sid, id)) },
        credit: (bytes) => { this.write(encodeCredit(sid, id, bytes)) },
        release: () => { if (session.streams.get(id) === stream) session.streams.delete(id) },
        congested: () => this.socket.writableLength > MAX_SOCKET_BACKLOG_BYTES,
        whenUncongested: (resume) => { this.waitingForDrain.add(resume) }
      }
    })
    session.streams.set(id, stream)
    return stream
  }

  private onFrame (f: Frame): void {
    switch (f.type) {
      case FRAME.listening: {
        const port = jsonOf(f).port
        if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port > 65535) throw new BridgeFrameError('listening frame without a port')
        this.handlers.onListening(port)
        return
      }
      case FRAME.rejected: {
        const reason = String(jsonOf(f).reason ?? 'unknown').slice(0, 32)
        const key = ['wrong-path', 'too-many-sessions', 'too-many-pending', 'not-webtransport'].includes(reason) ? reason : 'other'
        this.counters.rejected.set(key, (this.counters.rejected.get(key) ?? 0) + 1)
        this.log('sidecar refused a session: %s', key)
        return
      }
      case FRAME.sessionOpen: {
        if (f.session === 0 || this.sessions.has(f.session)) throw new BridgeFrameError(`session ${f.session} opened twice`)
        const remote = String(jsonOf(f).remote ?? '')
        if (this.sessions.size >= this.limits.maxSessions) {
          this.counters.sessionsRefused++
          this.write(encodeJson(FRAME.sessionClose, f.session, { code: 503, reason: 'busy' }))
          return
        }
        const session = new BridgeSession(this, f.session, remote.slice(0, 64))
        this.sessions.set(f.session, session)
        session.onClose(() => { this.sessions.delete(session.id) })
        this.handlers.onSession(session)
        return
      }
      case FRAME.sessionClose:
        this.sessions.get(f.session)?.ended()
        return
      case FRAME.config:
      case FRAME.certs:
        throw new BridgeFrameError(`frame 0x${f.type.toString(16)} is not for the node`)
      default:
        break
    }
    const session = this.sessions.get(f.session)
    if (session === undefined) return // closed or refused meanwhile
    if (f.type === FRAME.streamOpen) {
      if (f.stream === 0 || (f.stream & NODE_STREAM_BIT) !== 0 || session.streams.has(f.stream)) throw new BridgeFrameError(`sidecar opened stream ${f.stream} outside its numbers`)
      if (session.streams.size >= this.limits.maxStreamsPerSession) {
        this.counters.streamsRefused++
        this.write(encodeFrame(FRAME.reset, f.session, f.stream))
        return
      }
      this.counters.streamsOpened++
      session.arrived(this.makeStream(session, f.stream, 'inbound'))
      return
    }
    const stream = session.streams.get(f.stream)
    if (stream === undefined) return // reset meanwhile
    switch (f.type) {
      case FRAME.data:
        stream.onBridgeData(f.payload)
        return
      case FRAME.fin: stream.onBridgeFin(); return
      case FRAME.reset: stream.onBridgeReset(); return
      case FRAME.credit: stream.onBridgeCredit(creditOf(f)); return
      default: throw new BridgeFrameError(`unexpected frame 0x${(f.type as number).toString(16)}`)
    }
  }

  private fail (err?: Error): void {
    if (this.closed) return
    this.closed = true
    if (err !== undefined) this.log.error('webtransport bridge closed: %s', err.message)
    this.socket.destroy()
    this.waitingForDrain.clear()
    for (const s of [...this.sessions.values()]) s.ended()
    this.sessions.clear()
    this.handlers.onClose(err)
  }
}
