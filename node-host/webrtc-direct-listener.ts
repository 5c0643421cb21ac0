// The WebRTC-direct listener of a full node, bounded before the upgrade. @libp2p/webrtc answers every
// STUN binding request whose username is a new (address, port, ufrag) by creating a native
// RTCPeerConnection (node-datachannel: a thread and a descriptor each, about 130 kB), which lives
// until the connection upgrades or the 10 s inbound deadline aborts it; libp2p's connection limits
// see it only after DTLS and Noise. STUN is one UDP datagram, and its source address can be forged.
// Measured against a real `cell up`: 3,000 such datagrams (about 300 kB, sent within 6 s, one
// source) raised the node to 2,922 threads and 2,936 descriptors and its RSS from 132 to 514 MiB,
// which it did not give back; a steady flood of a few hundred datagrams a second holds thousands.
// This wraps the listener so that one remote address has at most `perHost` such connections in
// progress and all addresses together `total`; a request past either is dropped before any native
// object exists, and reported (the node counts it in cell_listener_garbage_total{listener=
// "webrtc-direct"}). Forged sources can no longer grow the node.
//
// They could still fill `total`: a request whose source is forged (or an address of the attacker's
// that never answers) never completes ICE, yet held its slot until the 10 s deadline, so 64 such
// requests every 10 s (6.4 a second, from 8 addresses) kept every honest browser out. Now a request
// refused for a full host or a full total takes the slot of the oldest connection in progress there
// that is older than `staleMs` (1 s) and has not connected: that one is aborted and counted as
// `Evicted`. An honest peer connects well within a second, so a flood must now fill every slot
// within `staleMs` (64 requests a second, not 64 per 10 s) to keep anyone out.
import type { Listener } from '@libp2p/interface'
import { InboundSlots, oldestStale, positiveLimits, wrapListeners, type SlotRefusal } from '../core/mesh/inbound-failures.ts'
import { CellError } from '../core/errors.ts'

export interface WebRTCDirectListenerLimits {
  /** Connections one remote address may have between its first STUN request and the end of its upgrade. */
  perHost: number
  /** The same, all addresses together. */
  total: number
  /** Age past which a connection in progress that has not connected gives its slot to a new request (ms). */
  staleMs: number
}

export const WEBRTC_DIRECT_LISTENER_LIMITS: Readonly<WebRTCDirectListenerLimits> = { perHost: 8, total: 64, staleMs: 1_000 }

/** What the listener reports: a request dropped for a full host or total, or a stale connection in progress aborted for a new request. */
export type WebRTCDirectRefusal = SlotRefusal | 'Evicted'

/** The reason a stale connection in progress was aborted (its slot went to a newer request). */
export class WebRTCDirectEvictedError extends CellError {
  static override readonly errorName = 'WebRTCDirectEvictedError'
}

/** The part of @libp2p/webrtc's WebRTC-direct listener this wraps (called through `this` by its STUN callback). */
interface UpstreamListener {
  incomingConnection: (ufrag: string, remoteHost: string, remotePort: number, signal: AbortSignal) => Promise<void>
  connections: Map<string, { connectionState?: string }>
}

interface InProgress {
  host: string
  startedMs: number
  controller: AbortController
  /** Its slot already went to a newer request: its end gives none back. */
  evicted: boolean
}

/** `factory` (webRTCDirect()) with listeners bounded by `limits`; `onRefused` is told each dropped request. */
export function boundWebRTCDirectListener<T> (factory: T, limits: Partial<WebRTCDirectListenerLimits> = {}, onRefused?: (reason: WebRTCDirectRefusal, detail: string) => void): T {
  const l = positiveLimits('WebRTC-direct listener', { ...WEBRTC_DIRECT_LISTENER_LIMITS, ...limits })
  return wrapListeners(factory, (options, create) => bound(create(options), l, onRefused))
}

function bound (listener: Listener, l: WebRTCDirectListenerLimits, onRefused?: (reason: WebRTCDirectRefusal, detail: string) => void): Listener {
  const up = listener as unknown as UpstreamListener
  // A later @libp2p/webrtc without these is a different implementation: its STUN requests would go
  // unbounded, so say so at start (node-host/webrtc-direct-listener.test.ts fails too).
  if (typeof up.incomingConnection !== 'function' || !(up.connections instanceof Map)) throw new Error('@libp2p/webrtc listener has no incomingConnection/connections any more: review node-host/webrtc-direct-listener.ts')
  const slots = new InboundSlots(l.perHost, l.total)
  /** Keys (the upstream's `host:port:ufrag`) between their first STUN request and the end of their upgrade, oldest first. */
  const inProgress = new Map<string, InProgress>()
  const incoming = up.incomingConnection.bind(listener)
  const report = (reason: WebRTCDirectRefusal, detail: string): void => { try { onRefused?.(reason, detail) } catch {} }

  /** Aborts the oldest connection in progress (of `host`, or of any host) older than staleMs that has not connected; whether there was one. */
  const evictStale = (host: string | undefined): boolean => {
    const now = Date.now()
    // One that reached 'connected' (ICE and DTLS done) is an honest peer finishing its upgrade.
    const stale = oldestStale(inProgress, host, l.staleMs, now, (key) => up.connections.get(key)?.connectionState !== 'connected')
    if (stale === undefined) return false
    const [key, e] = stale
    e.evicted = true
    inProgress.delete(key)
    slots.give(e.host)
    e.controller.abort(new WebRTCDirectEvictedError(`${key} had not connected after ${now - e.startedMs} ms; its slot went to a newer request`))
    report('Evicted', `${e.host}: a connection in progress for ${now - e.startedMs} ms that had not connected, for a newer request`)
    return true
  }

  up.incomingConnection = async (ufrag, remoteHost, remotePort, signal) => {
    const key = `${remoteHost}:${remotePort}:${ufrag}`
    // A retransmitted request of one in progress: the upstream would start a second peer connection
    // while its first is still being made (its map is filled only after an await).
    if (inProgress.has(key)) return
    // Established: the upstream ignores it.
    if (up.connections.has(key)) { await incoming(ufrag, remoteHost, remotePort, signal); return }
    let refused = slots.tryTake(remoteHost)
    if (refused !== undefined && evictStale(refused === 'TooManyPendingFromHost' ? remoteHost : undefined)) refused = slots.tryTake(remoteHost)
    if (refused !== undefined) {
      report(refused, slots.explain(refused, remoteHost, 'WebRTC-direct connections in progress'))
      return
    }
    const entry: InProgress = { host: remoteHost, startedMs: Date.now(), controller: new AbortController(), evicted: false }
    inProgress.set(key, entry)
    try {
      await incoming(ufrag, remoteHost, remotePort, AbortSignal.any([signal, entry.controller.signal]))
    } finally {
      if (!entry.evicted) {
        inProgress.delete(key)
        slots.give(remoteHost)
      }
    }
  }
  return listener
}
