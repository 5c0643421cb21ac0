// Ports that every host hands to the core. Core never reads the wall clock or Math.random directly,
// so decisions stay pure and testable with a fake clock and a seeded random source.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
  setTimeout(fn: () => void, delayMs: number): unknown
  clearTimeout(handle: unknown): void
}

export interface Random {
  /** Uniform float in [0, 1). */
  next(): number
  bytes(length: number): Uint8Array
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, delayMs) => setTimeout(fn, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>)
}

export const systemRandom: Random = {
  next: () => {
    const b = new Uint32Array(1)
    crypto.getRandomValues(b)
    return b[0] / 0x1_0000_0000
  },
  bytes: (length) => crypto.getRandomValues(new Uint8Array(length))
}

/** The longest delay a JS timer takes (2^31 − 1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Runs `work` every `everyMs` on `clock` from `start()` until `stop()`, one run at a time: the next
 * is scheduled when one ends, so a slow run never overlaps the next. A failing run is `onError`'s;
 * the schedule goes on. With `unref`, the pending timer never keeps a Node process alive.
 */
export class Repeater {
  private timer: unknown
  private active = false
  private readonly init: { clock: Clock, everyMs: number, work: () => Promise<void>, onError: (err: unknown) => void, unref?: boolean }

  constructor (init: { clock: Clock, everyMs: number, work: () => Promise<void>, onError: (err: unknown) => void, unref?: boolean }) {
    this.init = init
  }

  get running (): boolean { return this.active }

  start (): void {
    if (this.active) return
    this.active = true
    this.schedule()
  }

  stop (): void {
    this.active = false
    if (this.timer !== undefined) this.init.clock.clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule (): void {
    if (!this.active) return
    this.timer = this.init.clock.setTimeout(() => {
      void this.init.work().catch(this.init.onError).finally(() => { this.schedule() })
    }, Math.min(MAX_TIMER_MS, Math.max(0, this.init.everyMs)))
    if (this.init.unref === true) (this.timer as { unref?: () => void }).unref?.()
  }
}
