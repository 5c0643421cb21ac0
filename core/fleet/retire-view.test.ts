// Retire records in the fleet view (issue 8 §6): verified against trusted authorities, keyed by
// (authority, cell), same replay / future-seq / floor rules as releases, relayed in snapshots, and
// only from an authority that claims the cell. On the old code there was no retire kind: the
// envelope kind 5 was refused as malformed and `retired` did not exist.
import { describe, expect, it } from 'vitest'
import { generateAuthority, SequenceGuard, encodeRelease, signRelease, encodeRetire, signRetire, verifySignedRecord, verifySignedRetire, type AuthorityKey } from '../identity/index.ts'
import { decodeFrame, encodeEnvelope } from './codec.ts'
import { ManualClock } from './testing.ts'
import { FleetView } from './view.ts'

async function setup (trusted: AuthorityKey[], floors?: SequenceGuard): Promise<{ view: FleetView, clock: ManualClock }> {
  const clock = new ManualClock(1_800_000_000_000)
  const ids = new Set(trusted.map(k => k.id))
  const view = new FleetView({
    clock,
    verifyRelease: async (s, o) => await verifySignedRecord(s, { ...o, kind: 'release', trusted: ids }),
    verifyDesired: async (s, o) => await verifySignedRecord(s, { ...o, kind: 'desired', trusted: ids }),
    verifyRetire: async (s, o) => await verifySignedRetire(s, { ...o, trusted: ids }),
    ...(floors !== undefined ? { sequenceFloors: { release: new SequenceGuard(), desired: new SequenceGuard(), retire: floors } } : {})
  })
  return { view, clock }
}

async function release (key: AuthorityKey, seq: number, cell = 'billing'): Promise<Uint8Array> {
  return encodeRelease(await signRelease({ cell, version: '1.0.0', digest: 'ab'.repeat(32), seq, createdMs: seq }, key))
}

async function retire (key: AuthorityKey, seq: number, cell = 'billing'): Promise<Uint8Array> {
  return encodeRetire(await signRetire({ cell, seq, createdMs: seq, reason: 'retired by operator' }, key))
}

describe('retire records in the fleet view', () => {
  it('accepts the claimant\'s retire record, refuses replays, strangers, rivals and far-future seqs', async () => {
    const owner = await generateAuthority()
    const rival = await generateAuthority()
    const stranger = await generateAuthority()
    const { view, clock } = await setup([owner, rival])
    const now = clock.now()
    const apply = async (signed: Uint8Array, kind: 'release' | 'retire' = 'retire'): Promise<string> => {
      const r = await view.apply({ kind, signed }, { from: 'peer' })
      return r.accepted ? 'accepted' : r.reason
    }
    // Before the owner's release is known, nobody claims the cell: a retire record is refused.
    expect(await apply(await retire(owner, now + 1))).toBe('untrusted')
    expect(await apply(await release(owner, now), 'release')).toBe('accepted')
    expect(await apply(await retire(stranger, now + 1))).toBe('bad-signature')
    // A trusted rival that never signed the name cannot retire it, nor does its record claim the name.
    expect(await apply(await retire(rival, now + 1))).toBe('untrusted')
    expect(view.claimants('billing')).toEqual([owner.id])
    expect(await apply(await retire(owner, now + 10 * 3_600_000))).toBe('future')
    const first = await retire(owner, now + 1)
    expect(await apply(first)).toBe('accepted')
    expect(view.retired('billing')?.seq).toBe(now + 1)
    expect(await apply(first)).toBe('duplicate')
    expect(await apply(await retire(owner, now + 5))).toBe('accepted')
    expect(await apply(first)).toBe('stale')
    expect(view.retired('billing')?.seq).toBe(now + 5)
    // A garbage payload under the retire kind is refused, not thrown.
    expect(await apply(new Uint8Array([1, 3, 0]))).toBe('bad-signature')
  })

  it('travels in snapshots after the releases, and the floor refuses a replay after a restart', async () => {
    const owner = await generateAuthority()
    const floors = new SequenceGuard()
    const { view, clock } = await setup([owner], floors)
    await view.apply({ kind: 'release', signed: await release(owner, clock.now()) }, { from: 'p' })
    const old = await retire(owner, clock.now() + 1)
    await view.apply({ kind: 'retire', signed: old }, { from: 'p' })
    await view.apply({ kind: 'retire', signed: await retire(owner, clock.now() + 2) }, { from: 'p' })
    const kinds = view.snapshot().flatMap(f => decodeFrame(f)).map(e => e.envelope.kind)
    expect(kinds).toEqual(['release', 'retire'])
    // Same bytes through the codec, both ways.
    expect(decodeFrame(encodeEnvelope({ kind: 'retire', signed: old }))[0].envelope).toEqual({ kind: 'retire', signed: old })

    // "Restart": a fresh view with the persisted floor; the older record is a replay.
    const again = await setup([owner], floors)
    await again.view.apply({ kind: 'release', signed: await release(owner, clock.now()) }, { from: 'p' })
    const r = await again.view.apply({ kind: 'retire', signed: old }, { from: 'p' })
    expect(r).toEqual({ accepted: false, kind: 'retire', reason: 'stale' })
  })
})
