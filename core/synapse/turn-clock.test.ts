import { describe, it, expect } from 'vitest'
import { turnCached } from './turn-clock.ts'

describe('turnCached', () => {
  it('reads once per synchronous run and again after the microtasks queued before it', async () => {
    let t = 100
    let reads = 0
    const now = turnCached(() => { reads++; return t })
    expect(now()).toBe(100)
    t = 105
    expect(now()).toBe(100)
    expect(reads).toBe(1)
    await Promise.resolve()
    expect(now()).toBe(105)
    expect(reads).toBe(2)
    // A negative reading is a reading like any other (an injected clock may start anywhere).
    t = -3
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(now()).toBe(-3)
    t = 7
    expect(now()).toBe(-3)
    await Promise.resolve()
    expect(now()).toBe(7)
    expect(reads).toBe(4)
  })
})
