// Issue 10 point 7, the caller's half of fencing: a replica heard at a lower epoch of its claim than
// one seen before is not called, and its late answer is refused. Fails without ClaimEpochs: the
// stale owner stays a candidate and its answer is passed on.
import { describe, expect, it } from 'vitest'
import { makeInstanceRecord } from '../fleet/testing.ts'
import type { InstanceRecord } from '../fleet/index.ts'
import { ClaimEpochs } from './claim-epochs.ts'

const A = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'
const B = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'

const replica = (nodeId: string, ordinal: number, epoch: number, over: Partial<InstanceRecord> = {}): InstanceRecord =>
  ({ ...makeInstanceRecord(nodeId, { cell: 'ledger', state: 'ready', instanceId: `ledger-${nodeId.slice(-4)}-${ordinal}-${epoch}`, ...over }), claim: { ordinal, epoch } })

describe('ClaimEpochs', () => {
  it('drops a replica whose claim was seen at a higher epoch, and never goes back down', () => {
    const e = new ClaimEpochs()
    const old = replica(A, 0, 1)
    const next = replica(B, 0, 2)
    expect(e.current([old])).toEqual([old])
    expect(e.current([old, next])).toEqual([next])
    // The new owner's heartbeat is late or gone: the old one is still fenced.
    expect(e.current([old])).toEqual([])
    expect(e.epoch('ledger', 0)).toBe(2)
    // Other claims and stateless replicas are untouched.
    const other = replica(A, 1, 1)
    const stateless = makeInstanceRecord(A, { cell: 'ledger', state: 'ready' })
    expect(e.current([old, other, stateless])).toEqual([other, stateless])
  })

  it('refuses a late answer from the fenced node, not one from a node that still holds a current claim', () => {
    const e = new ClaimEpochs()
    const target = replica(A, 0, 1)
    e.note([target])
    expect(e.lateAnswer(target, [target])).toBe(false)
    // While the call was out, B took ledger/0 at epoch 2.
    expect(e.lateAnswer(target, [replica(B, 0, 2)])).toBe(true)
    // A also runs ledger/1 at its current epoch: that replica may have answered.
    expect(e.lateAnswer(target, [replica(B, 0, 2), replica(A, 1, 3)])).toBe(false)
    expect(e.lateAnswer(makeInstanceRecord(A, { cell: 'ledger' }), [])).toBe(false)
  })

  it('is bounded: the oldest claim is forgotten first', () => {
    const e = new ClaimEpochs(3)
    for (let o = 0; o < 5; o++) e.note([replica(A, o, 1)])
    expect(e.size).toBe(3)
    expect(e.epoch('ledger', 0)).toBe(0)
    expect(e.epoch('ledger', 4)).toBe(1)
  })
})
