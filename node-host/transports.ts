// Transports of a full node: TCP, WebSockets, WebRTC-direct (browsers dial it without
// certificates) and, when a port is given, WebTransport through the Deno sidecar (webtransport/).
import { tcp } from '@libp2p/tcp'
import { webSocketsClosingAborted } from '../core/mesh/websockets-dial.ts'
import { webRTCDirect } from '@libp2p/webrtc'
import { boundWebSocketsListener, type WebSocketsListenerLimits, type WebSocketsRefusal } from './websockets-listener.ts'
import { boundWebRTCDirectListener, type WebRTCDirectListenerLimits, type WebRTCDirectRefusal } from './webrtc-direct-listener.ts'
import { webTransportListener, type WebTransportHandle, type WebTransportListenInit } from './webtransport/transport.ts'

export interface ListenPorts {
  host?: string
  tcp?: number
  ws?: number
  /** WebRTC-direct port; `false` leaves WebRTC out (node-datachannel is a native addon that some
   *  embedders, like test workers that start and stop many nodes in one process, are better without). */
  webrtc?: number | false
  /** WebTransport (UDP) port; unset or `false`: no WebTransport listener (it runs a Deno process). */
  webtransport?: number | false
}

export interface WebTransportOptions extends WebTransportListenInit {
  onHandle?: (handle: WebTransportHandle) => void
}

/** Bounds on the WebSockets and WebRTC-direct listeners before their upgrade (websockets-listener.ts, webrtc-direct-listener.ts). */
export interface ListenerBoundsOptions {
  webSockets?: Partial<WebSocketsListenerLimits>
  webRTCDirect?: Partial<WebRTCDirectListenerLimits>
  /** Told each connection closed or dropped before its upgrade, with the listener's name. */
  onRefused?: (listener: 'websockets' | 'webrtc-direct', reason: WebSocketsRefusal | WebRTCDirectRefusal, detail: string) => void
}

export function fullNodeTransports (ports: ListenPorts = {}, webTransport: WebTransportOptions = {}, bounds: ListenerBoundsOptions = {}): any[] {
  const ws = boundWebSocketsListener(webSocketsClosingAborted(), bounds.webSockets, (reason, detail) => bounds.onRefused?.('websockets', reason, detail))
  const base = ports.webrtc === false
    ? [tcp(), ws]
    : [tcp(), ws, boundWebRTCDirectListener(webRTCDirect(), bounds.webRTCDirect, (reason, detail) => bounds.onRefused?.('webrtc-direct', reason, detail))]
  return typeof ports.webtransport === 'number' ? [...base, webTransportListener(webTransport, webTransport.onHandle)] : base
}

export function listenAddresses (ports: ListenPorts = {}): string[] {
  const host = ports.host ?? '127.0.0.1'
  const ip = host.includes(':') ? 'ip6' : 'ip4'
  const addrs = [`/${ip}/${host}/tcp/${ports.tcp ?? 0}`, `/${ip}/${host}/tcp/${ports.ws ?? 0}/ws`]
  if (ports.webrtc !== false) addrs.push(`/${ip}/${host}/udp/${ports.webrtc ?? 0}/webrtc-direct`)
  if (typeof ports.webtransport === 'number') addrs.push(`/${ip}/${host}/udp/${ports.webtransport}/quic-v1/webtransport`)
  return addrs
}

