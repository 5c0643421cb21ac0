// @libp2p/websockets 10 leaves the socket of an aborted dial open: its `_connect` waits for `open`
// with the dial's signal, and when the signal aborts it throws without closing the WebSocket it made
// (the close is only on the other failure path). The connection then lives on unowned: it opens
// later and nobody uses or closes it. A long-running node aborts dials all day (the dial queue's
// timeout, a peer that went away), and a node stopping aborts the dials in flight: the soak caught
// stopped `cell up` processes held alive by exactly such a socket (node-host/cli/open-handles.ts named
// it) until their supervisor killed them 60 s later. This wraps the transport so a dial that is
// aborted or fails closes what it opened, whatever state the WebSocket is in. No Node built-ins: the
// browser's light peer uses it too.
import { ConnectionFailedError, type AbortOptions } from '@libp2p/interface'
import { webSockets } from '@libp2p/websockets'
import { multiaddrToUri } from '@multiformats/multiaddr-to-uri'
import type { Multiaddr } from '@multiformats/multiaddr'

type WebSocketsFactory = ReturnType<typeof webSockets>
type WebSocketsInit = Parameters<typeof webSockets>[0]

/** The transport's one method that makes the socket (private in its types; checked at wrap time). */
interface Connecting { _connect?: (ma: Multiaddr, options: AbortOptions) => Promise<WebSocket> }

/** `webSockets(init)`, with dials that close their socket when they are aborted or fail. */
export function webSocketsClosingAborted (init?: WebSocketsInit): WebSocketsFactory {
  const factory = webSockets(init)
  return (components) => {
    const transport = factory(components)
    const connecting = transport as unknown as Connecting
    // A later @libp2p/websockets without `_connect` is a different implementation: its dials would go
    // unwrapped, so say so at start instead of leaking quietly (and core/mesh/websockets-dial.test.ts fails).
    if (typeof connecting._connect !== 'function') throw new Error('@libp2p/websockets has no _connect any more: review core/mesh/websockets-dial.ts')
    connecting._connect = async (ma, options) => await openWebSocket(multiaddrToUri(ma), options)
    return transport
  }
}

/**
 * Opens a WebSocket to `uri` and resolves once it is open. An abort of `options.signal`, an error or
 * a close before `open` rejects with ConnectionFailedError and closes the socket (a close while
 * connecting cancels the connection attempt).
 */
export async function openWebSocket (uri: string, options: AbortOptions = {}): Promise<WebSocket> {
  const signal = options.signal
  signal?.throwIfAborted()
  const ws = new WebSocket(uri)
  ws.binaryType = 'arraybuffer'
  await new Promise<void>((resolve, reject) => {
    const settle = (failure?: string): void => {
      ws.removeEventListener('open', onOpen)
      ws.removeEventListener('error', onError)
      ws.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
      if (failure === undefined) { resolve(); return }
      try { ws.close() } catch {}
      reject(new ConnectionFailedError(`Could not connect to ${uri}: ${failure}`))
    }
    const onOpen = (): void => { settle() }
    const onError = (): void => { settle('the connection failed') }
    const onClose = (): void => { settle('closed before it opened') }
    const onAbort = (): void => { settle(`dial aborted (${(signal?.reason as Error | undefined)?.message ?? 'aborted'})`) }
    ws.addEventListener('open', onOpen)
    ws.addEventListener('error', onError)
    ws.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
  return ws
}
