import { describe, expect, it } from 'vitest'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { MessageStream, StreamMuxer, StreamMuxerFactory, Stream } from '@libp2p/interface'
import { lazyWindowUpdate, lazyWindowUpdates } from './lazy-window-updates.ts'

/** Frame types yamux sends (its header's second byte), counted per muxer. */
interface Counts { data: number, windowUpdates: number }

/**
 * Two yamux muxers joined back to back in memory: each end's writes are the other's reads, in
 * order, delivered a microtask later (as a socket would, never synchronously inside a send).
 */
function pair (factory: StreamMuxerFactory): { a: StreamMuxer, b: StreamMuxer, counts: [Counts, Counts] } {
  const counts: [Counts, Counts] = [{ data: 0, windowUpdates: 0 }, { data: 0, windowUpdates: 0 }]
  const ends: Array<MessageStream & { deliver: (data: Uint8Array) => void }> = []
  for (let i = 0; i < 2; i++) {
    const listeners: Array<(evt: { data: Uint8Array }) => void> = []
    const end = {
      status: 'open',
      direction: i === 0 ? 'outbound' : 'inbound',
      log: Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => end.log }),
      addEventListener (type: string, fn: (evt: { data: Uint8Array }) => void) { if (type === 'message') listeners.push(fn) },
      removeEventListener () {},
      deliver (data: Uint8Array) { for (const fn of listeners) fn({ data }) },
      send (data: Uint8Array | Iterable<Uint8Array>): boolean {
        const bytes = data instanceof Uint8Array ? data.slice() : concat(data)
        // yamux header: version, type (0 data, 1 window update), flags, stream id, length.
        for (let p = 0; p < bytes.length;) {
          const type = bytes[p + 1]
          const length = new DataView(bytes.buffer, bytes.byteOffset + p + 8, 4).getUint32(0)
          if (type === 0) counts[i].data++
          if (type === 1) counts[i].windowUpdates++
          p += 12 + (type === 0 ? length : 0)
        }
        queueMicrotask(() => { ends[1 - i].deliver(bytes) })
        return true
      },
      pause () {},
      resume () {},
      async close () {},
      abort () {},
      onDrain: async () => {}
    }
    ends.push(end as unknown as MessageStream & { deliver: (data: Uint8Array) => void })
  }
  return { a: factory.createStreamMuxer(ends[0]), b: factory.createStreamMuxer(ends[1]), counts }
}

function concat (chunks: Iterable<Uint8Array>): Uint8Array {
  const list = [...chunks]
  const out = new Uint8Array(list.reduce((n, c) => n + c.byteLength, 0))
  let o = 0
  for (const c of list) { out.set(c, o); o += c.byteLength }
  return out
}

/** Sends `count` messages of `bytes` from a to b, and resolves with what b received once all of it arrived. */
async function transfer (a: StreamMuxer, b: StreamMuxer, count: number, bytes: number): Promise<Uint8Array> {
  const inbound = new Promise<Stream>((resolve) => { b.addEventListener('stream', (evt) => { resolve(evt.detail) }) })
  const out = await a.createStream()
  const total = count * bytes
  const received: Uint8Array[] = []
  let got = 0
  let done: () => void = () => {}
  const all = new Promise<void>((resolve) => { done = resolve })
  for (let i = 0; i < count; i++) {
    const msg = new Uint8Array(bytes).fill(i % 251)
    if (!out.send(msg)) await new Promise<void>((resolve) => { out.addEventListener('drain', () => { resolve() }, { once: true }) })
    // Let the transport deliver between sends, as a busy connection does.
    if (i % 16 === 15) await new Promise<void>((resolve) => { setTimeout(resolve, 0) })
    if (i === 0) {
      const s = await inbound
      s.addEventListener('message', (evt) => {
        const chunk = evt.data.subarray()
        received.push(chunk)
        got += chunk.byteLength
        if (got >= total) done()
      })
    }
  }
  await all
  return concat(received)
}

describe('lazyWindowUpdates', () => {
  it('sends one window update per half window instead of one per data frame, and delivers everything in order', async () => {
    const count = 2_000
    const bytes = 1_000
    const plain = pair(yamux()())
    const lazy = pair(lazyWindowUpdates(yamux())(undefined))
    const plainBytes = await transfer(plain.a, plain.b, count, bytes)
    const lazyBytes = await transfer(lazy.a, lazy.b, count, bytes)
    expect(lazyBytes.byteLength).toBe(count * bytes)
    expect(plainBytes.byteLength).toBe(count * bytes)
    let wrong = 0
    for (let i = 0; i < lazyBytes.length; i++) if (lazyBytes[i] !== ((i / bytes) | 0) % 251) wrong++
    expect(wrong).toBe(0)
    // The plain receiver (b) answers every data frame with an update. The lazy one only once half
    // its window is used (the window still grows as the transfer goes): a handful for 2 MB, and
    // the sender was never stalled for good (everything arrived).
    expect(plain.counts[0].data).toBe(count)
    expect(plain.counts[1].windowUpdates).toBeGreaterThanOrEqual(count)
    expect(lazy.counts[0].data).toBe(count)
    expect(lazy.counts[1].windowUpdates).toBeGreaterThanOrEqual(4)
    expect(lazy.counts[1].windowUpdates).toBeLessThan(40)
    for (const m of [plain.a, plain.b, lazy.a, lazy.b]) m.abort(new Error('test over'))
  })

  it('leaves anything that is not shaped like a yamux stream alone', () => {
    const other = { sendWindowUpdate: 'not a function', recvWindow: 1 }
    lazyWindowUpdate(other)
    expect(other.sendWindowUpdate).toBe('not a function')
    lazyWindowUpdate(null)
    lazyWindowUpdate(undefined)
  })
})
