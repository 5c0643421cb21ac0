// Transports of short-lived CLI peers that call or publish: TCP and WebSockets only. Kept apart from
// transports.ts so that `cell call` does not load WebRTC (node-datachannel and its certificate
// stack, some 300 modules) and the WebTransport bridge it never dials.
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'

export function clientTransports (): Array<ReturnType<typeof tcp> | ReturnType<typeof webSockets>> {
  return [tcp(), webSockets()]
}
