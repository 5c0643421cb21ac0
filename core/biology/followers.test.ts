import { describe, it, expect } from 'vitest'
import { rendezvous, standbyCandidates, STANDBY_CANDIDATES } from './followers.ts'
import { defaultBiologyParams } from './params.ts'
import { AUTHORITY, node } from './testing.ts'

describe('standby candidates', () => {
  const ids = Array.from({ length: 20 }, (_, i) => `node${i}`)
  const nodes = ids.map(id => node(id))

  it('ranks by the rendezvous hash of (cell, node): the same set whatever the order of the view', () => {
    const a = standbyCandidates('billing', nodes, () => false, AUTHORITY, defaultBiologyParams)
    const b = standbyCandidates('billing', [...nodes].reverse(), () => false, AUTHORITY, defaultBiologyParams)
    expect(a.size).toBe(STANDBY_CANDIDATES)
    expect([...b].sort()).toEqual([...a].sort())
    const top = [...ids].sort((x, y) => rendezvous('billing', y) - rendezvous('billing', x)).slice(0, STANDBY_CANDIDATES)
    expect([...a].sort()).toEqual(top.sort())
    // Another cell spreads over other nodes.
    expect([...standbyCandidates('ledger', nodes, () => false, AUTHORITY, defaultBiologyParams)].sort()).not.toEqual([...a].sort())
  })

  it('skips hosts and ineligible nodes, and the next-ranked node takes a place that frees up', () => {
    const first = [...standbyCandidates('billing', nodes, () => false, AUTHORITY, defaultBiologyParams)]
    const host = first[0]
    const after = standbyCandidates('billing', nodes, (id) => id === host, AUTHORITY, defaultBiologyParams)
    expect(after.has(host)).toBe(false)
    expect(after.size).toBe(STANDBY_CANDIDATES)
    for (const id of first.slice(1)) expect(after.has(id)).toBe(true)
    const full = nodes.map(n => n.id === first[1] ? node(n.id, { capacity: { freeSlots: 0, cpuFreePercent: 80, memoryFreeBytes: 4 * 2 ** 30 } }) : n)
    expect(standbyCandidates('billing', full, () => false, AUTHORITY, defaultBiologyParams).has(first[1])).toBe(false)
    expect(standbyCandidates('billing', nodes, () => false, 'another-authority', defaultBiologyParams).size).toBe(0)
    expect(standbyCandidates('billing', nodes.slice(0, 3), () => false, AUTHORITY, defaultBiologyParams).size).toBe(3)
  })
})
