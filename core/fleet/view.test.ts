import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { encodeNodeBody, decodeFrame } from './codec.ts'
import type { SignedReleaseEnvelope } from './codec.ts'
import { MalformedFleetRecordError, RecordOriginMismatchError } from './errors.ts'
import type { ReleaseFields } from './records.ts'
import { signRecord, verifyRecord } from './sign.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from './testing.ts'
import { FleetView, RELEASE_HISTORY } from './view.ts'
import type { FleetChange, FleetViewInit } from './view.ts'

interface Key { key: PrivateKey, id: string }
let a: Key, b: Key, c: Key

beforeAll(async () => {
  const mk = async (): Promise<Key> => {
    const key = await generateKeyPair('Ed25519')
    return { key, id: peerIdFromPrivateKey(key).toString() }
  }
  ;[a, b, c] = [await mk(), await mk(), await mk()]
})

// Stand-in for core/identity: "signed" bytes are `ok:` + JSON of the fields; anything else fails.
const fakeVerify = async (signed: Uint8Array): Promise<ReleaseFields> => {
  const text = new TextDecoder().decode(signed)
  if (!text.startsWith('ok:')) throw new Error('bad release signature')
  return JSON.parse(text.slice(3))
}
function release (cell: string, seq: number, version = `1.0.${seq}`, kind: 'release' | 'desired' = 'release', authority = 'auth-1'): SignedReleaseEnvelope {
  const fields: ReleaseFields = { cell, version, digest: 'sha256:' + String(seq).padStart(64, '0'), authority, seq }
  return { kind, signed: new TextEncoder().encode('ok:' + JSON.stringify(fields)) }
}

function setup (init: Partial<FleetViewInit> = {}): { clock: ManualClock, view: FleetView, changes: FleetChange[] } {
  const clock = new ManualClock()
  const view = new FleetView({ clock, verifyRelease: fakeVerify, verifyDesired: fakeVerify, ...init })
  const changes: FleetChange[] = []
  view.addEventListener('change', (e) => changes.push((e as CustomEvent<FleetChange>).detail))
  return { clock, view, changes }
}

const nodeRec = async (k: Key, clock: ManualClock, seq = 1) =>
  await signRecord(k.key, 'node', makeNodeRecord(k.id, { seq, sentMs: clock.now() }))
const instRec = async (k: Key, clock: ManualClock, seq = 1, over = {}) =>
  await signRecord(k.key, 'instance', makeInstanceRecord(k.id, { seq, sentMs: clock.now(), ...over }))

describe('signRecord / verifyRecord', () => {
  it('signs with the origin key only and detects tampering', async () => {
    const env = await signRecord(a.key, 'node', makeNodeRecord(a.id))
    expect(await verifyRecord(env)).toBe(true)
    await expect(signRecord(b.key, 'node', makeNodeRecord(a.id))).rejects.toBeInstanceOf(RecordOriginMismatchError)
    const sig = env.signature.slice()
    sig[0] ^= 1
    expect(await verifyRecord({ ...env, signature: sig })).toBe(false)
    // B's valid signature over B's record does not vouch for A's record.
    const other = await signRecord(b.key, 'node', makeNodeRecord(b.id))
    expect(await verifyRecord({ ...env, signature: other.signature })).toBe(false)
  })
})

describe('FleetView.apply', () => {
  it('accepts a node record only from its own node, or relayed with a valid origin signature', async () => {
    const { clock, view, changes } = setup()
    const env = await nodeRec(a, clock)
    expect(await view.apply(env, { from: b.id })).toEqual({ accepted: false, kind: 'node', reason: 'wrong-origin' })
    expect(view.nodes()).toEqual([])
    expect(await view.apply(env, { from: a.id })).toEqual({ accepted: true, kind: 'node' })
    expect(view.nodes()).toEqual([env.record])
    expect(changes).toEqual([{ kind: 'node', op: 'upsert', key: a.id, nodeId: a.id }])

    const inst = await instRec(b, clock)
    expect((await view.apply(inst, { from: a.id })).accepted).toBe(false)
    expect((await view.apply(inst, { from: b.id, relayed: true })).accepted).toBe(true)
    expect(view.instances('billing')).toEqual([inst.record])
    expect(view.stats().dropped['wrong-origin']).toBe(2)
  })

  it('drops records with a bad signature, even from the right origin', async () => {
    const { clock, view } = setup()
    const env = await nodeRec(a, clock)
    const forged = { ...env, record: { ...env.record, roles: ['operator'] }, body: encodeNodeBody({ ...env.record, roles: ['operator'] }) }
    expect(await view.apply(forged, { from: a.id })).toMatchObject({ accepted: false, reason: 'bad-signature' })
    const inst = await instRec(a, clock)
    const sig = inst.signature.slice()
    sig[10] ^= 0xff
    expect(await view.apply({ ...inst, signature: sig }, { from: a.id, relayed: true })).toMatchObject({ reason: 'bad-signature' })
    expect(view.stats().dropped['bad-signature']).toBe(2)
    expect(view.stats().nodes + view.stats().instances).toBe(0)
  })

  it('checks the record signature even when the gossip sender is the record\'s node', async () => {
    const { clock, view } = setup()
    const inst = await instRec(a, clock)
    const sig = inst.signature.slice()
    sig[0] ^= 1
    const bad = { ...inst, signature: sig }
    expect(await view.apply(bad, { from: a.id, relayed: true })).toMatchObject({ reason: 'bad-signature' })
    expect(await view.apply(bad, { from: b.id })).toMatchObject({ reason: 'wrong-origin' })
    // An all-zero signature from the record's own node (the attack in issue 7) is refused too.
    expect(await view.apply({ ...inst, signature: new Uint8Array(64) }, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    expect(await view.apply(bad, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    expect(view.instances()).toHaveLength(0)
  })

  it('drops untrusted records and counts them', async () => {
    const { clock, view } = setup({ isTrusted: (s, ctx) => !(s.kind === 'instance' && s.record.nodeId === c.id) && ctx.from !== undefined })
    expect((await view.apply(await instRec(c, clock), { from: c.id })).accepted).toBe(false)
    expect((await view.apply(await instRec(a, clock), { from: a.id })).accepted).toBe(true)
    expect(view.stats().dropped.untrusted).toBe(1)
    expect(view.instances().map(r => r.nodeId)).toEqual([a.id])
    const throwing = setup({ isTrusted: () => { throw new Error('policy bug') } })
    expect(await throwing.view.apply(await nodeRec(a, throwing.clock), { from: a.id })).toMatchObject({ reason: 'untrusted' })
  })

  it('keeps the higher seq and ignores stale and duplicate records', async () => {
    const { clock, view } = setup()
    const v1 = await nodeRec(a, clock, 1)
    clock.advance(10)
    const v2 = await nodeRec(a, clock, 2)
    expect((await view.apply(v2, { from: a.id })).accepted).toBe(true)
    expect(await view.apply(v1, { from: a.id })).toMatchObject({ reason: 'stale' })
    expect(await view.apply(v2, { from: a.id })).toMatchObject({ reason: 'duplicate' })
    expect(view.node(a.id)?.seq).toBe(2)
    const i5 = await instRec(a, clock, 5, { state: 'ready' })
    const i6 = await instRec(a, clock, 6, { state: 'draining' })
    await view.apply(i6, { from: a.id })
    expect(await view.apply(i5, { from: a.id })).toMatchObject({ reason: 'stale' })
    expect(view.instances()[0].state).toBe('draining')
    expect(view.liveInstances('billing')).toEqual([])
  })

  it('refuses records from the future or already expired by their send time', async () => {
    const { clock, view } = setup({ maxClockSkewMs: 1000 })
    const future = await signRecord(a.key, 'node', makeNodeRecord(a.id, { sentMs: clock.now() + 5000 }))
    expect(await view.apply(future, { from: a.id })).toMatchObject({ reason: 'future' })
    const old = await signRecord(a.key, 'node', makeNodeRecord(a.id, { sentMs: clock.now() - 10_000 }))
    expect(await view.apply(old, { from: a.id })).toMatchObject({ reason: 'expired' })
    expect(await view.apply(await nodeRec(a, clock), { from: b.id, relayed: true, ageMs: 3000 })).toMatchObject({ reason: 'expired' })
  })

  it('expires nodes and instances after their ttl with a fake clock', async () => {
    const { clock, view, changes } = setup({ heartbeatMs: 1000, instanceTtlMs: 5000 })
    await view.apply(await nodeRec(a, clock), { from: a.id })
    await view.apply(await instRec(a, clock), { from: a.id })
    clock.advance(2999)
    expect(view.nodes()).toHaveLength(1)
    expect(view.liveInstances('billing')).toHaveLength(1)
    clock.advance(1)
    expect(view.nodes()).toEqual([]) // hidden on read before expire() runs
    expect(view.instances()).toHaveLength(1)
    expect(view.expire()).toBe(1)
    expect(changes.at(-1)).toEqual({ kind: 'node', op: 'expire', key: a.id, nodeId: a.id })
    clock.advance(2000)
    expect(view.liveInstances('billing', clock.now())).toEqual([])
    expect(view.expire()).toBe(1)
    expect(view.stats()).toMatchObject({ nodes: 0, instances: 0, expired: { node: 1, instance: 1 } })
    // A fresh heartbeat brings it back.
    expect((await view.apply(await nodeRec(a, clock, 2), { from: a.id })).accepted).toBe(true)
  })

  it('bounds nodes, instances per node and cells; overflow is dropped and counted', async () => {
    const { clock, view } = setup({ maxNodes: 2, maxInstancesPerNode: 2, maxInstances: 3, maxCells: 2 })
    await view.apply(await nodeRec(a, clock), { from: a.id })
    await view.apply(await nodeRec(b, clock), { from: b.id })
    expect(await view.apply(await nodeRec(c, clock), { from: c.id })).toMatchObject({ reason: 'overflow-nodes' })
    for (const id of ['i-1', 'i-2', 'i-3']) await view.apply(await instRec(a, clock, 1, { instanceId: id }), { from: a.id })
    expect(view.stats().dropped['overflow-node-instances']).toBe(1)
    await view.apply(await instRec(b, clock, 1, { instanceId: 'i-1' }), { from: b.id })
    expect(await view.apply(await instRec(b, clock, 1, { instanceId: 'i-2' }), { from: b.id })).toMatchObject({ reason: 'overflow-instances' })
    await view.apply(release('one', 1), {})
    await view.apply(release('two', 1), {})
    expect(await view.apply(release('three', 1), {})).toMatchObject({ reason: 'overflow-cells' })
    // Expiry frees room: the overflowing record is accepted once old entries age out.
    clock.advance(3000)
    expect((await view.apply(await nodeRec(c, clock), { from: c.id })).accepted).toBe(true)
    expect(view.nodes().map(n => n.nodeId)).toEqual([c.id])
  })
})

describe('releases and desired versions', () => {
  it('keeps the highest seq per cell in front and ignores replays', async () => {
    const { view, changes } = setup()
    expect((await view.apply(release('billing', 3), {})).accepted).toBe(true)
    // Gossiped again, an older release is a replay; from a neighbour's snapshot it goes behind the
    // newest (the history a late joiner falls back on), never in front.
    expect(await view.apply(release('billing', 2), {})).toMatchObject({ reason: 'stale' })
    expect((await view.apply(release('billing', 2), { relayed: true })).accepted).toBe(true)
    expect(await view.apply(release('billing', 2), { relayed: true })).toMatchObject({ reason: 'duplicate' })
    expect(await view.apply(release('billing', 3), {})).toMatchObject({ reason: 'duplicate' })
    expect(view.release('billing')?.version).toBe('1.0.3')
    expect((await view.apply(release('billing', 4), {})).accepted).toBe(true)
    expect(view.release('billing')?.seq).toBe(4)
    expect(view.releases('billing').map(r => r.seq)).toEqual([4, 3, 2])
    expect((await view.apply(release('billing', 1, '0.9.0', 'desired'), {})).accepted).toBe(true)
    expect(await view.apply(release('billing', 0, '0.8.0', 'desired'), {})).toMatchObject({ reason: 'stale' })
    expect(view.desired('billing')?.version).toBe('0.9.0')
    expect(view.cells()).toEqual(['billing'])
    expect(view.stats().dropped.stale).toBe(2)
    expect(changes.filter(ch => ch.kind === 'release')).toHaveLength(3)
  })

  it('keeps the last 8 releases per claim, relays them in snapshots, and lets no old one back in front', async () => {
    const { view } = setup()
    for (let seq = 1; seq <= 12; seq++) expect((await view.apply(release('billing', seq), {})).accepted).toBe(true)
    expect(view.releases('billing').map(r => r.seq)).toEqual([12, 11, 10, 9, 8, 7, 6, 5])
    expect(RELEASE_HISTORY).toBe(8)
    // Older than everything kept, with the history full: stale (bounded; a replay flood changes nothing).
    expect(await view.apply(release('billing', 2), { relayed: true })).toMatchObject({ reason: 'stale' })
    expect(await view.apply(release('billing', 9), { relayed: true })).toMatchObject({ reason: 'duplicate' })
    // Another authority's releases of other cells have histories of their own.
    await view.apply(release('ledger', 1, '1.0.0', 'release', 'auth-2'), {})
    expect(view.releasesOf('auth-2', 'ledger').map(r => r.seq)).toEqual([1])
    // A late joiner's view, from this one's snapshot, holds the same history, newest in front.
    const late = setup()
    for (const frame of view.snapshot()) await late.view.merge(frame, {})
    expect(late.view.releases('billing').map(r => r.seq)).toEqual([12, 11, 10, 9, 8, 7, 6, 5])
    expect(late.view.release('billing')?.seq).toBe(12)
    // Forged history is refused like any release.
    expect(await late.view.apply({ kind: 'release', signed: new TextEncoder().encode('forged') }, {})).toMatchObject({ reason: 'bad-signature' })
    expect(late.view.releases('billing')).toHaveLength(8)
  })

  it('keys records by authority and cell: one authority cannot outrank or lock out another\'s cell', async () => {
    const { clock, view } = setup()
    clock.advance(10_000_000)
    expect((await view.apply(release('billing', 5, '1.0.0', 'release', 'auth-b'), {})).accepted).toBe(true)
    expect(view.release('billing')?.authority).toBe('auth-b')
    expect(view.claimants('billing')).toEqual(['auth-b'])
    // auth-a, also trusted, signs a higher seq for the same name: held apart, and the name is now a conflict.
    expect((await view.apply(release('billing', 9, '6.6.6', 'release', 'auth-a'), {})).accepted).toBe(true)
    expect((await view.apply(release('billing', 9, '6.6.6', 'desired', 'auth-a'), {})).accepted).toBe(true)
    expect(view.claimants('billing')).toEqual(['auth-a', 'auth-b'])
    expect(view.release('billing')).toBeUndefined()
    expect(view.desired('billing')).toBeUndefined()
    expect(view.releaseOf('auth-b', 'billing')?.version).toBe('1.0.0')
    // B's own next release is not measured against A's seq.
    expect((await view.apply(release('billing', 6, '1.1.0', 'release', 'auth-b'), {})).accepted).toBe(true)
    expect(view.releaseOf('auth-b', 'billing')?.version).toBe('1.1.0')
    // A seq far past the signer's plausible clock (Number.MAX_SAFE_INTEGER) is refused as 'future'.
    expect(await view.apply(release('billing', Number.MAX_SAFE_INTEGER, '9.9.9', 'desired', 'auth-b'), {})).toMatchObject({ reason: 'future' })
    expect(view.desiredOf('auth-b', 'billing')).toBeUndefined()
  })

  it('bounds the cells one authority may claim', async () => {
    const { view } = setup({ maxCellsPerAuthority: 2 })
    await view.apply(release('one', 1, '1', 'release', 'flood'), {})
    await view.apply(release('two', 1, '1', 'desired', 'flood'), {})
    expect(await view.apply(release('three', 1, '1', 'release', 'flood'), {})).toMatchObject({ reason: 'overflow-authority-cells' })
    expect((await view.apply(release('one', 2, '2', 'release', 'flood'), {})).accepted).toBe(true)
    expect((await view.apply(release('three', 1, '1', 'release', 'other'), {})).accepted).toBe(true)
  })

  it('refuses a replay below the floor remembered across a restart', async () => {
    const { SequenceGuard } = await import('../identity/sequence-guard.ts')
    const floors = { release: new SequenceGuard(), desired: new SequenceGuard() }
    const first = setup({ sequenceFloors: floors })
    await first.view.apply(release('billing', 3), {})
    await first.view.apply(release('billing', 4), {})
    // A restarted node: an empty view, the floors reloaded from what the host persisted.
    const restored = { release: new SequenceGuard({ initial: floors.release.entries() }), desired: new SequenceGuard({ initial: floors.desired.entries() }) }
    const second = setup({ sequenceFloors: restored })
    expect(await second.view.apply(release('billing', 3), {})).toMatchObject({ reason: 'stale' })
    // The record it last held is accepted again (the fleet re-sends it), so is anything newer.
    expect((await second.view.apply(release('billing', 4), {})).accepted).toBe(true)
    expect((await second.view.apply(release('billing', 1, '0.1.0', 'desired'), {})).accepted).toBe(true)
  })

  it('drops records the verifier refuses or cannot check', async () => {
    const { view } = setup()
    expect(await view.apply({ kind: 'release', signed: new TextEncoder().encode('forged') }, {})).toMatchObject({ reason: 'bad-signature' })
    const bad = { kind: 'release' as const, signed: new TextEncoder().encode('ok:' + JSON.stringify({ cell: 'x y', version: '1', digest: 'd', authority: 'a', seq: 1 })) }
    expect(await view.apply(bad, {})).toMatchObject({ reason: 'malformed' })
    const noVerifier = new FleetView({ clock: new ManualClock() })
    expect(await noVerifier.apply(release('billing', 1), {})).toMatchObject({ reason: 'unverifiable' })
  })
})

describe('snapshot and merge', () => {
  it('carries the full view to another node, chunked into frames, with ages preserved', async () => {
    const src = setup()
    await src.view.apply(await nodeRec(a, src.clock), { from: a.id })
    await src.view.apply(await nodeRec(b, src.clock), { from: b.id })
    for (let i = 0; i < 40; i++) await src.view.apply(await instRec(a, src.clock, 1, { instanceId: `i-${i}`, cell: i % 2 === 0 ? 'billing' : 'ledger' }), { from: a.id })
    await src.view.apply(release('billing', 7), {})
    await src.view.apply(release('billing', 2, '1.0.0', 'desired'), {})
    src.clock.advance(500)

    const frames = src.view.snapshot({ maxFrameBytes: 2048 })
    expect(frames.length).toBeGreaterThan(1)
    const dst = setup()
    dst.clock.advance(src.clock.now() - dst.clock.now())
    let accepted = 0
    for (const f of frames) accepted += (await dst.view.merge(f, { from: a.id })).accepted
    expect(accepted).toBe(2 + 40 + 2)
    expect(dst.view.nodes().map(n => n.nodeId).sort()).toEqual([a.id, b.id].sort())
    expect(dst.view.liveInstances('ledger')).toHaveLength(20)
    expect(dst.view.release('billing')?.seq).toBe(7)
    expect(dst.view.desired('billing')?.seq).toBe(2)
    expect(dst.view.cells()).toEqual(['billing', 'ledger'])
    expect(dst.view.lastSeenMs('node', a.id)).toBe(src.view.lastSeenMs('node', a.id))
    // Merged records expire on the origin's schedule, not 3 s after the merge.
    dst.clock.advance(2500)
    expect(dst.view.nodes()).toEqual([])
    // Merging the same snapshot again changes nothing.
    const again = await dst.view.merge(src.view.snapshot()[0], { from: a.id })
    expect(again.accepted).toBe(0)
  })

  it('drops tampered records inside a snapshot and keeps the rest', async () => {
    const src = setup()
    await src.view.apply(await nodeRec(a, src.clock), { from: a.id })
    await src.view.apply(await nodeRec(b, src.clock), { from: b.id })
    const [frame] = src.view.snapshot()
    const entries = decodeFrame(frame)
    // Flip one byte inside the last signature (the final byte of the frame belongs to it).
    const tampered = frame.slice()
    tampered[tampered.length - 1] ^= 1
    const dst = setup()
    expect(await dst.view.merge(tampered, { from: c.id })).toEqual({ accepted: 1, dropped: 1 })
    expect(dst.view.stats().dropped['bad-signature']).toBe(1)
    expect(entries).toHaveLength(2)
    await expect(dst.view.merge(new Uint8Array([1, 0x10, 5]), { from: c.id })).rejects.toBeInstanceOf(MalformedFleetRecordError)
    expect(dst.view.stats().dropped.malformed).toBe(1)
  })
})
