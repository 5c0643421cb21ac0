// The short form of `npm run fuzz` (issue 14 point 4): every decoder for a few thousand fast-check
// inputs (random bytes and mutations of valid encodings); each must return or throw a named
// CellError subclass, within the hang bound. The full run is `npm run fuzz` (a million each).
import { beforeAll, describe, expect, it } from 'vitest'
import { decoderTargets, type DecoderTarget } from './targets.ts'
import { fuzzDecoder } from './fuzz-harness.ts'
import { MalformedFrameError } from '../../core/wire/index.ts'

const RUNS = Number(process.env.CELL_FUZZ_RUNS ?? 3_000)
let targets: DecoderTarget[] = []
beforeAll(async () => { targets = await decoderTargets() })

describe('decoder fuzz (short run)', () => {
  it('every decoder returns or names its refusal, none hangs', async () => {
    expect(targets.length).toBeGreaterThanOrEqual(27)
    for (const target of targets) {
      const r = await fuzzDecoder(target, { runs: RUNS, seed: 14 })
      expect(r.crash, `${r.name}: ${JSON.stringify(r.crash)}`).toBeUndefined()
      expect(r.hangs).toBe(0)
      expect(r.runs).toBe(RUNS)
      // The mutations reach past the first checks: some inputs decode, some are refused by name.
      expect(r.accepted, r.name).toBeGreaterThan(0)
      expect(r.rejected, r.name).toBeGreaterThan(0)
    }
  })

  it('reports a decoder that throws an unnamed error, and one that hangs', async () => {
    const seeds = [Uint8Array.of(1, 2, 3)]
    // A decoder with the classic bug: indexing past the end and dereferencing undefined.
    const typeError = await fuzzDecoder({ name: 'broken', seeds, decode: (b) => { if (b.length > 2 && b[0] === 1) return (undefined as unknown as { x: number }).x; throw new MalformedFrameError('no') } }, { runs: 2_000, seed: 1 })
    expect(typeError.crash?.error).toMatch(/^TypeError/)
    // A bare CellError or an Error with a CellError's name is not a named refusal either.
    const plain = await fuzzDecoder({ name: 'plain', seeds, decode: () => { throw Object.assign(new Error('x'), { name: 'MalformedFrameError' }) } }, { runs: 50, seed: 1 })
    expect(plain.crash).toBeDefined()
    const slow = await fuzzDecoder({
      name: 'slow',
      seeds,
      decode: (b) => { if (b.length === 3) { const until = performance.now() + 30; while (performance.now() < until); } return 0 }
    }, { runs: 200, seed: 1, hangMs: 10 })
    expect(slow.hangs).toBeGreaterThan(0)
    expect(slow.crash?.error).toMatch(/more than 10 ms/)
  })
})
