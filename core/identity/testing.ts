// Test support shared by the identity tests: a manual clock (no real timers) and a seeded PRNG
// so fuzz failures reproduce. Web-platform only, like the rest of core.
import type { Clock } from '../ports.ts'

export class FakeClock implements Clock {
  private nowMs: number
  private nextId = 1
  private readonly timers = new Map<number, { at: number, fn: () => void }>()

  constructor (startMs = 1_800_000_000_000) {
    this.nowMs = startMs
  }

  now (): number {
    return this.nowMs
  }

  setTimeout (fn: () => void, delayMs: number): unknown {
    const id = this.nextId++
    this.timers.set(id, { at: this.nowMs + Math.max(0, delayMs), fn })
    return id
  }

  clearTimeout (handle: unknown): void {
    this.timers.delete(handle as number)
  }

  get pending (): number {
    return this.timers.size
  }

  /** Moves time forward, firing due timers in order (including ones they schedule). */
  advance (ms: number): void {
    const target = this.nowMs + ms
    for (;;) {
      let next: [number, { at: number, fn: () => void }] | undefined
      for (const entry of this.timers) if (entry[1].at <= target && (next == null || entry[1].at < next[1].at)) next = entry
      if (next == null) break
      this.timers.delete(next[0])
      this.nowMs = next[1].at
      next[1].fn()
    }
    this.nowMs = target
  }
}

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
