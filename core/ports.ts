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
