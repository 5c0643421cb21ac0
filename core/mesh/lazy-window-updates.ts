// yamux (@chainsafe/libp2p-yamux 8) answers every data frame it reads with a window update that
// gives the sender back exactly the bytes just read: a frame, a Noise message and a socket write of
// its own each time. On the call path, where a batch of calls is one data frame and its answers
// another, that doubled the messages on the connection (issue 15: a node's socket writes were a
// sixth of its time, the caller's a tenth). Go's yamux, and the yamux spec's advice, update only
// once half the window has been consumed; this wrapper makes each yamux stream do the same.
//
// It holds no state of its own: a plain update (no flags, stream established) is skipped while
// the stream can still receive more than half its window; the stream's own sendWindowUpdate then
// sends the whole accumulated delta (and still grows the window as before). The remote's send
// window never drops below half a window before it is refilled, so a sender never stalls on it.
// SYN, ACK, FIN, RST and the update after a pause go out at once, as before. If yamux's
// internals change shape, streams are left as they are (the check below).
import type { MessageStream, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'

/** yamux's StreamState.Established (the only state in which an update carries no flags). */
const ESTABLISHED = 3

/** The parts of a YamuxStream this wrapper reads and wraps. */
interface YamuxStreamShape {
  state: number
  recvWindow: number
  recvWindowCapacity: number
  sendWindowUpdate: () => void
}

function isYamuxStream (s: unknown): s is YamuxStreamShape {
  const o = s as Partial<YamuxStreamShape> | null
  return o !== null && typeof o === 'object' && typeof o.sendWindowUpdate === 'function' &&
    typeof o.recvWindow === 'number' && typeof o.recvWindowCapacity === 'number' && typeof o.state === 'number'
}

/** Makes `stream` update the remote's window only after half of it has been consumed. */
export function lazyWindowUpdate (stream: unknown): void {
  if (!isYamuxStream(stream)) return
  const update = stream.sendWindowUpdate
  stream.sendWindowUpdate = function (this: YamuxStreamShape): void {
    if (this.state === ESTABLISHED && this.recvWindowCapacity * 2 > this.recvWindow) return
    update.call(this)
  }
}

type NewStream = (...args: unknown[]) => unknown

/** `streamMuxers: [lazyWindowUpdates(yamux())]`: the muxer as before, one window update per half window. */
export function lazyWindowUpdates<C> (factory: (components: C) => StreamMuxerFactory): (components: C) => StreamMuxerFactory {
  return (components: C): StreamMuxerFactory => {
    const inner = factory(components)
    return Object.assign(Object.create(inner) as StreamMuxerFactory, {
      createStreamMuxer (maConn: MessageStream): StreamMuxer {
        const muxer = inner.createStreamMuxer(maConn)
        // Every stream, inbound or outbound, is made by the muxer's _newStream.
        const m = muxer as StreamMuxer & { _newStream?: NewStream }
        const newStream = m._newStream
        if (typeof newStream === 'function') {
          m._newStream = function (this: unknown, ...args: unknown[]): unknown {
            const stream = newStream.apply(this, args)
            lazyWindowUpdate(stream)
            return stream
          }
        }
        return muxer
      }
    })
  }
}
