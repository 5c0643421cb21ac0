// FleetView under 'members' liveness (per-cell dissemination): member records overlay node records,
// down reports with a quorum and refutation, instance liveness by refreshMs, and the attacks on both
// new record kinds (forged, wrong origin, replayed, oversized, untrusted, one reporter, floods).
import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ByteWriter } from './bytes.ts'
import { decodeFrame, encodeEnvelope } from './codec.ts'
import type { SignedDownEnvelope, SignedMemberEnvelope } from './codec.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { LIMITS, MAX_MESSAGE_BYTES } from './records.ts'
import type { MemberRecord } from './records.ts'
import { signRecord } from './sign.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from './testing.ts'
import { FleetView } from './view.ts'
import type { DownReport, FleetChange, FleetViewInit, NeedNode } from './view.ts'

interface Key { key: PrivateKey, id: string }
const keys: Key[] = []
let a: Key, b: Key, c: Key, d: Key, e: Key

beforeAll(async () => {
  for (let i = 0; i < 12; i++) {
    const key = await generateKeyPair('Ed25519')
    keys.push({ key, id: peerIdFromPrivateKey(key).toString() })
  }
  ;[a, b, c, d, e] = keys
})

const HOUR = 3_600_000

function setup (init: Partial<FleetViewInit> = {}): { clock: ManualClock, view: FleetView, changes: FleetChange[], needs: NeedNode[], reports: DownReport[] } {
  const clock = new ManualClock()
  const view = new FleetView({ clock, liveness: 'members', ...init })
  const changes: FleetChange[] = []
  const needs: NeedNode[] = []
  const reports: DownReport[] = []
  view.addEventListener('change', (ev) => changes.push((ev as CustomEvent<FleetChange>).detail))
  view.addEventListener('need-node', (ev) => needs.push((ev as CustomEvent<NeedNode>).detail))
  view.addEventListener('down-report', (ev) => reports.push((ev as CustomEvent<DownReport>).detail))
  return { clock, view, changes, needs, reports }
}

const nodeRec = async (k: Key, clock: ManualClock, seq = 1, roles = ['full', 'host']) =>
  await signRecord(k.key, 'node', makeNodeRecord(k.id, { seq, sentMs: clock.now(), roles }))
const memberRec = async (k: Key, clock: ManualClock, seq: number, over: Partial<MemberRecord> = {}) =>
  await signRecord(k.key, 'member', { nodeId: k.id, seq, sentMs: clock.now(), nodeSeq: 1, slots: 8, freeSlots: 2, cpuPercent: 90, memoryPercent: 70, leaving: false, cells: ['billing'], ...over })
const downRec = async (reporter: Key, subject: Key, clock: ManualClock, subjectSeq = 1, seq = 1) =>
  await signRecord(reporter.key, 'down', { nodeId: reporter.id, subject: subject.id, subjectSeq, seq, sentMs: clock.now() })
const instRec = async (k: Key, clock: ManualClock, over = {}) =>
  await signRecord(k.key, 'instance', makeInstanceRecord(k.id, { sentMs: clock.now(), ...over }))

async function join (view: FleetView, clock: ManualClock, ...ks: Key[]): Promise<void> {
  for (const k of ks) expect(await view.apply(await nodeRec(k, clock), { from: k.id })).toEqual({ accepted: true, kind: 'node' })
}

describe('FleetView heartbeat liveness (default)', () => {
  it('drops member and down records as wrong-liveness and keeps its ttls', async () => {
    const clock = new ManualClock()
    const view = new FleetView({ clock })
    expect(view.liveness).toBe('heartbeat')
    await join(view, clock, a, b)
    expect(await view.apply(await memberRec(a, clock, 2), { from: a.id })).toEqual({ accepted: false, kind: 'member', reason: 'wrong-liveness' })
    expect(await view.apply(await downRec(a, b, clock), { from: a.id })).toEqual({ accepted: false, kind: 'down', reason: 'wrong-liveness' })
    expect(view.stats().members).toBeUndefined()
    clock.advance(3000)
    expect(view.nodes()).toEqual([])
  })
})

describe('FleetView members liveness: member records', () => {
  it('accepts a member record only for a held node, asks for the node record, and overlays slots and load', async () => {
    const { clock, view, changes, needs } = setup()
    const m = await memberRec(a, clock, 2)
    expect(await view.apply(m, { from: a.id })).toEqual({ accepted: false, kind: 'member', reason: 'unknown-node' })
    expect(needs).toEqual([{ nodeId: a.id, from: a.id }])
    // Relayed by b: the event names b as the peer to pull from (rate limit per node: a again is held back).
    expect(await view.apply(m, { from: b.id, relayed: true })).toMatchObject({ reason: 'unknown-node' })
    expect(needs).toHaveLength(1)

    const n = await nodeRec(a, clock)
    await join(view, clock, a)
    expect(view.node(a.id)).toEqual(n.record)
    expect(await view.apply(m, { from: a.id })).toEqual({ accepted: true, kind: 'member' })
    const overlaid = { ...n.record, capacity: { ...n.record.capacity, slots: 8, freeSlots: 2 }, load: { cpuPercent: 90, memoryPercent: 70 } }
    expect(view.node(a.id)).toEqual(overlaid)
    expect(view.nodes()).toEqual([overlaid])
    expect(view.member(a.id)).toEqual(m.record)
    expect(view.hostsOf('billing')).toEqual([a.id])
    expect(view.hostsOf('ledger')).toEqual([])
    expect(changes.at(-1)).toEqual({ kind: 'member', op: 'upsert', key: a.id, nodeId: a.id })
    expect(view.stats().accepted.member).toBe(1)
    expect(view.stats().members).toMatchObject({ members: 1, down: 0 })
    // A node past its life hosts nothing any more.
    clock.advance(3 * HOUR)
    expect(view.hostsOf('billing')).toEqual([])
  })

  it('orders node and member records by one per-node sequence', async () => {
    const { clock, view, needs } = setup()
    await join(view, clock, a)
    expect(await view.apply(await memberRec(a, clock, 1), { from: a.id })).toMatchObject({ reason: 'stale' })
    const m3 = await memberRec(a, clock, 3)
    expect((await view.apply(m3, { from: a.id })).accepted).toBe(true)
    expect(await view.apply(m3, { from: a.id })).toMatchObject({ reason: 'duplicate' })
    expect(await view.apply(await memberRec(a, clock, 2), { from: a.id })).toMatchObject({ reason: 'stale' })
    // A member record naming a newer node record than the one held asks for it.
    expect((await view.apply(await memberRec(a, clock, 5, { nodeSeq: 4 }), { from: a.id })).accepted).toBe(true)
    expect(needs).toEqual([{ nodeId: a.id, from: a.id }])
    // That node record (seq 4, older than the member record) is what the pull brings: accepted, overlay kept.
    const n4 = await nodeRec(a, clock, 4)
    expect((await view.apply(n4, { from: a.id })).accepted).toBe(true)
    expect(view.node(a.id)?.capacity.freeSlots).toBe(2)
    expect(view.node(a.id)?.addrs).toEqual(n4.record.addrs)
    // A newer node record than the member record wins outright.
    const n6 = await nodeRec(a, clock, 6)
    expect((await view.apply(n6, { from: a.id })).accepted).toBe(true)
    expect(view.node(a.id)).toEqual(n6.record)
    expect(await view.apply(await memberRec(a, clock, 6), { from: a.id })).toMatchObject({ reason: 'stale' })
  })

  it('keeps a node live for memberTtlMs after its newest node or member record', async () => {
    const { clock, view, changes } = setup({ memberTtlMs: 10_000 })
    expect(new FleetView({ clock, liveness: 'members' }).memberTtlMs).toBe(3 * HOUR)
    await join(view, clock, a)
    clock.advance(8000)
    expect((await view.apply(await memberRec(a, clock, 2), { from: a.id })).accepted).toBe(true)
    clock.advance(8000)
    expect(view.nodes().map(n => n.nodeId)).toEqual([a.id])
    expect(view.lastSeenMs('node', a.id)).toBe(clock.now() - 8000)
    clock.advance(2000)
    expect(view.nodes()).toEqual([])
    expect(view.node(a.id)).toBeUndefined()
    // A member record brings it back (its node record is still held until expire runs).
    expect((await view.apply(await memberRec(a, clock, 3), { from: a.id })).accepted).toBe(true)
    expect(changes.slice(-2)).toEqual([{ kind: 'member', op: 'upsert', key: a.id, nodeId: a.id }, { kind: 'node', op: 'upsert', key: a.id, nodeId: a.id }])
    clock.advance(10_000)
    expect(view.expire()).toBe(1)
    expect(changes.at(-1)).toEqual({ kind: 'node', op: 'expire', key: a.id, nodeId: a.id })
    expect(view.stats().members).toMatchObject({ members: 0 })
    expect(await view.apply(await memberRec(a, clock, 4), { from: a.id })).toMatchObject({ reason: 'unknown-node' })
  })

  it('counts an instance live for 3 × its refreshMs while its node lives, and instanceTtlMs without one', async () => {
    const { clock, view } = setup({ memberTtlMs: 60_000, instanceTtlMs: 3000 })
    await join(view, clock, a)
    expect((await view.apply(await instRec(a, clock, { instanceId: 'r', refreshMs: 5000 }), { from: a.id })).accepted).toBe(true)
    expect((await view.apply(await instRec(a, clock, { instanceId: 'h' }), { from: a.id })).accepted).toBe(true)
    clock.advance(3000)
    expect(view.liveInstances('billing').map(i => i.instanceId)).toEqual(['r'])
    clock.advance(11_999)
    expect(view.liveInstances('billing').map(i => i.instanceId)).toEqual(['r'])
    clock.advance(1)
    expect(view.liveInstances('billing')).toEqual([])
    // A record older than 3 × refreshMs (+ skew) is refused on arrival.
    const old = await instRec(a, clock, { instanceId: 'o', refreshMs: 1000 })
    clock.advance(3000 + 30_000 + 1)
    expect(await view.apply(old, { from: a.id })).toMatchObject({ reason: 'expired' })
    // The node's liveness bounds its replicas: no record of it for memberTtlMs, no replicas.
    expect((await view.apply(await memberRec(a, clock, 2), { from: a.id })).accepted).toBe(true)
    expect((await view.apply(await instRec(a, clock, { instanceId: 'long', refreshMs: LIMITS.refreshMsMax }), { from: a.id })).accepted).toBe(true)
    clock.advance(30_000)
    expect(view.liveInstances('billing').map(i => i.instanceId)).toEqual(['long'])
    clock.advance(30_000)
    expect(view.liveInstances('billing')).toEqual([])
  })
})

describe('FleetView members liveness: instances of unknown and down nodes', () => {
  it('asks for an unknown host\'s node record and holds a down host\'s replicas back without blaming the sender', async () => {
    const { clock, view, needs } = setup()
    expect(await view.apply(await instRec(c, clock, { refreshMs: 5000 }), { from: c.id })).toEqual({ accepted: false, kind: 'instance', reason: 'unknown-node' })
    expect(needs).toEqual([{ nodeId: c.id, from: c.id }])
    await join(view, clock, a, c)
    await view.apply(await downRec(a, c, clock), { from: a.id })
    expect(view.isDown(c.id)).toBe(true)
    expect(await view.apply(await instRec(c, clock, { refreshMs: 5000, seq: 2 }), { from: c.id })).toEqual({ accepted: false, kind: 'instance', reason: 'node-down' })
    expect((await view.apply(await memberRec(c, clock, 2), { from: c.id })).accepted).toBe(true)
    // Its member record lists billing; a down node hosts nothing until it refutes (the record above did).
    expect(view.hostsOf('billing')).toEqual([c.id])
    expect((await view.apply(await instRec(c, clock, { refreshMs: 5000, seq: 2 }), { from: c.id })).accepted).toBe(true)
    expect(view.liveInstances('billing')).toHaveLength(1)
  })
})

describe('FleetView members liveness: down reports', () => {
  it('needs a quorum of distinct full reporters, then hides the node and its replicas until it refutes', async () => {
    const { clock, view, changes, reports } = setup()
    await join(view, clock, a, b, c, d)
    expect((await view.apply(await instRec(d, clock, { refreshMs: 5000 }), { from: d.id })).accepted).toBe(true)
    // One reporter with 3 other live full nodes: not enough.
    expect(await view.apply(await downRec(a, d, clock), { from: a.id })).toEqual({ accepted: true, kind: 'down' })
    expect(reports).toEqual([{ subject: d.id, reporter: a.id, subjectSeq: 1, verdict: false }])
    expect(view.node(d.id)).toBeDefined()
    expect(view.downReportsAbout(d.id)).toEqual({ subject: d.id, reporters: [a.id], subjectSeq: 1, quorum: 2, down: false })
    // The same reporter again (a newer report) still counts once.
    expect((await view.apply(await downRec(a, d, clock, 1, 2), { from: a.id })).accepted).toBe(true)
    expect(view.isDown(d.id)).toBe(false)
    changes.length = 0
    expect((await view.apply(await downRec(b, d, clock), { from: b.id })).accepted).toBe(true)
    expect(reports.at(-1)).toEqual({ subject: d.id, reporter: b.id, subjectSeq: 1, verdict: true })
    expect(view.isDown(d.id)).toBe(true)
    expect(view.node(d.id)).toBeUndefined()
    expect(view.nodes().map(n => n.nodeId).sort()).toEqual([a.id, b.id, c.id].sort())
    expect(view.liveInstances('billing')).toEqual([])
    expect(changes).toEqual([
      { kind: 'down', op: 'upsert', key: d.id, nodeId: d.id },
      { kind: 'node', op: 'expire', key: d.id, nodeId: d.id },
      { kind: 'instance', op: 'expire', key: `${d.id}/i-1`, cell: 'billing', nodeId: d.id }
    ])
    expect(view.stats().members).toMatchObject({ reported: 1, down: 1, verdicts: 1 })

    // Refutation: a member record of a higher seq clears the reports.
    changes.length = 0
    expect((await view.apply(await memberRec(d, clock, 2), { from: d.id })).accepted).toBe(true)
    expect(view.isDown(d.id)).toBe(false)
    expect(view.node(d.id)).toBeDefined()
    expect(view.liveInstances('billing')).toHaveLength(1)
    expect(view.downReportsAbout(d.id)).toEqual({ subject: d.id, reporters: [], subjectSeq: 2, quorum: 2, down: false })
    expect(changes).toEqual([
      { kind: 'instance', op: 'upsert', key: `${d.id}/i-1`, cell: 'billing', nodeId: d.id },
      { kind: 'member', op: 'upsert', key: d.id, nodeId: d.id },
      { kind: 'node', op: 'upsert', key: d.id, nodeId: d.id }
    ])
    expect(view.stats().members).toMatchObject({ reported: 0, down: 0, verdicts: 1, refuted: 1 })
    // The old reports, replayed, are at an older subject seq: they no longer count.
    expect(await view.apply(await downRec(b, d, clock), { from: b.id })).toMatchObject({ reason: 'stale' })
    expect(await view.apply(await downRec(c, d, clock, 1), { from: c.id })).toMatchObject({ reason: 'stale' })
    // A node record of a higher seq refutes too.
    await view.apply(await downRec(a, d, clock, 2, 3), { from: a.id })
    await view.apply(await downRec(b, d, clock, 2, 2), { from: b.id })
    expect(view.isDown(d.id)).toBe(true)
    expect((await view.apply(await nodeRec(d, clock, 3), { from: d.id })).accepted).toBe(true)
    expect(view.isDown(d.id)).toBe(false)
  })

  it('one reporter is a quorum only when it is the only other live full node', async () => {
    const { clock, view } = setup()
    await join(view, clock, a, b)
    expect(view.downReportsAbout(b.id)?.quorum).toBe(1)
    expect((await view.apply(await downRec(a, b, clock), { from: a.id })).accepted).toBe(true)
    expect(view.isDown(b.id)).toBe(true)
    // downQuorum 3 with 4 other live full nodes needs 3 reporters.
    const big = setup({ downQuorum: 3 })
    await join(big.view, big.clock, a, b, c, d, e)
    for (const r of [a, b]) expect((await big.view.apply(await downRec(r, e, big.clock), { from: r.id })).accepted).toBe(true)
    expect(big.view.isDown(e.id)).toBe(false)
    expect((await big.view.apply(await downRec(c, e, big.clock), { from: c.id })).accepted).toBe(true)
    expect(big.view.isDown(e.id)).toBe(true)
  })

  it('a verdict lowers the quorum of others reported by the remaining nodes', async () => {
    const { clock, view } = setup()
    await join(view, clock, a, b, c)
    // a reports b and c; each has 2 other live full nodes, so one report is not enough.
    await view.apply(await downRec(a, b, clock), { from: a.id })
    await view.apply(await downRec(a, c, clock), { from: a.id })
    expect(view.isDown(b.id) || view.isDown(c.id)).toBe(false)
    // c also reports b: b is down, and then a alone is the only other live full node of c.
    await view.apply(await downRec(c, b, clock), { from: c.id })
    expect(view.isDown(b.id)).toBe(true)
    expect(view.isDown(c.id)).toBe(true)
  })
})

describe('attacks on member records', () => {
  it('forged signature, another key, wrong origin, replay and oversized are refused', async () => {
    const { clock, view, needs } = setup()
    await join(view, clock, a, b)
    const good = await memberRec(a, clock, 2)
    const sig = Uint8Array.from(good.signature)
    sig[0] ^= 1
    expect(await view.apply({ ...good, signature: sig }, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    // b's valid signature over its own member record does not vouch for a's.
    const other = await memberRec(b, clock, 2)
    expect(await view.apply({ ...good, signature: other.signature }, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    // b gossiping a's record as its own message is refused (only relayed records travel by signature).
    expect(await view.apply(good, { from: b.id })).toMatchObject({ reason: 'wrong-origin' })
    // A forged member record of an unknown node does not make the view ask for it.
    expect(await view.apply({ ...(await memberRec(c, clock, 2)), signature: sig }, { from: c.id })).toMatchObject({ reason: 'bad-signature' })
    expect(needs).toEqual([])
    expect((await view.apply(good, { from: a.id })).accepted).toBe(true)
    expect(await view.apply(good, { from: a.id })).toMatchObject({ reason: 'duplicate' })
    // Oversized: a member envelope whose body passes the bound is malformed before anything else.
    const w = new ByteWriter(MAX_MESSAGE_BYTES)
    w.u8(1).u8(8).bytes(new Uint8Array(12 * 1024).fill(0x41), MAX_MESSAGE_BYTES).bytes(good.signature, 512)
    await expect(view.applyFrame(w.finish(), { from: a.id })).rejects.toBeInstanceOf(MalformedFleetRecordError)
    expect(view.stats().dropped.malformed).toBe(1)
    // Future-dated and expired records.
    expect(await view.apply(await signRecord(a.key, 'member', { ...good.record, seq: 9, sentMs: clock.now() + 31_000 }), { from: a.id })).toMatchObject({ reason: 'future' })
    expect(await view.apply(await signRecord(a.key, 'member', { ...good.record, seq: 9, sentMs: clock.now() - 3 * HOUR - 31_000 }), { from: a.id })).toMatchObject({ reason: 'expired' })
    expect(view.member(a.id)).toEqual(good.record)
  })

  it('counts only for a node the trust policy accepts', async () => {
    let granted = new Set<string>()
    const { clock, view } = setup({ isTrusted: (s) => s.kind !== 'node' || granted.has(s.record.nodeId) })
    // No grant: its node record is refused, so its member records have no node to attach to.
    expect(await view.apply(await nodeRec(a, clock), { from: a.id })).toMatchObject({ reason: 'untrusted' })
    expect(await view.apply(await memberRec(a, clock, 2), { from: a.id })).toMatchObject({ reason: 'unknown-node' })
    granted = new Set([a.id])
    await join(view, clock, a)
    // The grant gone (expired, policy changed): its member records are refused.
    granted = new Set()
    expect(await view.apply(await memberRec(a, clock, 2), { from: a.id })).toMatchObject({ reason: 'untrusted' })
    expect(view.stats().dropped.untrusted).toBe(2)
  })

  it('a flood of member records of unknown nodes asks for a bounded number of node records', async () => {
    const { clock, view, needs } = setup({ maxNeedNodePerSecond: 3, needNodeIntervalMs: 5000 })
    for (const k of keys) expect(await view.apply(await memberRec(k, clock, 2), { from: k.id })).toMatchObject({ reason: 'unknown-node' })
    expect(needs).toHaveLength(3)
    for (let i = 0; i < 20; i++) await view.apply(await memberRec(a, clock, 3 + i), { from: a.id })
    expect(needs).toHaveLength(3)
    clock.advance(1000)
    for (const k of keys) await view.apply(await memberRec(k, clock, 2), { from: k.id })
    expect(needs).toHaveLength(6)
    // The nodes asked for a second ago are not asked for again within the interval.
    expect(new Set(needs.map(n => n.nodeId)).size).toBe(6)
    expect(view.stats().members?.needNodeSuppressed).toBeGreaterThan(30)
  })
})

describe('attacks on down reports', () => {
  it('forged, another key, wrong origin, replayed, future and oversized reports are refused', async () => {
    const { clock, view } = setup()
    await join(view, clock, a, b, c)
    const good = await downRec(a, c, clock)
    const sig = Uint8Array.from(good.signature)
    sig[3] ^= 0x10
    expect(await view.apply({ ...good, signature: sig }, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    // The subject cannot be framed by a report carrying another reporter's signature.
    const byB = await downRec(b, c, clock)
    expect(await view.apply({ ...good, signature: byB.signature }, { from: a.id })).toMatchObject({ reason: 'bad-signature' })
    expect(await view.apply(good, { from: b.id })).toMatchObject({ reason: 'wrong-origin' })
    expect((await view.apply(good, { from: a.id })).accepted).toBe(true)
    expect(await view.apply(good, { from: a.id })).toMatchObject({ reason: 'duplicate' })
    // A report at a seq of the subject this view never saw could never be refuted here: refused.
    expect(await view.apply(await downRec(b, c, clock, 7), { from: b.id })).toMatchObject({ reason: 'future' })
    const w = new ByteWriter(MAX_MESSAGE_BYTES)
    w.u8(1).u8(9).bytes(new Uint8Array(600), MAX_MESSAGE_BYTES).bytes(good.signature, 512)
    await expect(view.applyFrame(w.finish(), { from: a.id })).rejects.toBeInstanceOf(MalformedFleetRecordError)
    expect(view.isDown(c.id)).toBe(false)
  })

  it('refuses reporters that are not trusted full nodes, and subjects the view does not know', async () => {
    let granted = new Set<string>()
    const { clock, view, needs } = setup({ isTrusted: (s) => s.kind !== 'node' || granted.has(s.record.nodeId) })
    granted = new Set([a.id, b.id, c.id])
    await join(view, clock, a, c)
    expect((await view.apply(await nodeRec(b, clock, 1, ['host']), { from: b.id })).accepted).toBe(true)
    // Not a full node (a browser tab, an edge worker): its report does not count.
    expect(await view.apply(await downRec(b, c, clock), { from: b.id })).toMatchObject({ reason: 'untrusted' })
    // A full node whose grant is gone.
    granted = new Set([b.id, c.id])
    expect(await view.apply(await downRec(a, c, clock), { from: a.id })).toMatchObject({ reason: 'untrusted' })
    granted = new Set([a.id, b.id, c.id, d.id])
    // A subject the view does not know: dropped, and no pull of it.
    expect(await view.apply(await downRec(a, d, clock), { from: a.id })).toMatchObject({ reason: 'unknown-node' })
    expect(needs).toEqual([])
    // A reporter the view does not know: dropped; its node record is asked for.
    expect(await view.apply(await downRec(e, c, clock), { from: e.id })).toMatchObject({ reason: 'unknown-node' })
    expect(needs).toEqual([{ nodeId: e.id, from: e.id }])
    // A down reporter's reports do not count either.
    await join(view, clock, d)
    await view.apply(await downRec(c, a, clock), { from: c.id })
    await view.apply(await downRec(d, a, clock), { from: d.id })
    expect(view.isDown(a.id)).toBe(true)
    expect(await view.apply(await downRec(a, c, clock, 1, 2), { from: a.id })).toMatchObject({ reason: 'node-down' })
    expect(view.isDown(c.id)).toBe(false)
  })

  it('a single reporter cannot take down a node in a fleet of 3 or more live full nodes, however often it reports', async () => {
    const { clock, view } = setup()
    await join(view, clock, a, b, c, d, e)
    for (let seq = 1; seq <= 50; seq++) {
      clock.advance(10)
      for (const subject of [b, c, d, e]) expect((await view.apply(await downRec(a, subject, clock, 1, seq), { from: a.id })).accepted).toBe(true)
    }
    expect(view.nodes()).toHaveLength(5)
    // Bounded: one report per (subject, reporter), whatever it sent.
    for (const subject of [b, c, d, e]) expect(view.downReportsAbout(subject.id)?.reporters).toEqual([a.id])
    expect(view.stats().members).toMatchObject({ reported: 4, down: 0 })
    const frames = view.snapshot().flatMap(f => decodeFrame(f)).filter(x => x.envelope.kind === 'down')
    expect(frames).toHaveLength(4)
  })

  it('keeps at most LIMITS.downReporters reporters per subject', async () => {
    const { clock, view } = setup({ downQuorum: 100 })
    await join(view, clock, ...keys)
    const subject = keys[keys.length - 1]
    const reporters = keys.slice(0, LIMITS.downReporters + 2)
    const results = []
    for (const r of reporters) results.push(await view.apply(await downRec(r, subject, clock), { from: r.id }))
    expect(results.filter(r => r.accepted)).toHaveLength(LIMITS.downReporters)
    expect(results.slice(LIMITS.downReporters)).toEqual([{ accepted: false, kind: 'down', reason: 'overflow-down' }, { accepted: false, kind: 'down', reason: 'overflow-down' }])
    expect(view.downReportsAbout(subject.id)?.reporters).toHaveLength(LIMITS.downReporters)
  })
})

describe('snapshots and digests under members liveness', () => {
  it('a pull brings member records, down verdicts and the followed cells only', async () => {
    const { clock, view } = setup()
    await join(view, clock, a, b, c)
    await view.apply(await memberRec(a, clock, 2), { from: a.id })
    await view.apply(await instRec(a, clock, { instanceId: 'x', cell: 'billing', refreshMs: 5000 }), { from: a.id })
    await view.apply(await instRec(b, clock, { instanceId: 'y', cell: 'search', refreshMs: 5000 }), { from: b.id })
    await view.apply(await downRec(a, c, clock), { from: a.id })
    await view.apply(await downRec(b, c, clock), { from: b.id })
    expect(view.isDown(c.id)).toBe(true)
    clock.advance(500)

    const fresh = setup()
    fresh.clock.advance(clock.now() - fresh.clock.now())
    let accepted = 0
    for (const frame of view.snapshot()) accepted += (await fresh.view.merge(frame, { from: b.id })).accepted
    expect(accepted).toBe(3 + 1 + 2 + 2)
    expect(fresh.view.isDown(c.id)).toBe(true)
    expect(fresh.view.node(a.id)).toEqual(view.node(a.id))
    expect(fresh.view.digest()).toBe(view.digest())
    expect(fresh.view.instances().map(i => i.instanceId).sort()).toEqual(['x', 'y'])

    const kinds = view.snapshot({ cells: (cell) => cell === 'search' }).flatMap(f => decodeFrame(f)).map(x => x.envelope)
    expect(kinds.map(k => k.kind)).toEqual(['node', 'node', 'node', 'member', 'down', 'down', 'instance'])
    const inst = kinds.find(k => k.kind === 'instance')
    expect(inst?.kind === 'instance' && inst.record.cell).toBe('search')
    const member = kinds.find((k): k is SignedMemberEnvelope => k.kind === 'member')
    expect(encodeEnvelope(member as SignedMemberEnvelope).length).toBeLessThan(400)
    const down = kinds.find((k): k is SignedDownEnvelope => k.kind === 'down')
    expect(down?.record.subject).toBe(c.id)
  })
})
