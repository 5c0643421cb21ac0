import { describe, expect, it } from 'vitest'
import { SequenceGuard } from './sequence-guard.ts'
import { ReplayedRecordError } from './errors.ts'

describe('SequenceGuard', () => {
  it('accepts strictly increasing seq per cell and refuses replays', () => {
    const guard = new SequenceGuard()
    expect(guard.accept({ cell: 'billing', seq: 1 })).toBe(true)
    expect(guard.accept({ cell: 'billing', seq: 3 })).toBe(true)
    expect(guard.accept({ cell: 'billing', seq: 3 })).toBe(false)
    expect(guard.accept({ cell: 'billing', seq: 2 })).toBe(false)
    expect(guard.accept({ cell: 'ledger', seq: 1 })).toBe(true)
    expect(guard.highestSeq('billing')).toBe(3)
    expect(guard.replayed).toBe(2)
    expect(() => { guard.acceptOrThrow({ cell: 'billing', seq: 1 }) }).toThrow(ReplayedRecordError)
    guard.acceptOrThrow({ cell: 'billing', seq: 4 })
    expect(guard.highestSeq('billing')).toBe(4)
  })

  it('refuses seq that is not a positive safe integer', () => {
    const guard = new SequenceGuard()
    for (const seq of [0, -1, 1.5, Number.NaN, 2 ** 53]) expect(guard.accept({ cell: 'c', seq })).toBe(false)
    expect(guard.size).toBe(0)
  })

  it('is bounded: forgets the least recently updated cell and counts it', () => {
    const guard = new SequenceGuard({ maxCells: 2 })
    guard.accept({ cell: 'a', seq: 5 })
    guard.accept({ cell: 'b', seq: 5 })
    guard.accept({ cell: 'a', seq: 6 })
    guard.accept({ cell: 'c', seq: 1 })
    expect(guard.size).toBe(2)
    expect(guard.evicted).toBe(1)
    expect(guard.highestSeq('b')).toBe(0)
    expect(guard.highestSeq('a')).toBe(6)
  })

  it('restores from a persisted snapshot', () => {
    const guard = new SequenceGuard()
    guard.accept({ cell: 'a', seq: 9 })
    const restored = new SequenceGuard({ initial: guard.entries() })
    expect(restored.accept({ cell: 'a', seq: 9 })).toBe(false)
    expect(restored.accept({ cell: 'a', seq: 10 })).toBe(true)
  })
})
