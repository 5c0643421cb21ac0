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
// "webrtc-direct"}). Forged sources can still fill `total` (honest browsers then wait for the flood
// to pass: their STUN is retried), but they can no longer grow the node.
import type { Listener } from '@libp2p/interface'
import { InboundSlots, positiveLimits, wrapListeners, type SlotRefusal } from '../core/mesh/inbound-failures.ts'

export interface WebRTCDirectListenerLimits {
  /** Connections one remote address may have between its first STUN request and the end of its upgrade. */
  perHost: number
  /** The same, all addresses together. */
  total: number
}

export const WEBRTC_DIRECT_LISTENER_LIMITS: Readonly<WebRTCDirectListenerLimits> = { perHost: 8, total: 64 }

/** The part of @libp2p/webrtc's WebRTC-direct listener this wraps (called through `this` by its STUN callback). */
interface UpstreamListener {
  incomingConnection: (ufrag: string, remoteHost: string, remotePort: number, signal: AbortSignal) => Promise<void>
  connections: Map<string, unknown>
}

/** `factory` (webRTCDirect()) with listeners bounded by `limits`; `onRefused` is told each dropped request. */
export function boundWebRTCDirectListener<T> (factory: T, limits: Partial<WebRTCDirectListenerLimits> = {}, onRefused?: (reason: SlotRefusal, detail: string) => void): T {
  const l = positiveLimits('WebRTC-direct listener', { ...WEBRTC_DIRECT_LISTENER_LIMITS, ...limits })
  return wrapListeners(factory, (options, create) => bound(create(options), l, onRefused))
}

function bound (listener: Listener, l: WebRTCDirectListenerLimits, onRefused?: (reason: SlotRefusal, detail: string) => void): Listener {
  const up = listener as unknown as UpstreamListener
  // A later @libp2p/webrtc without these is a different implementation: its STUN requests would go
  // unbounded, so say so at start (node-host/webrtc-direct-listener.test.ts fails too).
  if (typeof up.incomingConnection !== 'function' || !(up.connections instanceof Map)) throw new Error('@libp2p/webrtc listener has no incomingConnection/connections any more: review node-host/webrtc-direct-listener.ts')
  const slots = new InboundSlots(l.perHost, l.total)
  /** Keys (the upstream's `host:port:ufrag`) between their first STUN request and the end of their upgrade. */
  const inProgress = new Set<string>()
  const incoming = up.incomingConnection.bind(listener)
  up.incomingConnection = async (ufrag, remoteHost, remotePort, signal) => {
    const key = `${remoteHost}:${remotePort}:${ufrag}`
    // A retransmitted request of one in progress: the upstream would start a second peer connection
    // while its first is still being made (its map is filled only after an await).
    if (inProgress.has(key)) return
    // Established: the upstream ignores it.
    if (up.connections.has(key)) { await incoming(ufrag, remoteHost, remotePort, signal); return }
    const refused = slots.tryTake(remoteHost)
    if (refused !== undefined) {
      try { onRefused?.(refused, slots.explain(refused, remoteHost, 'WebRTC-direct connections in progress')) } catch {}
      return
    }
    inProgress.add(key)
    try {
      await incoming(ufrag, remoteHost, remotePort, signal)
    } finally {
      inProgress.delete(key)
      slots.give(remoteHost)
    }
  }
  return listener
}
