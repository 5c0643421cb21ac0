// Transports of a full node: TCP, WebSockets and WebRTC-direct (browsers dial it without
// certificates). No WebTransport server exists for Node here, so full nodes do not listen on it.
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { webRTCDirect } from '@libp2p/webrtc'

export interface ListenPorts {
  host?: string
  tcp?: number
  ws?: number
  /** WebRTC-direct port; `false` leaves WebRTC out (node-datachannel is a native addon that some
   *  embedders, like test workers that start and stop many nodes in one process, are better without). */
  webrtc?: number | false
}

export function fullNodeTransports (ports: ListenPorts = {}): any[] {
  return ports.webrtc === false ? [tcp(), webSockets()] : [tcp(), webSockets(), webRTCDirect()]
}

export function listenAddresses (ports: ListenPorts = {}): string[] {
  const host = ports.host ?? '127.0.0.1'
  const ip = host.includes(':') ? 'ip6' : 'ip4'
  const addrs = [`/${ip}/${host}/tcp/${ports.tcp ?? 0}`, `/${ip}/${host}/tcp/${ports.ws ?? 0}/ws`]
  if (ports.webrtc !== false) addrs.push(`/${ip}/${host}/udp/${ports.webrtc ?? 0}/webrtc-direct`)
  return addrs
}

/** Only TCP, for short-lived CLI peers that call or publish. */
export function clientTransports (): any[] {
  return [tcp(), webSockets()]
}
