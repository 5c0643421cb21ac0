// xoshiro128** (Blackman & Vigna), seeded through splitmix32 so that small consecutive seeds give
// unrelated streams. Deterministic, fast, and good enough for simulation; never for keys.

import type { Random } from '../../core/ports.ts'

export class SeededRandom implements Random {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: number) {
    let s = seed >>> 0
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = split()
    this.b = split()
    this.c = split()
    this.d = split()
    if ((this.a | this.b | this.c | this.d) === 0) this.d = 1
  }

  /** Next 32-bit unsigned integer. */
  nextUint32 (): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0
    const t = this.b << 9
    this.c ^= this.a
    this.d ^= this.b
    this.b ^= this.c
    this.a ^= this.d
    this.c ^= t
    this.d = rotl(this.d, 11)
    return result
  }

  next (): number {
    return this.nextUint32() / 0x1_0000_0000
  }

  bytes (length: number): Uint8Array {
    const out = new Uint8Array(length)
    for (let i = 0; i < length; i += 4) {
      let v = this.nextUint32()
      for (let k = 0; k < 4 && i + k < length; k++, v >>>= 8) out[i + k] = v & 0xff
    }
    return out
  }

  /** Uniform float in [lo, hi). */
  between (lo: number, hi: number): number {
    return lo + (hi - lo) * this.next()
  }

  /** An independent generator derived from this one (e.g. one per node or per concern). */
  fork (): SeededRandom {
    return new SeededRandom(this.nextUint32())
  }
}

function rotl (x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}
