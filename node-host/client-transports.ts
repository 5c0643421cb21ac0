// Transports of short-lived CLI peers that call or publish: TCP and WebSockets only. Kept apart from
// transports.ts so that `cell call` does not load WebRTC (node-datachannel and its certificate
// stack, some 300 modules) and the WebTransport bridge it never dials.
import { tcp } from '@libp2p/tcp'
import { webSocketsClosingAborted } from '../core/mesh/websockets-dial.ts'

export function clientTransports (): Array<ReturnType<typeof tcp> | ReturnType<typeof webSocketsClosingAborted>> {
  return [tcp(), webSocketsClosingAborted()]
}
