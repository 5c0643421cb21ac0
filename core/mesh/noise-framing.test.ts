import { describe, expect, it } from 'vitest'
import { NoiseMessageDecoder, useNoiseMessageDecoder, NOISE_MAX_MESSAGE_BYTES } from './noise-framing.ts'
import type { MessageStream } from '@libp2p/interface'

/** Messages framed as Noise sends them: 2-byte big-endian length, then the bytes. */
function framed (messages: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(messages.reduce((n, m) => n + 2 + m.length, 0))
  let o = 0
  for (const m of messages) {
    out[o++] = m.length >> 8
    out[o++] = m.length & 0xff
    out.set(m, o)
    o += m.length
  }
  return out
}

/** Byte equality without a deep-equal diff over 64 kB. */
function same (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function message (length: number, seed: number): Uint8Array {
  const m = new Uint8Array(length)
  for (let i = 0; i < length; i++) m[i] = (i * 31 + seed) & 0xff
  return m
}

describe('NoiseMessageDecoder', () => {
  const messages = [message(1, 1), message(300, 2), message(NOISE_MAX_MESSAGE_BYTES, 3), message(2, 4), message(70, 5)]
  const bytes = framed(messages)

  it('yields every message whole and in order, however the bytes are cut (every cut of 1 to 7 byte reads, and large reads)', () => {
    for (const size of [1, 2, 3, 5, 7, 1000, 65_537, bytes.length]) {
      const decoder = new NoiseMessageDecoder()
      const got: Uint8Array[] = []
      for (let o = 0; o < bytes.length; o += size) {
        for (const m of decoder.decode(bytes.subarray(o, o + size))) got.push(m.slice())
      }
      expect(got.map(m => m.length), `reads of ${size}`).toEqual(messages.map(m => m.length))
      got.forEach((m, i) => { expect(same(m, messages[i]), `message ${i}, reads of ${size}`).toBe(true) })
      expect(decoder.bufferedBytes).toBe(0)
    }
  })

  it('reads a list of chunks (a Uint8ArrayList) like the chunks one after the other, skips empty messages, and holds at most one message', () => {
    const decoder = new NoiseMessageDecoder()
    const withEmpty = framed([message(10, 7), new Uint8Array(0), message(20, 8)])
    const got = [...decoder.decode([withEmpty.subarray(0, 5), withEmpty.subarray(5, 13), withEmpty.subarray(13)])]
    expect(got.map(m => m.length)).toEqual([10, 20])
    // A message cut after its length: the decoder holds exactly what arrived of it.
    const big = framed([message(50_000, 9)])
    expect([...decoder.decode(big.subarray(0, 1))]).toEqual([])
    expect(decoder.bufferedBytes).toBe(1)
    expect([...decoder.decode(big.subarray(1, 1_000))]).toEqual([])
    expect(decoder.bufferedBytes).toBe(998)
    const rest = [...decoder.decode(big.subarray(1_000))]
    expect(rest.length).toBe(1)
    expect(same(rest[0], message(50_000, 9))).toBe(true)
  })

  it('hands out a view of the read, not a copy, when a message lies inside one read', () => {
    const decoder = new NoiseMessageDecoder()
    const one = framed([message(100, 1)])
    const [m] = [...decoder.decode(one)]
    expect(m.buffer).toBe(one.buffer)
    expect(m.byteOffset).toBe(2)
  })

  it('replaces the decoder of a connection shaped like Noise\'s, carries a held partial message over, and leaves other shapes alone', () => {
    const bytes = framed([message(40, 3)])
    const connection = { decoder: { decode: () => [], buffer: { byteLength: 10, subarray: () => bytes.subarray(0, 10) } } }
    useNoiseMessageDecoder(connection as unknown as MessageStream)
    expect(connection.decoder).toBeInstanceOf(NoiseMessageDecoder)
    expect([...(connection.decoder as unknown as NoiseMessageDecoder).decode(bytes.subarray(10))][0]).toEqual(message(40, 3))

    const other = { decoder: { notDecode: true } }
    useNoiseMessageDecoder(other as unknown as MessageStream)
    expect(other.decoder).toEqual({ notDecode: true })
    // Whole messages in the old buffer would mean another decoder than expected: keep it.
    const unexpected = { decoder: { decode: () => [], buffer: { byteLength: bytes.length, subarray: () => bytes } } }
    const before = unexpected.decoder
    useNoiseMessageDecoder(unexpected as unknown as MessageStream)
    expect(unexpected.decoder).toBe(before)
  })
})
