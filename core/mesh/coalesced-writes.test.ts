import { describe, expect, it } from 'vitest'
import type { MessageStream } from '@libp2p/interface'
import { joinSends } from './coalesced-writes.ts'

/** A list of chunks as Noise hands them over (iterable, with byteLength and subarray()). */
function list (...chunks: Uint8Array[]): Parameters<MessageStream['send']>[0] {
  const byteLength = chunks.reduce((n, c) => n + c.byteLength, 0)
  return {
    byteLength,
    [Symbol.iterator]: () => chunks[Symbol.iterator](),
    subarray: () => { const out = new Uint8Array(byteLength); let o = 0; for (const c of chunks) { out.set(c, o); o += c.byteLength } return out }
  } as unknown as Parameters<MessageStream['send']>[0]
}

function bytes (n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff)
}

/** A TCP-like connection: what it was handed, and whether the last write was taken at once or kept. */
function fakeConnection (withSocket: boolean): { connection: MessageStream, sent: Uint8Array[], keep: { next: boolean } } {
  const sent: Uint8Array[] = []
  const keep = { next: false }
  const socket = { writableLength: 0 }
  const connection = {
    writeBufferLength: 0,
    send (data: Uint8Array): boolean {
      sent.push(data)
      // A write that goes on asynchronously leaves bytes in the socket (Node keeps the buffer then).
      socket.writableLength = keep.next ? data.byteLength : 0
      return true
    },
    ...(withSocket ? { socket } : {})
  }
  return { connection: joinSends(connection as unknown as MessageStream), sent, keep }
}

describe('joinSends', () => {
  it('sends each list as one buffer with the bytes in order, and reuses a large one only after a write took all of it', () => {
    const { connection, sent, keep } = fakeConnection(true)
    const a = [bytes(2, 1), bytes(5_000, 2), bytes(16, 3)]
    connection.send(list(...a))
    const first = sent[0]
    expect(first).toEqual(list(...a).subarray())
    // Taken at once: the next join of the same size lands in the same memory.
    keep.next = true
    const b = [bytes(2, 4), bytes(5_000, 5), bytes(16, 6)]
    connection.send(list(...b))
    expect(sent[1].buffer).toBe(first.buffer)
    expect(sent[1]).toEqual(list(...b).subarray())
    // That write was kept by the socket: its bytes must survive the next join, which gets new memory.
    const kept = sent[1].slice()
    keep.next = false
    const c = [bytes(2, 7), bytes(6_000, 8), bytes(16, 9)]
    connection.send(list(...c))
    expect(sent[2].buffer).not.toBe(sent[1].buffer)
    expect(sent[1]).toEqual(kept)
    expect(sent[2]).toEqual(list(...c).subarray())
  })

  it('passes single buffers and lists of several Noise messages as they are, and joins small lists without reuse', () => {
    const { connection, sent } = fakeConnection(true)
    const one = bytes(100, 1)
    connection.send(one)
    expect(sent[0]).toBe(one)
    const big = list(bytes(2, 1), bytes(65_535, 2), bytes(2, 3), bytes(100, 4))
    connection.send(big)
    expect(sent[1]).toBe(big)
    connection.send(list(bytes(2, 1), bytes(50, 2)))
    connection.send(list(bytes(2, 3), bytes(50, 4)))
    expect(sent[2].buffer).not.toBe(sent[3].buffer)
    expect(sent[3]).toEqual(list(bytes(2, 3), bytes(50, 4)).subarray())
  })

  it('allocates per join on a transport without a socket', () => {
    const { connection, sent } = fakeConnection(false)
    connection.send(list(bytes(2, 1), bytes(8_000, 2)))
    connection.send(list(bytes(2, 3), bytes(8_000, 4)))
    expect(sent[0].buffer).not.toBe(sent[1].buffer)
    expect(sent[1]).toEqual(list(bytes(2, 3), bytes(8_000, 4)).subarray())
  })
})
