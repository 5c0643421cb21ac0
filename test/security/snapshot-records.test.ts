// Attacks on snapshot and pin records (issue 10 point 4): a snapshot counts as safe once two nodes
// other than its owner pin it, so whoever can announce snapshots or pins decides what a new owner
// restores. The view runs the mesh's own trust policy (core/mesh/host-grant-policy.ts) with real
// authority grants, and every record arrives as a gossip frame would (applyFrame with the sender):
// each attack below must be dropped, counted, and leave newestSafe where it was.
import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import {
  FleetView, MalformedFleetRecordError, encodeEnvelope, signRecord, SNAPSHOT_LIMITS, type ReleaseFields, type SnapshotRecord
} from '../../core/fleet/index.ts'
import { KIND_PIN, KIND_SNAPSHOT } from '../../core/fleet/codec.ts'
import { encodePinBody } from '../../core/fleet/snapshots.ts'
import { ByteWriter } from '../../core/fleet/bytes.ts'
import { ManualClock, makeNodeRecord, makePinRecord, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { generateAuthority, authorityIdOf, issueGrant, encodeCertificate, type AuthorityKey, type Role } from '../../core/identity/index.ts'
import { hostGrantCheck, hostGrantPolicy } from '../../core/mesh/host-grant-policy.ts'

interface Peer { key: PrivateKey, id: string, grants: Uint8Array[] }

describe('snapshot and pin records from the wrong nodes are dropped and counted', () => {
  let authority: AuthorityKey
  let rogue: AuthorityKey
  let clock: ManualClock
  let view: FleetView
  let owner: Peer, h1: Peer, h2: Peer
  let good: SnapshotRecord

  const peer = async (grantedBy?: AuthorityKey, roles: Role[] = ['host'], cells: string[] = []): Promise<Peer> => {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    const grants = grantedBy == null
      ? []
      : [encodeCertificate(await issueGrant(grantedBy, { subject: id, roles, cells, notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 7 * 86_400_000 }))]
    return { key, id, grants }
  }
  /** The node announces itself (as its heartbeat would), whatever its grant. */
  const join = async (p: Peer): Promise<void> => {
    await view.applyFrame(encodeEnvelope(await signRecord(p.key, 'node', makeNodeRecord(p.id, { sentMs: clock.now(), seq: clock.now(), grants: p.grants }))), { from: p.id })
  }
  const gossip = async (bytes: Uint8Array, from: string): Promise<string> => {
    const [r] = await view.applyFrame(bytes, { from })
    return r.accepted ? 'accepted' : r.reason
  }
  const snapshotOf = async (p: Peer, over: Partial<SnapshotRecord> = {}): Promise<Uint8Array> =>
    encodeEnvelope(await signRecord(p.key, 'snapshot', makeSnapshotRecord(p.id, { sentMs: clock.now(), seq: clock.now(), ...over })))
  const pinOf = async (p: Peer, s: SnapshotRecord, signer = p): Promise<Uint8Array> => {
    const record = makePinRecord(p.id, s, { sentMs: clock.now(), seq: clock.now() })
    if (signer === p) return encodeEnvelope(await signRecord(p.key, 'pin', record))
    // A forger signs the holder's pin body with its own key, under the real domain and kind.
    const body = encodePinBody(record)
    const payload = new Uint8Array([...new TextEncoder().encode('cell/fleet/1 record\0'), KIND_PIN, ...body])
    return encodeEnvelope({ kind: 'pin', record, body, signature: await signer.key.sign(payload) })
  }

  beforeAll(async () => {
    clock = new ManualClock(Date.now())
    authority = await generateAuthority()
    rogue = await generateAuthority()
    const trusted = new Set([authorityIdOf(authority.publicKey), authorityIdOf(rogue.publicKey)])
    const fields: ReleaseFields = { cell: 'ledger', version: '1.0.0', digest: 'a'.repeat(64), authority: authorityIdOf(authority.publicKey), seq: 1 }
    const verify = async (): Promise<ReleaseFields> => fields
    view = new FleetView({ clock, heartbeatMs: 60_000, verifyRelease: verify, verifyDesired: verify, isTrusted: hostGrantPolicy(() => view, hostGrantCheck(clock), trusted), snapshots: { maxSnapshotsPerClaim: 2 } })
    expect((await view.apply({ kind: 'release', signed: new Uint8Array([1]) }, { from: 'x' })).accepted).toBe(true)
    owner = await peer(authority)
    h1 = await peer(authority)
    h2 = await peer(authority, ['host'], ['ledger'])
    for (const p of [owner, h1, h2]) await join(p)
    // The honest baseline: the owner's snapshot, pinned by two granted nodes, is safe.
    const bytes = await snapshotOf(owner)
    expect(await gossip(bytes, owner.id)).toBe('accepted')
    good = view.snapshots('ledger/0')[0]
    expect(await gossip(await pinOf(h1, good), h1.id)).toBe('accepted')
    expect(await gossip(await pinOf(h2, good), h2.id)).toBe('accepted')
    expect(view.newestSafe('ledger/0')).toEqual(good)
  })

  it('a snapshot from a node without a host grant for the cell (none, caller-only, rogue authority, other cell) is dropped', async () => {
    const newer = { epoch: 9, tag: 'snapshot-e9-forged', takenMs: clock.now() }
    const attackers = [await peer(), await peer(authority, ['caller']), await peer(rogue), await peer(authority, ['host'], ['billing'])]
    for (const a of attackers) await join(a)
    const before = view.stats().dropped.untrusted
    for (const a of attackers) {
      // Carrying its (useless) grant in the record does not help either.
      expect(await gossip(await snapshotOf(a, { ...newer, ...(a.grants.length > 0 ? { grants: a.grants } : {}) }), a.id)).toBe('untrusted')
    }
    // A grant-less stranger pasting the owner's grant into its record: the grant's subject is not the stranger.
    const thief = await peer()
    expect(await gossip(await snapshotOf(thief, { ...newer, grants: owner.grants }), thief.id)).toBe('untrusted')
    expect(view.stats().dropped.untrusted).toBe(before + attackers.length + 1)
    expect(view.snapshots('ledger/0')).toEqual([good])
    expect(view.newestSafe('ledger/0')).toEqual(good)
  })

  it('a pin by a stranger, or a caller-only node, does not count', async () => {
    const fresh = await snapshotOf(owner, { tag: 'snapshot-e1-second', takenMs: clock.now() + 1 })
    expect(await gossip(fresh, owner.id)).toBe('accepted')
    const second = view.snapshots('ledger/0')[0]
    expect(second.tag).toBe('snapshot-e1-second')
    expect(await gossip(await pinOf(h1, second), h1.id)).toBe('accepted')
    const attackers = [await peer(), await peer(authority, ['caller']), await peer(rogue)]
    for (const a of attackers) await join(a)
    const before = view.stats().dropped.untrusted
    for (const a of attackers) {
      expect(await gossip(await pinOf(a, second), a.id)).toBe('untrusted')
    }
    expect(view.stats().dropped.untrusted).toBe(before + 3)
    expect(view.snapshotHolders(second)).toEqual([h1.id])
    expect(view.newestSafe('ledger/0')).toEqual(good)
  })

  it('a pin forged for another node is dropped: wrong signer, or sent by someone else', async () => {
    const second = view.snapshots('ledger/0')[0]
    const mallory = await peer(authority)
    await join(mallory)
    const before = view.stats().dropped
    // Mallory signs a pin naming h2 as the holder with her own key, and gossips it as h2 would.
    expect(await gossip(await pinOf(h2, second, mallory), h2.id)).toBe('bad-signature')
    // …or gossips it as herself.
    expect(await gossip(await pinOf(h2, second, mallory), mallory.id)).toBe('wrong-origin')
    // h2's genuine signature (over its pin of `good`) on a body naming the new snapshot.
    const genuine = await signRecord(h2.key, 'pin', makePinRecord(h2.id, good, { sentMs: clock.now(), seq: clock.now() }))
    const body = encodePinBody(makePinRecord(h2.id, second, { sentMs: clock.now(), seq: clock.now() + 1 }))
    expect(await gossip(encodeEnvelope({ ...genuine, record: makePinRecord(h2.id, second), body }), h2.id)).toBe('bad-signature')
    // The owner pinning its own snapshot never counts.
    expect(await gossip(await pinOf(owner, second), owner.id)).toBe('untrusted')
    const after = view.stats().dropped
    expect(after['bad-signature'] - before['bad-signature']).toBe(2)
    expect(after['wrong-origin'] - before['wrong-origin']).toBe(1)
    expect(view.snapshotHolders(second)).toEqual([h1.id])
    expect(view.newestSafe('ledger/0')).toEqual(good)
  })

  it('a replayed snapshot record is dropped: the same one, an evicted one, an expired one', async () => {
    const replay = encodeEnvelope(await signRecord(owner.key, 'snapshot', good))
    expect(await gossip(replay, owner.id)).toBe('duplicate')
    // Two newer snapshots evict `good` (2 kept per claim here); replaying it then is stale, not a comeback.
    clock.advance(1000)
    expect(await gossip(await snapshotOf(owner, { tag: 'snapshot-e1-third', takenMs: clock.now() + 2 }), owner.id)).toBe('accepted')
    expect(view.snapshots('ledger/0').map(s => s.tag)).toEqual(['snapshot-e1-third', 'snapshot-e1-second'])
    expect(await gossip(replay, owner.id)).toBe('stale')
    // Pins of an evicted snapshot have nothing to count for.
    expect(await gossip(await pinOf(h2, good), h2.id)).toBe('unknown-snapshot')
    // A record signed long ago (past the snapshot ttl) is refused on its age, even to a view that never saw it.
    const fresh = new FleetView({ clock, snapshots: { snapshotTtlMs: 3_600_000 } })
    const old = await signRecord(owner.key, 'snapshot', { ...good, sentMs: clock.now() - 2 * 3_600_000 })
    expect(await fresh.apply(old, { from: owner.id })).toMatchObject({ accepted: false, reason: 'expired' })
    expect(view.stats().dropped.stale).toBeGreaterThanOrEqual(1)
  })

  it('a snapshot record with an oversized blob list is malformed, dropped and counted', async () => {
    const before = view.stats().dropped.malformed
    const r = makeSnapshotRecord(owner.id, { sentMs: clock.now() })
    // Hand-encoded (the encoder refuses it): 1025 digests, otherwise a well-formed record.
    const w = new ByteWriter(1 << 20)
    w.string(r.nodeId, 128).string(r.cell, 128).uvarint(0).uvarint(r.epoch).string(r.tag, 128).uvarint(r.takenMs).uvarint(r.sizeBytes)
    w.raw(new Uint8Array(32).fill(0x11)).u8(0).uvarint(SNAPSHOT_LIMITS.blobs + 1)
    for (let i = 0; i <= SNAPSHOT_LIMITS.blobs; i++) w.raw(new Uint8Array(32).fill(i & 0xff))
    w.u8(0).uvarint(r.seq).uvarint(r.sentMs)
    const body = w.finish()
    const env = new ByteWriter(1 << 20).u8(1).u8(KIND_SNAPSHOT).bytes(body, 1 << 20).bytes(new Uint8Array(64), 512).finish()
    await expect(view.applyFrame(env, { from: owner.id })).rejects.toBeInstanceOf(MalformedFleetRecordError)
    expect(view.stats().dropped.malformed).toBe(before + 1)
  })

  it('a granted owner\'s snapshot still counts after its node record expired: the record carries the grant', async () => {
    const late: FleetView = new FleetView({
      clock,
      verifyRelease: async () => ({ cell: 'ledger', version: '1.0.0', digest: 'a'.repeat(64), authority: authorityIdOf(authority.publicKey), seq: 1 }),
      isTrusted: hostGrantPolicy(() => late, hostGrantCheck(clock), new Set([authorityIdOf(authority.publicKey)]))
    })
    await late.apply({ kind: 'release', signed: new Uint8Array([1]) }, { from: 'x' })
    // No node record of the owner here (it died before this node joined).
    const carried = await signRecord(owner.key, 'snapshot', makeSnapshotRecord(owner.id, { sentMs: clock.now(), grants: owner.grants }))
    expect((await late.apply(carried, { from: owner.id })).accepted).toBe(true)
    const bare = await signRecord(owner.key, 'snapshot', makeSnapshotRecord(owner.id, { tag: 'snapshot-e1-bare', sentMs: clock.now() }))
    expect(await late.apply(bare, { from: owner.id })).toMatchObject({ accepted: false, reason: 'untrusted' })
  })
})
