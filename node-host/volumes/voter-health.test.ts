import { describe, expect, it } from 'vitest'
import { describeClaimVoters, silentForMs, voterVerdict, VoterSightings, type VoterState } from './voter-health.ts'
import { majorityOf } from '../../core/claims/index.ts'

const live = (peerId: string): VoterState => ({ peerId, live: true })
const gone = (peerId: string, goneMs?: number): VoterState => ({ peerId, live: false, ...(goneMs !== undefined ? { goneMs } : {}) })
const short = (id: string): string => `…${id}`
const age = (ms: number): string => `${ms / 60_000}m`

describe('the voters of a claim a node owns', () => {
  it('needs a majority: 2 of 3, 3 of 5, 1 of 1', () => {
    expect([1, 2, 3, 4, 5].map(majorityOf)).toEqual([1, 2, 2, 3, 3])
  })

  it('says ok, degraded, at-risk or stuck', () => {
    expect(voterVerdict([live('a'), live('b'), live('c')])).toBe('ok')
    expect(voterVerdict([live('a'), live('b'), gone('c')])).toBe('at-risk')
    expect(voterVerdict([live('a'), gone('b'), gone('c')])).toBe('stuck')
    expect(voterVerdict([live('a'), live('b'), live('c'), live('d'), gone('e')])).toBe('degraded')
    expect(voterVerdict([live('a'), live('b'), live('c'), gone('d'), gone('e')])).toBe('at-risk')
    expect(voterVerdict([live('a')])).toBe('ok')
  })

  it('is silent while every voter is live, and names the gone ones with how long and what it means', () => {
    expect(describeClaimVoters({ claimId: 'ledger/0', epoch: 2, voters: [live('a'), live('b'), live('c')] }, short, age)).toBeUndefined()
    expect(describeClaimVoters({ claimId: 'ledger/0', epoch: 2, voters: [live('a'), live('b'), gone('c', 720_000)] }, short, age))
      .toBe('ledger/0: voter …c (gone 12m) not in the fleet; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (the owner replaces a voter gone or silent for cell up --voter-replace-after, 5m by default)')
    expect(describeClaimVoters({ claimId: 'ledger/1', epoch: 2, voters: [live('a'), gone('b', 60_000), gone('c')] }, short, age))
      .toBe('ledger/1: voters …b (gone 1m), …c not in the fleet; 1 of its 3 voters left, 2 needed to renew or move it: it cannot renew, and no node can take it, until 1 of them returns')
    expect(describeClaimVoters({ claimId: 'ledger/2', epoch: 1, voters: [live('a'), live('b'), live('c'), live('d'), gone('e', 120_000)] }, short, age))
      .toBe('ledger/2: voter …e (gone 2m) not in the fleet; 4 of its 5 voters left, 3 needed to renew or move it')
  })

  it('names a voter in the fleet that does not answer apart from one out of it; it counts as gone', () => {
    const silent = (peerId: string, goneMs: number): VoterState => ({ peerId, live: false, silent: true, goneMs })
    expect(voterVerdict([live('a'), live('b'), silent('c', 60_000)])).toBe('at-risk')
    expect(describeClaimVoters({ claimId: 'ledger/0', epoch: 2, voters: [live('a'), live('b'), silent('c', 180_000)] }, short, age))
      .toBe('ledger/0: voter …c (for 3m) in the fleet but not answering its claim rounds; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (the owner replaces a voter gone or silent for cell up --voter-replace-after, 5m by default)')
    expect(describeClaimVoters({ claimId: 'ledger/1', epoch: 2, voters: [live('a'), gone('b', 60_000), silent('c', 120_000)] }, short, age))
      .toBe('ledger/1: voter …b (gone 1m) not in the fleet; voter …c (for 2m) in the fleet but not answering its claim rounds; 1 of its 3 voters left, 2 needed to renew or move it: it cannot renew, and no node can take it, until 1 of them returns')
  })

  it('says when the owner will replace the voter, by the owner\'s own --voter-replace-after', () => {
    const at = (replaceAfterMs: number, voters: VoterState[]): string | undefined => describeClaimVoters({ claimId: 'ledger/0', epoch: 2, replaceAfterMs, voters }, short, age)
    expect(at(300_000, [live('a'), live('b'), gone('c', 120_000)]))
      .toBe('ledger/0: voter …c (gone 2m) not in the fleet; 2 of its 3 voters left, 2 needed to renew or move it: one more gone and it stops until one returns (its owner replaces a voter gone or silent for 5m, its --voter-replace-after: …c in 3m)')
    // A node started with --voter-replace-after 30m, one with 0, one whose time has come.
    expect(at(1_800_000, [live('a'), live('b'), { peerId: 'c', live: false, silent: true, goneMs: 600_000 }])).toMatch(/\(its owner replaces a voter gone or silent for 30m, its --voter-replace-after: …c in 20m\)$/)
    expect(at(0, [live('a'), live('b'), gone('c', 120_000)])).toMatch(/\(its owner never replaces voters: it runs with --voter-replace-after 0\)$/)
    expect(at(60_000, [live('a'), live('b'), live('c'), gone('d', 60_000), gone('e', 30_000)])).toMatch(/: …d is due now \(a failed move is tried again at its next check\)\)$/)
    // Degraded and stuck claims say nothing about replacing: the first needs no hurry, the second cannot move.
    expect(at(60_000, [live('a'), live('b'), live('c'), live('d'), gone('e', 30_000)])).not.toMatch(/replaces/)
    expect(at(60_000, [live('a'), gone('b', 30_000), gone('c', 30_000)])).not.toMatch(/replaces/)
  })

  it('count a voter silent only since it came back into the view or restarted', () => {
    const r = new VoterSightings()
    // In the view since first looked at: silent for all its unanswered time.
    expect(r.note('a', true, 100, 1_000)).toBeUndefined()
    expect(r.note('a', true, 100, 20_000)).toBeUndefined()
    expect(silentForMs(40_000, undefined, 20_000)).toBe(40_000)
    // Out of the view, then back: silent at most since its return.
    expect(r.note('a', false, undefined, 30_000)).toBeUndefined()
    expect(r.note('a', true, 100, 45_000)).toBe(45_000)
    expect(silentForMs(35_000, 45_000, 45_000)).toBe(0)
    expect(silentForMs(35_000, 45_000, 47_000)).toBe(2_000)
    // Still unanswered long after its return: silent again, for as long as it has been back.
    expect(r.note('a', true, 100, 80_000)).toBe(45_000)
    expect(silentForMs(70_000, 45_000, 80_000)).toBe(35_000)
    expect(silentForMs(10_000, 45_000, 80_000)).toBe(10_000)
    // Restarted without ever leaving the view: its record names a new start.
    expect(r.note('b', true, 100, 1_000)).toBeUndefined()
    expect(r.note('b', true, 900, 5_000)).toBe(5_000)
    expect(r.note('b', true, 900, 9_000)).toBe(5_000)
    // Gone since it was last seen in the view, or since first noted out.
    expect(r.goneForMs('a', 80_000)).toBe(0)
    expect(r.note('a', false, undefined, 81_000)).toBe(45_000)
    expect(r.goneForMs('a', 95_000)).toBe(15_000)
    expect(r.note('c', false, undefined, 50_000)).toBeUndefined()
    expect(r.goneForMs('c', 50_000)).toBe(0)
    expect(r.goneForMs('c', 62_000)).toBe(12_000)
    expect(r.goneForMs('never', 62_000)).toBe(0)
    // Forgotten once no claim of the node has it as a voter.
    r.keepOnly(new Set(['b']))
    expect(r.note('a', true, 100, 90_000)).toBeUndefined()
    expect(r.note('b', true, 900, 90_000)).toBe(5_000)
  })
})
