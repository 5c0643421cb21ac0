// A clock for unit tests that only moves when told; due timers fire in order on `advance`
// (including timers they schedule). Web-platform only, like the rest of core.
import type { Clock } from '../ports.ts'

export class ManualClock implements Clock {
  private nowMs: number
  private nextId = 1
  private readonly timers = new Map<number, { at: number, fn: () => void }>()

  constructor (startMs = 1_700_000_000_000) {
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

  /** Timers scheduled and not yet fired or cleared. */
  get pending (): number {
    return this.timers.size
  }

  advance (ms: number): void {
    const target = this.nowMs + ms
    for (;;) {
      let next: [number, { at: number, fn: () => void }] | undefined
      for (const entry of this.timers) if (entry[1].at <= target && (next === undefined || entry[1].at < next[1].at)) next = entry
      if (next === undefined) break
      this.timers.delete(next[0])
      this.nowMs = next[1].at
      next[1].fn()
    }
    this.nowMs = target
  }
}
