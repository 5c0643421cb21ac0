// The WebSockets listener of a full node, bounded before the WebSocket handshake. @libp2p/websockets
// 10 accepts every TCP connection on its port, waits without a deadline for the first byte, then
// hands the socket to an HTTP server with Node's defaults (60 s to send headers, checked every 30 s);
// libp2p's own limits (5 new connections per host per second, upgrades in progress, connection
// caps) only see a connection once its WebSocket handshake is done. So silent or half-sent
// connections on that port were held without limit: 1,500 from one host stayed open (1,529 file
// descriptors in the node) for as long as the client kept them, where the TCP port held 10.
// This wraps the listener so that a connection must finish its WebSocket handshake within
// `handshakeMs`, one remote host has at most `perHost` connections before that point and all hosts
// together `total`; a refused or timed-out connection is closed and reported (the node counts it in
// cell_listener_garbage_total{listener="websockets"}). From the handshake on, the connection is
// libp2p's (core/mesh/inbound-failures.ts caps its upgrades per host).
// A connection refused for a full host or total takes the place of the oldest one there that has
// waited `staleMs` (2 s) without its handshake (closed, reason `Evicted`): an honest client sends
// its handshake right after connecting, so 16 hosts holding 8 silent connections each no longer
// keep everyone out for the 10 s of their deadline; they must now refill all 128 places every 2 s.
import type { Socket } from 'node:net'
import type { Listener } from '@libp2p/interface'
import { CellError } from '../core/errors.ts'
import { InboundSlots, oldestStale, positiveLimits, wrapListeners, type SlotRefusal } from '../core/mesh/inbound-failures.ts'

export interface WebSocketsListenerLimits {
  /** Time from accept to the WebSocket handshake (the HTTP upgrade request), ms. */
  handshakeMs: number
  /** Connections one remote host may have open before their handshake. */
  perHost: number
  /** Connections all hosts together may have open before their handshake. */
  total: number
  /** Wait without a handshake past which a connection gives its place to a new one refused for a full host or total, ms. */
  staleMs: number
}

export const WEBSOCKETS_LISTENER_LIMITS: Readonly<WebSocketsListenerLimits> = { handshakeMs: 10_000, perHost: 8, total: 128, staleMs: 2_000 }

/** Why a connection on the WebSockets port was closed before its handshake. */
export type WebSocketsRefusal = 'HandshakeTimeout' | 'Evicted' | SlotRefusal

/** A connection on the WebSockets port closed before its WebSocket handshake (see `reason`). */
export class WebSocketsHandshakeRefusedError extends CellError {
  static override readonly errorName = 'WebSocketsHandshakeRefusedError'
  readonly reason: WebSocketsRefusal | 'ListenerClosed'
  constructor (reason: WebSocketsRefusal | 'ListenerClosed', message: string) {
    super(message)
    this.reason = reason
  }
}

/** The parts of @libp2p/websockets' listener this wraps (instance methods it calls through `this`). */
interface UpstreamListener {
  onSocketConnection: (socket: Socket) => Promise<void>
  onUpgrade: (req: unknown, socket: Socket, head: unknown) => void
  close: () => Promise<void>
}

/** `factory` (webSockets() or a wrapper of it) with listeners bounded by `limits`; `onRefused` is told each refusal. */
export function boundWebSocketsListener<T> (factory: T, limits: Partial<WebSocketsListenerLimits> = {}, onRefused?: (reason: WebSocketsRefusal, detail: string) => void): T {
  const l = positiveLimits('WebSockets listener', { ...WEBSOCKETS_LISTENER_LIMITS, ...limits })
  return wrapListeners(factory, (options, create) => bound(create(options), l, onRefused))
}

function bound (listener: Listener, l: WebSocketsListenerLimits, onRefused?: (reason: WebSocketsRefusal, detail: string) => void): Listener {
  const up = listener as unknown as UpstreamListener
  // A later @libp2p/websockets without these is a different implementation: its sockets would go
  // unbounded, so say so at start (node-host/websockets-listener.test.ts fails too).
  if (typeof up.onSocketConnection !== 'function' || typeof up.onUpgrade !== 'function') throw new Error('@libp2p/websockets listener has no onSocketConnection/onUpgrade any more: review node-host/websockets-listener.ts')
  /** Sockets before their handshake, oldest first. */
  const pending = new Map<Socket, { host: string, startedMs: number, timer: ReturnType<typeof setTimeout> }>()
  const slots = new InboundSlots(l.perHost, l.total)
  const release = (socket: Socket): void => {
    const p = pending.get(socket)
    if (p === undefined) return
    clearTimeout(p.timer)
    pending.delete(socket)
    slots.give(p.host)
  }
  const refuse = (socket: Socket, reason: WebSocketsRefusal, detail: string): void => {
    try { onRefused?.(reason, detail) } catch {}
    // With an error, so the upstream handler waiting for the first byte ends too.
    socket.destroy(new WebSocketsHandshakeRefusedError(reason, detail))
  }
  /** Closes the oldest socket (of `host`, or of any host) that has waited staleMs without its handshake; whether there was one. */
  const evictStale = (host: string | undefined): boolean => {
    const now = Date.now()
    const stale = oldestStale(pending, host, l.staleMs, now)
    if (stale === undefined) return false
    const [socket, p] = stale
    release(socket)
    refuse(socket, 'Evicted', `${p.host} waited ${now - p.startedMs} ms without a WebSocket handshake; its place went to a newer connection`)
    return true
  }
  const onSocket = up.onSocketConnection.bind(listener)
  up.onSocketConnection = async (socket: Socket): Promise<void> => {
    // The upstream handler listens for errors only after the first byte; a socket destroyed with an
    // error (below) or reset before that would otherwise throw out of the process.
    socket.on('error', () => {})
    const host = socket.remoteAddress ?? 'unknown'
    let refused = slots.tryTake(host)
    if (refused !== undefined && evictStale(refused === 'TooManyPendingFromHost' ? host : undefined)) refused = slots.tryTake(host)
    if (refused !== undefined) {
      refuse(socket, refused, slots.explain(refused, host, 'connections before their WebSocket handshake'))
      return
    }
    const timer = setTimeout(() => {
      release(socket)
      refuse(socket, 'HandshakeTimeout', `${host} did not finish a WebSocket handshake within ${l.handshakeMs} ms`)
    }, l.handshakeMs)
    pending.set(socket, { host, startedMs: Date.now(), timer })
    socket.once('close', () => { release(socket) })
    await onSocket(socket)
  }
  const onUpgrade = up.onUpgrade.bind(listener)
  up.onUpgrade = (req, socket, head) => {
    // The handshake request arrived: from here libp2p's limits and upgrade timeout hold it.
    release(socket)
    onUpgrade(req, socket, head)
  }
  const close = up.close.bind(listener)
  up.close = async () => {
    for (const socket of [...pending.keys()]) {
      release(socket)
      socket.destroy(new WebSocketsHandshakeRefusedError('ListenerClosed', 'the WebSockets listener closed'))
    }
    await close()
  }
  return listener
}
