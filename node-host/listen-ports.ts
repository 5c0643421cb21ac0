// Listen ports a restarted node reuses: the ports it listened on last time (from the fleet-intent
// store), so the bootstrap addresses other nodes and people hold stay valid. A port given by a flag
// wins; a remembered port another process took meanwhile falls back to a fresh one, said in a note.
import { createServer } from 'node:net'
import { createSocket } from 'node:dgram'
import type { ListenPorts } from './transports.ts'
import type { ListenPortsRecord } from './fleet-intent.ts'

export interface ReusedPorts {
  ports: ListenPorts
  /** One line per remembered port that could not be reused. */
  notes: string[]
}

export async function reuseListenPorts (wanted: ListenPorts, remembered: ListenPortsRecord, options: { signal?: AbortSignal } = {}): Promise<ReusedPorts> {
  const host = wanted.host ?? '127.0.0.1'
  const ports: ListenPorts = { ...wanted }
  const notes: string[] = []
  for (const kind of ['tcp', 'ws', 'webrtc', 'webtransport'] as const) {
    options.signal?.throwIfAborted()
    const last = remembered[kind]
    // WebTransport is on only when asked for (a port); asked for "any port" (0), the last one is reused.
    if ((kind === 'webtransport' ? wanted[kind] !== 0 : wanted[kind] !== undefined) || last === undefined) continue
    if (await portFree(kind === 'webrtc' || kind === 'webtransport' ? 'udp' : 'tcp', host, last)) ports[kind] = last
    else notes.push(`${kind} port ${last} (used last time) is taken; listening on a fresh port`)
  }
  return { ports, notes }
}

/**
 * `ports` with a WebRTC-direct port that is free for UDP now, when it asks for any (unset or 0).
 * @libp2p/webrtc maps port 0 itself with get-port, which checks the number against TCP only: it can
 * hand node-datachannel a port another process's UDP socket holds, and the node then fails to start
 * ("Failed to register ICE UDP mux listener", seen with several nodes starting at once on one host).
 * The kernel's choice for a UDP socket bound to port 0 is free for UDP; only a bind in the moment
 * between this socket's close and the listener's bind can still take it.
 */
export async function withFreeWebrtcPort (ports: ListenPorts): Promise<ListenPorts> {
  if (ports.webrtc === false || (ports.webrtc !== undefined && ports.webrtc !== 0)) return ports
  return { ...ports, webrtc: await freeUdpPort(ports.host ?? '127.0.0.1') }
}

/** A UDP port no socket holds on `host` now: the kernel's choice for a socket bound to port 0. */
export async function freeUdpPort (host: string): Promise<number> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind(0, host, () => { resolve() })
    })
    return sock.address().port
  } finally {
    await new Promise<void>((resolve) => { sock.close(() => { resolve() }) })
  }
}

/** The ports a node listens on, from its multiaddrs (TCP, WebSockets, WebRTC-direct, WebTransport). */
export function listeningPorts (addrs: readonly string[]): ListenPortsRecord {
  const out: ListenPortsRecord = {}
  for (const a of addrs) {
    const wt = /\/udp\/(\d+)\/quic-v1\/webtransport/.exec(a)
    if (wt != null) { out.webtransport ??= Number(wt[1]); continue }
    const udp = /\/udp\/(\d+)\/webrtc-direct/.exec(a)
    if (udp != null) { out.webrtc ??= Number(udp[1]); continue }
    const tcp = /\/tcp\/(\d+)(\/ws)?(\/|$)/.exec(a)
    if (tcp == null || a.includes('/wss')) continue
    if (tcp[2] != null) out.ws ??= Number(tcp[1])
    else out.tcp ??= Number(tcp[1])
  }
  return out
}

async function portFree (proto: 'tcp' | 'udp', host: string, port: number): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    if (proto === 'udp') {
      const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4')
      sock.once('error', () => { sock.close(); resolve(false) })
      sock.bind(port, host, () => { sock.close(() => { resolve(true) }) })
      return
    }
    const server = createServer()
    server.once('error', () => { resolve(false) })
    server.listen({ port, host, exclusive: true }, () => { server.close(() => { resolve(true) }) })
  })
}
