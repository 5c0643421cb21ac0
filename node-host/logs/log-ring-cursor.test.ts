// LogRing sequence numbers as cursors: `since(seq)` returns exactly what came after, and says by its
// first seq when the ring already dropped some of it.
import { describe, it, expect } from 'vitest'
import { LogRing } from '../capsid/log-ring.ts'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('LogRing cursors', () => {
  it('numbers lines from 1 across both streams and resumes after any cursor', () => {
    const ring = new LogRing(5)
    ring.push('stdout', bytes('a\nb\n'), 1)
    ring.push('stderr', bytes('c\n'), 2)
    expect(ring.since(0).map(l => [l.seq, l.line, l.stream])).toEqual([[1, 'a', 'stdout'], [2, 'b', 'stdout'], [3, 'c', 'stderr']])
    expect(ring.since(2).map(l => l.line)).toEqual(['c'])
    expect(ring.since(3)).toEqual([])
    expect(ring.since(1, 1).map(l => l.line)).toEqual(['b'])
  })

  it('after overflow, the first line returned tells how many were dropped', () => {
    const ring = new LogRing(3)
    ring.push('stdout', bytes('1\n2\n3\n4\n5\n6\n'), 1)
    expect(ring.lastSeq).toBe(6)
    const after = ring.since(1)
    expect(after.map(l => l.seq)).toEqual([4, 5, 6])
    expect(ring.since(5).map(l => l.line)).toEqual(['6'])
    expect(ring.since(99)).toEqual([])
  })
})
