// Raw libp2p baselines the synapse bench compares against, served by the bench server.
import type { Stream } from '@libp2p/interface'

export const RAW_ONEWAY = '/cell/bench-raw-oneway/1'
export const RAW_ECHO = '/cell/bench-raw-echo/1'

/** Counts bytes until the client closes its write end, then answers with the total (float64). */
export function handleRawOneway (stream: Stream): void {
  let bytes = 0
  stream.addEventListener('message', (evt) => { bytes += evt.data.byteLength })
  stream.addEventListener('remoteCloseWrite', () => {
    const out = new Uint8Array(8)
    new DataView(out.buffer).setFloat64(0, bytes)
    stream.send(out)
    void stream.close().catch(() => {})
  })
}

/** Echoes every chunk back as it arrives: request/response with 64-byte "requests". */
export function handleRawEcho (stream: Stream): void {
  let paused = false
  stream.addEventListener('message', (evt) => {
    if (!stream.send(evt.data) && !paused) {
      paused = true
      stream.pause()
      void drained(stream).then(() => { paused = false; stream.resume() }, () => {})
    }
  })
  stream.addEventListener('remoteCloseWrite', () => { void stream.close().catch(() => {}) })
}

/**
 * Waits until the stream really accepts data again. stream.onDrain() in @libp2p/utils 7.4 keeps
 * resolving immediately after the first drain, and connection-level drains reach every stream,
 * so wait for 'drain' events until writableNeedsDrain is false (or the stream closes).
 */
export async function drained (stream: Stream): Promise<void> {
  while (stream.writableNeedsDrain && stream.status === 'open') {
    await new Promise<void>((resolve) => {
      const done = (): void => { stream.removeEventListener('drain', done); stream.removeEventListener('close', done); resolve() }
      stream.addEventListener('drain', done)
      stream.addEventListener('close', done)
    })
    await Promise.resolve()
  }
}
