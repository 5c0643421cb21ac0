import { describe, it, expect } from 'vitest'
import { FleetSyncError } from './errors.ts'
import { decodeLengthPrefixed, encodeLengthPrefixed } from './framing.ts'

async function collect (chunks: Uint8Array[], max: number): Promise<Uint8Array[]> {
  async function * source (): AsyncGenerator<Uint8Array> { yield * chunks }
  const out: Uint8Array[] = []
  for await (const f of decodeLengthPrefixed(source(), max)) out.push(f.slice())
  return out
}

describe('length-prefixed framing', () => {
  it('reassembles frames split across and packed within chunks', async () => {
    const frames = [new Uint8Array(0), new Uint8Array(300).fill(1), new Uint8Array([7, 8, 9]), new Uint8Array(5000).fill(3)]
    const wire = new Uint8Array(frames.reduce((n, f) => n + encodeLengthPrefixed(f).length, 0))
    let off = 0
    for (const f of frames) { const e = encodeLengthPrefixed(f); wire.set(e, off); off += e.length }
    for (const size of [1, 2, 7, 1000, wire.length]) {
      const chunks: Uint8Array[] = []
      for (let i = 0; i < wire.length; i += size) chunks.push(wire.subarray(i, i + size))
      expect(await collect(chunks, 100_000)).toEqual(frames)
    }
  })

  it('fails on an oversized declared length before buffering it, on a bad prefix and on a truncated frame', async () => {
    await expect(collect([encodeLengthPrefixed(new Uint8Array(65))], 64)).rejects.toBeInstanceOf(FleetSyncError)
    await expect(collect([new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0x01])], 1 << 30)).rejects.toBeInstanceOf(FleetSyncError)
    await expect(collect([encodeLengthPrefixed(new Uint8Array(10)).subarray(0, 5)], 64)).rejects.toBeInstanceOf(FleetSyncError)
  })
})
