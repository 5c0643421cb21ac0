// Test support shared by the identity tests: a manual clock (no real timers) and a seeded PRNG
// so fuzz failures reproduce. Web-platform only, like the rest of core.

export { ManualClock as FakeClock } from '../testing/manual-clock.ts'

/** xorshift32: deterministic bytes for fuzz loops. */
export function seededBytes (seed: number): (length: number) => Uint8Array {
  let s = seed >>> 0 || 1
  const next = (): number => {
    s ^= s << 13; s >>>= 0
    s ^= s >>> 17
    s ^= s << 5; s >>>= 0
    return s
  }
  return (length) => {
    const out = new Uint8Array(length)
    for (let i = 0; i < length; i++) out[i] = next() & 0xff
    return out
  }
}
