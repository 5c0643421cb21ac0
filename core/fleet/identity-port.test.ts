// Checks that core/identity's verifier fits the view's SignedRecordVerifier port unchanged, with
// real authority signatures: the wiring the node host will use.
import { describe, it, expect } from 'vitest'
import {
  encodeDesiredVersion, encodeRelease, generateAuthority, signDesiredVersion, signRelease, verifySignedRecord
} from '../identity/index.ts'
import { ManualClock } from './testing.ts'
import { FleetView } from './view.ts'

describe('FleetView with core/identity release verification', () => {
  it('accepts authority-signed releases, keeps the highest seq and refuses other authorities and tampering', async () => {
    const author = await generateAuthority()
    const stranger = await generateAuthority()
    const trusted = new Set([author.id])
    const view = new FleetView({
      clock: new ManualClock(),
      verifyRelease: async (b, o) => await verifySignedRecord(b, { ...o, kind: 'release', trusted }),
      verifyDesired: async (b, o) => await verifySignedRecord(b, { ...o, kind: 'desired', trusted })
    })
    const digest = 'a'.repeat(64)
    const rel = async (seq: number, key = author) => encodeRelease(await signRelease({ cell: 'billing', version: `1.${seq}.0`, digest, seq, createdMs: 1 }, key))

    expect(await view.apply({ kind: 'release', signed: await rel(2) })).toEqual({ accepted: true, kind: 'release' })
    expect(view.release('billing')).toMatchObject({ cell: 'billing', version: '1.2.0', digest, authority: author.id, seq: 2 })
    expect(await view.apply({ kind: 'release', signed: await rel(1) })).toMatchObject({ reason: 'stale' })
    expect(await view.apply({ kind: 'release', signed: await rel(3, stranger) })).toMatchObject({ reason: 'bad-signature' })
    const tampered = await rel(4)
    tampered[tampered.length - 1] ^= 1
    expect(await view.apply({ kind: 'release', signed: tampered })).toMatchObject({ reason: 'bad-signature' })
    // A release is not accepted as a desired-version record.
    expect(await view.apply({ kind: 'desired', signed: await rel(5) })).toMatchObject({ reason: 'bad-signature' })

    const desired = encodeDesiredVersion(await signDesiredVersion({ cell: 'billing', version: '1.1.0', digest, seq: 7, createdMs: 2, reason: 'rollback' }, author))
    expect((await view.apply({ kind: 'desired', signed: desired })).accepted).toBe(true)
    expect(view.desired('billing')).toMatchObject({ version: '1.1.0', seq: 7 })
  })
})
