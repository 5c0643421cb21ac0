// Two web APIs libp2p's browser build expects and workerd lacks, filled in before libp2p loads
// (worker.ts imports this first). Each is installed only where missing, so a runtime that gains
// the real one keeps it.
//
// BroadcastChannel: the peer store's lock (mortice, browser build, in its single-process mode)
// opens one to answer lock requests from other workers of the same page. A Durable Object is one
// isolate with no such workers, so a channel that delivers nothing is the faithful stand-in.
//
// WebSocket.prototype.bufferedAmount: @libp2p/websockets compares it with its high-water mark after
// every send; undefined compares false, so the connection waits for a 'drain' that never comes
// and the Noise handshake stalls after its first message. workerd queues outbound messages itself
// and exposes no count, so 0 (nothing known to be waiting) is the honest reading; the streams
// above are bounded by yamux's windows.
class SilentBroadcastChannel extends EventTarget {
  readonly name: string
  onmessage: ((evt: MessageEvent) => void) | null = null
  onmessageerror: ((evt: MessageEvent) => void) | null = null
  constructor (name: string) {
    super()
    this.name = name
  }

  postMessage (_message: unknown): void {}
  close (): void {}
}

export function installWorkerdShims (g: { BroadcastChannel?: unknown, WebSocket?: { prototype: object } } = globalThis as never): void {
  if (typeof g.BroadcastChannel === 'undefined') g.BroadcastChannel = SilentBroadcastChannel
  const proto = g.WebSocket?.prototype
  if (proto !== undefined && !('bufferedAmount' in proto)) {
    Object.defineProperty(proto, 'bufferedAmount', { configurable: true, get: () => 0 })
  }
}

installWorkerdShims()
