// @libp2p/websockets 10 leaves the socket of an aborted dial open: its `_connect` waits for `open`
// with the dial's signal, and when the signal aborts it throws without closing the WebSocket it made
// (the close is only on the other failure path). The connection then lives on unowned: it opens
// later and nobody uses or closes it. A long-running node aborts dials all day (the dial queue's
// timeout, a peer that went away), and a node stopping aborts the dials in flight: the soak caught
// stopped `cell up` processes held alive by exactly such a socket (node-host/cli/open-handles.ts named
// it) until their supervisor killed them 60 s later. This wraps the transport so a dial that is
// aborted or fails closes what it opened, whatever state the WebSocket is in; so does a dial whose
// upgrade (Noise, yamux) fails or is aborted after the socket opened, and a reset of the connection
// (the transport's close(1006) threw). No Node built-ins: the browser's light peer uses it too.
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
    // The socket each dial opened, by the dial's options object (the transport hands the same one to
    // _connect): a dial whose upgrade fails or is aborted after the socket opened closes it here,
    // which the transport does not do either (its TCP sibling aborts the connection).
    const opened = new WeakMap<object, WebSocket>()
    connecting._connect = async (ma, options) => {
      const ws = await openWebSocket(multiaddrToUri(ma), options)
      opened.set(options, ws)
      return ws
    }
    const dial = transport.dial.bind(transport)
    transport.dial = async (ma, options) => {
      try {
        return await dial(ma, options)
      } catch (err) {
        const ws = opened.get(options)
        if (ws !== undefined) try { ws.close() } catch {}
        throw err
      } finally {
        opened.delete(options)
      }
    }
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
    // The transport resets a connection with close(1006), which WebSocket forbids (only 1000 and
    // 3000–4999 may be sent): the call throws and the socket stays open. Any other code closes plainly.
    const close = ws.close.bind(ws)
    ws.close = (code?: number, reason?: string): void => {
      if (code === undefined || code === 1000 || (code >= 3000 && code <= 4999)) close(code, reason)
      else close()
    }
    ws.addEventListener('error', onError)
    ws.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
  return ws
}
