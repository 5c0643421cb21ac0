// The follower's state per node is bounded: a node hosting the cell (a granted, but misbehaving or
// compromised, fleet member) that streams `start` and `lines` frames for ever new replica ids and
// never ends them gets at most MAX_CURSORS of them followed — before, `cell logs -f` kept a cursor,
// a version and an announcement for every id it was sent, for as long as it ran.
import { describe, expect, it } from 'vitest'
import { entriesOf, newState } from './log-follower.ts'
import { MAX_CURSORS } from './log-protocol.ts'

describe('the logs follower\'s state per node', () => {
  it('follows at most MAX_CURSORS live replicas of a node, and new ones again once others end', () => {
    const state = newState()
    let started = 0
    let lines = 0
    for (let i = 0; i < 5000; i++) {
      started += entriesOf({ t: 'start', replica: `r${i}`, version: '1.0.0', startedMs: 1 }, 'billing', 'node-a', state).length
      lines += entriesOf({ t: 'lines', replica: `q${i}`, version: '1.0.0', lines: [[1, 1, 0, 'hello']] }, 'billing', 'node-a', state).length
    }
    // Started ones and ones first heard of by their lines alike: MAX_CURSORS in all.
    expect(started + lines).toBe(MAX_CURSORS)
    expect(state.versions.size).toBeLessThanOrEqual(MAX_CURSORS)
    expect(state.cursors.size).toBeLessThanOrEqual(MAX_CURSORS)
    expect(state.announced.size).toBeLessThanOrEqual(MAX_CURSORS)
    expect(state.overflow).toBe(2 * 5000 - MAX_CURSORS)
    // A followed replica keeps streaming.
    expect(entriesOf({ t: 'lines', replica: 'r0', lines: [[1, 1, 0, 'still here']] }, 'billing', 'node-a', state)).toHaveLength(1)
    // One ends: room for one more.
    expect(entriesOf({ t: 'end', replica: 'r1', ts: 2, reason: 'stopped' }, 'billing', 'node-a', state)).toHaveLength(1)
    expect(entriesOf({ t: 'start', replica: 'fresh', version: '1.0.0', startedMs: 3 }, 'billing', 'node-a', state)).toHaveLength(1)
    expect(entriesOf({ t: 'start', replica: 'one-too-many', version: '1.0.0', startedMs: 3 }, 'billing', 'node-a', state)).toHaveLength(0)
  })

  it('ignores frames without a replica id, or with one longer than a node ever makes', () => {
    const state = newState()
    expect(entriesOf({ t: 'start', replica: 'x'.repeat(129), version: '1.0.0', startedMs: 1 }, 'billing', 'node-a', state)).toEqual([])
    expect(entriesOf({ t: 'lines', version: '1.0.0', lines: [[1, 1, 0, 'whose?']] }, 'billing', 'node-a', state)).toEqual([])
    expect(entriesOf({ t: 'start', replica: 7, version: '1.0.0', startedMs: 1 }, 'billing', 'node-a', state)).toEqual([])
    expect(state.announced.size + state.cursors.size + state.versions.size).toBe(0)
  })
})
