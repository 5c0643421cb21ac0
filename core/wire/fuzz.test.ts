import { describe, expect, it } from 'vitest'
import { FrameDecoder, FrameEncoder, FrameTooLargeError, MalformedFrameError } from './index.ts'
import type { Frame } from './index.ts'

// Deterministic PRNG so a failing case can be replayed from its seed.
function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomSplits (bytes: Uint8Array, rnd: () => number): Uint8Array[] {
  const out: Uint8Array[] = []
  let off = 0
  while (off < bytes.length) {
    const len = 1 + Math.floor(rnd() * Math.min(64, bytes.length - off))
    out.push(bytes.subarray(off, off + len))
    off += len
  }
  return out
}

describe('frame decoder fuzz', () => {
  it('random bytes in random splits yield only frames or the named errors', () => {
    let total = 0
    let errors = 0
    for (let seed = 1; seed <= 2000; seed++) {
      const rnd = mulberry32(seed)
      const bytes = new Uint8Array(1 + Math.floor(rnd() * 512))
      for (let i = 0; i < bytes.length; i++) {
        // Bias towards small values so some inputs form plausible headers.
        bytes[i] = rnd() < 0.5 ? Math.floor(rnd() * 16) : Math.floor(rnd() * 256)
      }
      let frames = 0
      const decoder = new FrameDecoder((f) => {
        frames++
        expect(f.type).toBeGreaterThanOrEqual(1)
        expect(f.type).toBeLessThanOrEqual(13)
        expect(f.payload).toBeInstanceOf(Uint8Array)
      }, { maxFrameBytes: 256 })
      try {
        for (const c of randomSplits(bytes, rnd)) decoder.push(c)
      } catch (err) {
        if (!(err instanceof FrameTooLargeError) && !(err instanceof MalformedFrameError)) {
          throw new Error(`seed ${seed}: unexpected ${String(err)}`)
        }
        errors++
      }
      total += frames
    }
    // The inputs exercise both outcomes, not just the error path.
    expect(total).toBeGreaterThan(50)
    expect(errors).toBeGreaterThan(100)
  })

  it('random valid frames in random splits decode exactly', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rnd = mulberry32(seed)
      const enc = new FrameEncoder({ slabBytes: 4096 })
      const sent: Array<Pick<Frame, 'type' | 'id' | 'method' | 'timeoutMs'> & { name?: string, trace?: string, payload: number[] }> = []
      const count = 1 + Math.floor(rnd() * 40)
      for (let i = 0; i < count; i++) {
        const type = 1 + Math.floor(rnd() * 13)
        const id = Math.floor(rnd() * 2 ** 32)
        const payload = Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256))
        const method = rnd() < 0.5 ? Math.floor(rnd() * 5000) : -1
        const name = rnd() < 0.3 ? `method-${Math.floor(rnd() * 1000)}-ü` : undefined
        const timeoutMs = rnd() < 0.3 ? Math.floor(rnd() * 2 ** 31) : -1
        const trace = rnd() < 0.3 ? `00-${seed}-${i}-01` : undefined
        enc.encode({ type, id, method, methodName: name, timeoutMs, traceparent: trace, payload: new Uint8Array(payload) })
        sent.push({ type, id, method, timeoutMs, name, trace, payload })
      }
      const got: typeof sent = []
      const decoder = new FrameDecoder((f) => {
        got.push({ type: f.type, id: f.id, method: f.method, timeoutMs: f.timeoutMs, name: f.methodName, trace: f.traceparent, payload: [...f.payload] })
      })
      for (const c of randomSplits(enc.take(), rnd)) decoder.push(c)
      expect(got, `seed ${seed}`).toEqual(sent)
      expect(decoder.bufferedBytes).toBe(0)
    }
  })
})
