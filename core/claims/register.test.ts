import { describe, it, expect } from 'vitest'
import {
  acceptAccept, acceptPrepare, applyChange, emptySlot, marginMs, placeOfSlot, takeoverWaitMs, restoreSlot,
  type Ballot, type ClaimPlace, type ClaimSlot, type ClaimValue
} from './register.ts'
import { chooseVoters, voterCount } from './voters.ts'

const A = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
const B = '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'
const C = '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC'
const D = '12D3KooWDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD'
const VOTERS = [A, B, C]
const LEASE = 1_000
const WAIT = LEASE + marginMs(LEASE)

const ballot = (counter: number, proposer: string): Ballot => ({ counter, proposer })
const held = (owner: string, epoch: number): ClaimValue => ({ owner, epoch, leaseMs: LEASE, state: 'held', voters: VOTERS })

function accepted (value: ClaimValue, b: Ballot, atMs: number): ClaimSlot {
  const out = acceptAccept(emptySlot(), b, value, value.owner, atMs)
  if (!out.ok) throw new Error('setup')
  return out.slot
}

describe('acceptor transitions', () => {
  it('refuses a takeover until the lease plus margin has passed on its own clock', () => {
    const slot = accepted(held(A, 1), ballot(1, A), 10_000)
    const early = acceptAccept(slot, ballot(2, B), held(B, 2), B, 10_000 + WAIT - 1)
    expect(early).toMatchObject({ ok: false, reason: 'lease-held', holder: A, epoch: 1, waitMs: 1 })
    expect(acceptAccept(slot, ballot(2, B), held(B, 2), B, 10_000 + WAIT).ok).toBe(true)
  })

  it('lets the owner renew at any time, and a renew restarts the wait', () => {
    const slot = accepted(held(A, 1), ballot(1, A), 0)
    const renewed = acceptAccept(slot, ballot(2, A), held(A, 1), A, 900)
    if (!renewed.ok) throw new Error('renew refused')
    expect(takeoverWaitMs(renewed.slot, 900)).toBe(WAIT)
    expect(acceptAccept(renewed.slot, ballot(3, B), held(B, 2), B, WAIT + 1).ok).toBe(false)
  })

  it('allows a takeover at once after a release', () => {
    const slot = accepted({ ...held(A, 1), state: 'released' }, ballot(1, A), 0)
    expect(acceptAccept(slot, ballot(2, B), held(B, 2), B, 1).ok).toBe(true)
  })

  it('accepts only values whose owner is the authenticated proposer', () => {
    expect(acceptAccept(emptySlot(), ballot(1, B), held(A, 1), B, 0)).toMatchObject({ ok: false, reason: 'owner' })
    expect(acceptAccept(emptySlot(), ballot(1, A), held(A, 1), B, 0)).toMatchObject({ ok: false, reason: 'owner' })
  })

  it('a replayed accept neither changes the value nor lengthens the lease', () => {
    const slot = accepted(held(A, 1), ballot(1, A), 0)
    const again = acceptAccept(slot, ballot(1, A), held(A, 1), A, 800)
    expect(again.ok && again.slot).toBe(slot)
    expect(acceptAccept(slot, ballot(1, A), { ...held(A, 1), leaseMs: 5_000 }, A, 800)).toMatchObject({ ok: false, reason: 'ballot' })
  })

  it('promises strictly higher ballots only, and refuses accepts below the promise', () => {
    const p = acceptPrepare(emptySlot(), ballot(5, A), VOTERS, 0)
    if (!p.ok) throw new Error('prepare refused')
    expect(acceptPrepare(p.slot, ballot(5, A), VOTERS, 0)).toMatchObject({ ok: false, reason: 'ballot' })
    expect(acceptPrepare(p.slot, ballot(4, B), VOTERS, 0)).toMatchObject({ ok: false, reason: 'ballot' })
    expect(acceptAccept(p.slot, ballot(4, B), held(B, 1), B, 0)).toMatchObject({ ok: false, reason: 'ballot' })
    expect(acceptPrepare(p.slot, ballot(5 + 2_000_000, B), VOTERS, 0)).toMatchObject({ ok: false, reason: 'ballot' })
  })

  it('keeps the voters of the first accepted value', () => {
    const slot = accepted(held(A, 1), ballot(1, A), 0)
    expect(acceptPrepare(slot, ballot(2, B), [A, B], 0)).toMatchObject({ ok: false, reason: 'voters', voters: VOTERS })
  })

  it('after a restart counts the lease from the restart', () => {
    const slot = restoreSlot(accepted(held(A, 1), ballot(1, A), 0), 50_000)
    expect(takeoverWaitMs(slot, 50_000)).toBe(WAIT)
  })
})

describe('a claim moved to new voters (generations)', () => {
  const NEXT = [A, B, D]
  const gen1: ClaimPlace = { gen: 1, voters: NEXT, origin: { owner: A, epoch: 4, leaseMs: LEASE } }
  const moveValue = (): ClaimValue => ({ ...held(A, 4), next: { gen: 1, voters: NEXT } })

  it('a request of the next generation starts the slot afresh; one of the old generation is told where the claim went', () => {
    const old = accepted(held(A, 4), ballot(3, A), 0)
    const p = acceptPrepare(old, ballot(1, A), NEXT, 100, undefined, gen1)
    if (!p.ok) throw new Error('refused')
    expect(p.accepted).toBeNull()
    expect(placeOfSlot(p.slot)).toEqual(gen1)
    expect(acceptPrepare(p.slot, ballot(9, C), VOTERS, 200)).toEqual({ ok: false, reason: 'moved', place: gen1 })
    expect(acceptAccept(p.slot, ballot(9, C), held(C, 5), C, 200)).toEqual({ ok: false, reason: 'moved', place: gen1 })
    // Without the move that made it, or jumping too far, a generation is not started.
    expect(acceptPrepare(old, ballot(1, A), NEXT, 100, undefined, { gen: 1, voters: NEXT })).toMatchObject({ ok: false, reason: 'moved' })
    expect(acceptPrepare(old, ballot(1, A), NEXT, 100, undefined, { ...gen1, gen: 5_000 })).toMatchObject({ ok: false, reason: 'moved' })
  })

  it('the new voters let only the moving owner start the generation until its lease has run out on their clocks', () => {
    const p = acceptPrepare(emptySlot(), ballot(1, B), NEXT, 1_000, undefined, gen1)
    if (!p.ok) throw new Error('refused')
    expect(p.waitMs).toBe(WAIT)
    const value = (owner: string, epoch: number): ClaimValue => ({ ...held(owner, epoch), voters: NEXT })
    expect(acceptAccept(p.slot, ballot(1, B), value(B, 5), B, 1_000 + WAIT - 1, undefined, gen1)).toMatchObject({ ok: false, reason: 'lease-held', holder: A, epoch: 4, waitMs: 1 })
    expect(acceptAccept(p.slot, ballot(1, B), value(B, 5), B, 1_000 + WAIT, undefined, gen1).ok).toBe(true)
    expect(acceptAccept(p.slot, ballot(2, A), value(A, 4), A, 1_001, undefined, gen1).ok).toBe(true)
    // After a restart the wait counts again from the restart.
    expect(takeoverWaitMs(restoreSlot(p.slot, 90_000), 90_000)).toBe(WAIT)
  })

  it('anyone may propose a move again unchanged (to complete it); nobody else\'s plain value', () => {
    const slot = accepted(held(A, 4), ballot(3, A), 0)
    expect(acceptAccept(slot, ballot(4, C), moveValue(), C, 10).ok).toBe(true)
    expect(acceptAccept(slot, ballot(4, C), held(A, 4), C, 10)).toMatchObject({ ok: false, reason: 'owner' })
    expect(acceptAccept(slot, ballot(4, A), moveValue(), C, 10)).toMatchObject({ ok: false, reason: 'owner' })
  })

  it('change functions: move, then take up the new generation at the same epoch; others acquire only after the origin\'s lease', () => {
    expect(applyChange(held(A, 4), 0, { op: 'move', self: A, epoch: 4, leaseMs: LEASE, next: { gen: 1, voters: [D, B, A] } })).toMatchObject({ ok: true, value: { owner: A, epoch: 4, next: { gen: 1, voters: NEXT } } })
    expect(applyChange(held(B, 5), 0, { op: 'move', self: A, epoch: 4, leaseMs: LEASE, next: { gen: 1, voters: NEXT } })).toMatchObject({ ok: false, reason: 'lost' })
    expect(applyChange(null, 0, { op: 'renew', self: A, epoch: 4, leaseMs: LEASE }, gen1.origin, NEXT)).toMatchObject({ ok: true, value: { owner: A, epoch: 4, state: 'held', voters: NEXT } })
    expect(applyChange(null, 0, { op: 'renew', self: B, epoch: 4, leaseMs: LEASE }, gen1.origin, NEXT)).toMatchObject({ ok: false, reason: 'lost' })
    expect(applyChange(null, WAIT, { op: 'acquire', self: B, leaseMs: LEASE, voters: NEXT }, gen1.origin, NEXT)).toMatchObject({ ok: false, reason: 'held', holder: A, epoch: 4 })
    expect(applyChange(null, 0, { op: 'acquire', self: B, leaseMs: LEASE, voters: NEXT }, gen1.origin, NEXT)).toMatchObject({ ok: true, value: { owner: B, epoch: 5 } })
    // The moving owner itself is told it holds the claim (it renews at its epoch, never skips one).
    expect(applyChange(null, 0, { op: 'acquire', self: A, leaseMs: LEASE, voters: NEXT }, gen1.origin, NEXT)).toMatchObject({ ok: false, reason: 'held', holder: A, epoch: 4 })
  })
})

describe('change functions', () => {
  it('acquire: epoch + 1 over nothing, a release or an expired lease; held otherwise', () => {
    expect(applyChange(null, 0, { op: 'acquire', self: A, leaseMs: LEASE, voters: VOTERS })).toMatchObject({ ok: true, value: { owner: A, epoch: 1, state: 'held' } })
    expect(applyChange(held(B, 4), 0, { op: 'acquire', self: A, leaseMs: LEASE, voters: VOTERS })).toMatchObject({ ok: true, value: { owner: A, epoch: 5 } })
    expect(applyChange(held(B, 4), 10, { op: 'acquire', self: A, leaseMs: LEASE, voters: VOTERS })).toMatchObject({ ok: false, reason: 'held', holder: B, waitMs: 10 })
    expect(applyChange({ ...held(B, 4), state: 'released' }, 10, { op: 'acquire', self: A, leaseMs: LEASE, voters: VOTERS })).toMatchObject({ ok: true, value: { epoch: 5 } })
  })

  it('renew and release: only the owner at that epoch', () => {
    expect(applyChange(held(A, 3), 500, { op: 'renew', self: A, epoch: 3, leaseMs: 2_000 })).toMatchObject({ ok: true, value: { owner: A, epoch: 3, leaseMs: 2_000 } })
    expect(applyChange(held(B, 4), 0, { op: 'renew', self: A, epoch: 3, leaseMs: LEASE })).toMatchObject({ ok: false, reason: 'lost', owner: B, epoch: 4 })
    expect(applyChange(held(A, 3), 0, { op: 'release', self: A, epoch: 3 })).toMatchObject({ ok: true, value: { state: 'released', epoch: 3 } })
    expect(applyChange({ ...held(A, 3), state: 'released' }, 0, { op: 'release', self: A, epoch: 3 })).toMatchObject({ ok: true, noop: true })
    expect(applyChange({ ...held(A, 3), state: 'released' }, 0, { op: 'renew', self: A, epoch: 3, leaseMs: LEASE })).toMatchObject({ ok: false, reason: 'lost' })
  })
})

describe('chooseVoters', () => {
  const ids = Array.from({ length: 9 }, (_, i) => `12D3KooW${'ABCDEFGHJ'[i].repeat(44)}`)

  it('3 voters under 5 candidates, else 5; the same set whatever the order', () => {
    expect(voterCount(2)).toBe(2)
    expect(voterCount(4)).toBe(3)
    expect(voterCount(5)).toBe(5)
    expect(chooseVoters('ledger/0', ids.slice(0, 4))).toHaveLength(3)
    const five = chooseVoters('ledger/0', ids)
    expect(five).toHaveLength(5)
    expect(chooseVoters('ledger/0', [...ids].reverse())).toEqual(five)
    // Rendezvous: removing a non-voter does not move the set.
    expect(chooseVoters('ledger/0', ids.filter(id => !five.includes(id)).slice(1).concat(five))).toEqual(five)
  })

  it('spreads claims over the candidates', () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 300; i++) for (const v of chooseVoters(`ledger/${i}`, ids)) counts.set(v, (counts.get(v) ?? 0) + 1)
    expect(counts.size).toBe(ids.length)
    for (const n of counts.values()) expect(n).toBeGreaterThan(100)
  })
})
