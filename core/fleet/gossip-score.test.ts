import { describe, expect, it } from 'vitest'
import { fleetScoreParams, GuestScoring, MEMBER_SCORE, FLEET_SCORE_THRESHOLDS } from './gossip-score.ts'

function scoring (places = 2): { s: GuestScoring, members: Set<string>, vouched: Set<string>, connected: Set<string>, clock: { ms: number } } {
  const members = new Set<string>()
  const vouched = new Set<string>()
  const connected = new Set<string>()
  const clock = { ms: 0 }
  const s = new GuestScoring({ isMember: p => members.has(p), isVouched: p => vouched.has(p), isConnected: p => connected.has(p), places, now: () => clock.ms })
  return { s, members, vouched, connected, clock }
}

describe('GuestScoring', () => {
  it('gives members the member score, the first anonymous guests 0 and the rest a negative score above the gossip threshold', () => {
    const { s, members, connected } = scoring(2)
    members.add('m')
    for (const p of ['g1', 'g2', 'g3', 'm']) connected.add(p)
    expect(s.appScore('m')).toBe(1)
    expect(s.appScore('g1')).toBe(0)
    expect(s.appScore('g2')).toBe(0)
    const surplus = s.appScore('g3') * MEMBER_SCORE
    expect(surplus).toBeLessThan(0)
    expect(surplus).toBeGreaterThan(FLEET_SCORE_THRESHOLDS.gossipThreshold)
    expect(surplus).toBeGreaterThan(FLEET_SCORE_THRESHOLDS.publishThreshold)
    // First come keeps its place when read again.
    expect(s.appScore('g1')).toBe(0)
    expect(s.placedGuests()).toEqual(['g1', 'g2'])
    // Through the score parameters gossipsub reads.
    const params = fleetScoreParams(s)
    expect(params.appSpecificWeight * params.appSpecificScore('m')).toBe(MEMBER_SCORE)
    expect(params.appSpecificScore('g3')).toBeLessThan(0)
  })

  it('frees a place when its guest leaves (checked at most once a second), becomes a member or is vouched for', () => {
    const { s, members, vouched, connected, clock } = scoring(2)
    for (const p of ['g1', 'g2', 'g3', 'g4']) connected.add(p)
    s.appScore('g1'); s.appScore('g2')
    expect(s.appScore('g3')).toBeLessThan(0)
    connected.delete('g1')
    clock.ms += 500
    expect(s.appScore('g3')).toBeLessThan(0)
    clock.ms += 500
    expect(s.appScore('g3')).toBe(0)
    expect(s.placedGuests()).toEqual(['g2', 'g3'])
    // A member's and a vouched guest's places go at once, read through their own score.
    members.add('g2')
    expect(s.appScore('g2')).toBe(1)
    vouched.add('g3')
    expect(s.appScore('g3')).toBe(0)
    expect(s.placedGuests()).toEqual([])
    expect(s.appScore('g4')).toBe(0)
  })

  it('never places a peer that is not connected (a departed peer whose score gossipsub keeps)', () => {
    const { s, connected } = scoring(1)
    expect(s.appScore('gone')).toBeLessThan(0)
    connected.add('g')
    expect(s.appScore('g')).toBe(0)
  })

  it('vouched guests score 0 without taking places; no places: every anonymous guest is negative', () => {
    const { s, vouched, connected } = scoring(0)
    connected.add('a'); connected.add('v')
    vouched.add('v')
    expect(s.appScore('v')).toBe(0)
    expect(s.appScore('a')).toBeLessThan(0)
    expect(() => new GuestScoring({ isMember: () => false, isConnected: () => true, places: -1 })).toThrow(RangeError)
    expect(() => new GuestScoring({ isMember: () => false, isConnected: () => true, places: 1.5 })).toThrow(/whole number/)
  })
})
