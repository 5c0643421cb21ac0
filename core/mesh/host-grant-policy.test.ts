import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { FleetView, signRecord, type ReleaseFields } from '../fleet/index.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from '../fleet/testing.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeCertificate, type AuthorityKey } from '../identity/index.ts'
import { hostGrantCheck, hostGrantPolicy } from './host-grant-policy.ts'

describe('host grant policy', () => {
  it('keeps heartbeats of nodes granted by the release authority and drops the rest, counted', async () => {
    const clock = new ManualClock(Date.now())
    const authority = await generateAuthority()
    const stranger = await generateAuthority()
    const fields: ReleaseFields = { cell: 'billing', version: '1.0.0', digest: 'a'.repeat(64), authority: authorityIdOf(authority.publicKey), seq: 1 }
    const verify = async (): Promise<ReleaseFields> => fields
    const view: FleetView = new FleetView({ clock, verifyRelease: verify, verifyDesired: verify, isTrusted: hostGrantPolicy(() => view, hostGrantCheck(clock), new Set([authorityIdOf(authority.publicKey)])) })
    expect((await view.apply({ kind: 'release', signed: new Uint8Array([1]) }, { from: 'x' })).accepted).toBe(true)

    const node = async (grantedBy: AuthorityKey | undefined, role: 'host' | 'caller' = 'host'): Promise<string> => {
      const key = await generateKeyPair('Ed25519')
      const id = peerIdFromPrivateKey(key).toString()
      const grants = grantedBy == null
        ? []
        : [encodeCertificate(await issueGrant(grantedBy, { subject: id, roles: [role], notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 }))]
      const n = await view!.apply(await signRecord(key, 'node', makeNodeRecord(id, { sentMs: clock.now(), grants })), { from: id })
      const instance = await signRecord(key, 'instance', makeInstanceRecord(id, { cell: 'billing', instanceId: `i-${id.slice(-6)}`, sentMs: clock.now() }))
      const r = await view!.apply(instance, { from: id })
      return `${n.accepted ? 'accepted' : n.reason}/${r.accepted ? 'accepted' : r.reason}`
    }
    expect(await node(authority)).toBe('accepted/accepted')
    // No grant, a grant from an authority this peer does not trust, a caller-only grant: neither the
    // node record nor its heartbeats count.
    expect(await node(undefined)).toBe('untrusted/untrusted')
    expect(await node(stranger)).toBe('untrusted/untrusted')
    expect(await node(authority, 'caller')).toBe('untrusted/untrusted')
    expect(view.instances('billing')).toHaveLength(1)
    expect(view.nodes()).toHaveLength(1)
    expect(view.stats().dropped.untrusted).toBe(6)
  })

  it('drops heartbeats of a node that sent no node record, and of a cell no trusted authority released', async () => {
    const clock = new ManualClock(Date.now())
    const authority = await generateAuthority()
    const fields: ReleaseFields = { cell: 'billing', version: '1.0.0', digest: 'a'.repeat(64), authority: authorityIdOf(authority.publicKey), seq: 1 }
    const verify = async (): Promise<ReleaseFields> => fields
    const view: FleetView = new FleetView({ clock, verifyRelease: verify, verifyDesired: verify, isTrusted: hostGrantPolicy(() => view, hostGrantCheck(clock), new Set([fields.authority])) })
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const grant = encodeCertificate(await issueGrant(authority, { subject: id, roles: ['host'], notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 }))
    const heartbeat = async (seq: number): Promise<string> => {
      const r = await view!.apply(await signRecord(key, 'instance', makeInstanceRecord(id, { cell: 'billing', seq, sentMs: clock.now() })), { from: id })
      return r.accepted ? 'accepted' : r.reason
    }
    // The issue-7 attack: a key that never sends a node record gossips "ready" heartbeats.
    expect(await heartbeat(1)).toBe('untrusted')
    expect((await view.apply(await signRecord(key, 'node', makeNodeRecord(id, { sentMs: clock.now(), grants: [grant] })), { from: id })).accepted).toBe(true)
    // Granted node, but no release of the cell is known yet: still dropped.
    expect(await heartbeat(2)).toBe('untrusted')
    expect((await view.apply({ kind: 'release', signed: new Uint8Array([1]) }, { from: 'x' })).accepted).toBe(true)
    expect(await heartbeat(3)).toBe('accepted')
    // The grant expires: the node's next records stop counting.
    clock.advance(86_400_000 + 120_000)
    expect((await view.apply(await signRecord(key, 'node', makeNodeRecord(id, { seq: 2, sentMs: clock.now(), grants: [grant] })), { from: id })).accepted).toBe(false)
  })
})
