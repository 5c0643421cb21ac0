// Issue 10 point 7: a stateful replica's heartbeat carries its claim (ordinal, epoch) so callers can
// tell a fenced replica from the current owner. Fails on the old code: the codec dropped the field.
import { describe, expect, it } from 'vitest'
import { decodeInstanceBody, encodeInstanceBody } from './codec.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { CLAIM_LIMITS, type InstanceRecord } from './records.ts'
import { makeInstanceRecord } from './testing.ts'

const NODE_ID = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'

describe('the claim of a stateful replica in its heartbeat', () => {
  it('round-trips alone and after an exit report, and leaves stateless records as they were', () => {
    const plain = makeInstanceRecord(NODE_ID, { cell: 'ledger' })
    const stateful: InstanceRecord = { ...plain, claim: { ordinal: 2, epoch: 7 } }
    expect(decodeInstanceBody(encodeInstanceBody(stateful))).toEqual(stateful)
    const crashed: InstanceRecord = { ...stateful, state: 'crashed', endedMs: 9, exitReason: 'exited with code 1' }
    expect(decodeInstanceBody(encodeInstanceBody(crashed))).toEqual(crashed)
    expect(decodeInstanceBody(encodeInstanceBody(plain))).toEqual(plain)
    expect(decodeInstanceBody(encodeInstanceBody(plain)).claim).toBeUndefined()
  })

  it('refuses epochs below 1, huge ordinals and epochs, and an empty exit report with nothing after it', () => {
    const plain = makeInstanceRecord(NODE_ID, { cell: 'ledger' })
    for (const claim of [{ ordinal: 0, epoch: 0 }, { ordinal: -1, epoch: 1 }, { ordinal: CLAIM_LIMITS.ordinal + 1, epoch: 1 }, { ordinal: 0, epoch: CLAIM_LIMITS.epoch + 1 }, { ordinal: 0.5, epoch: 1 }]) {
      expect(() => encodeInstanceBody({ ...plain, claim })).toThrow(MalformedFleetRecordError)
    }
    const bytes = encodeInstanceBody({ ...plain, claim: { ordinal: 0, epoch: 1 } })
    // Cut the claim off: what is left ends in an empty exit report, which alone is not a record.
    expect(() => decodeInstanceBody(bytes.subarray(0, bytes.length - 2))).toThrow(MalformedFleetRecordError)
    // A claim with a trailing byte, or an epoch of 0 on the wire, is refused by name.
    expect(() => decodeInstanceBody(new Uint8Array([...bytes, 0]))).toThrow(MalformedFleetRecordError)
    const zero = bytes.slice(); zero[zero.length - 1] = 0
    expect(() => decodeInstanceBody(zero)).toThrow(MalformedFleetRecordError)
  })
})
