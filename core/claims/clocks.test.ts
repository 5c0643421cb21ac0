import { describe, it, expect } from 'vitest'
import { ownerClock, voterClock } from './clocks.ts'

function clocks () {
  let wall = 1_700_000_000_000
  let mono = 5_000
  return { wall: { now: () => wall }, mono: { nowMs: () => mono }, step: (w: number, m: number) => { wall += w; mono += m } }
}

describe('lease clocks', () => {
  it('an owner counts a suspend (wall moves, monotonic does not) and ignores a backward wall step', () => {
    const c = clocks()
    const owner = ownerClock(c.wall, c.mono)
    c.step(60_000, 10)
    expect(owner.nowMs()).toBe(60_000)
    c.step(-30_000, 100)
    expect(owner.nowMs()).toBe(60_000)
    c.step(0, 60_000)
    expect(owner.nowMs()).toBe(60_110)
  })

  it('a voter counts the smaller elapsed time and never goes back', () => {
    const c = clocks()
    const voter = voterClock(c.wall, c.mono)
    c.step(60_000, 10)
    expect(voter.nowMs()).toBe(10)
    c.step(-60_000, 100)
    expect(voter.nowMs()).toBe(10)
    c.step(1_000, 1_000)
    expect(voter.nowMs()).toBe(1_000)
  })
})
