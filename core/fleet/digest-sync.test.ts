// Per-cell anti-entropy by range digests: FleetView.rangeDigest / rangeRecords (pure), the digest
// request's codec and its bounds (attacks), and digest pulls over real libp2p streams: views that
// differ by one node exchange only that node's bucket, identical views nothing but the request.
import { describe, it, expect, afterEach, beforeAll } from 'vitest'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ByteWriter } from './bytes.ts'
import { decodeFrame } from './codec.ts'
import type { FleetEnvelope } from './codec.ts'
import { encodeLengthPrefixed } from './framing.ts'
import { FLEET_SYNC_PROTOCOL } from './records.ts'
import { signRecord } from './sign.ts'
import {
  DIGEST_LIMITS, FleetSyncFilterError, MAX_DIGEST_REQUEST_BYTES, PER_CELL_ANTI_ENTROPY_MS, answerDigests, digestBuckets, digestScopes, encodeDigestRequest, fleetSync, parseSyncRequest
} from './sync.ts'
import type { DigestScope, FleetSync } from './sync.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from './testing.ts'
import { FleetView, checkBucketCount, diffRangeDigests, rangeBucket } from './view.ts'
import { generateAuthority, encodeDesiredVersion, encodeRelease, signDesiredVersion, signRelease, verifySignedRecord, type AuthorityKey } from '../identity/index.ts'

interface Key { key: PrivateKey, id: string }
const keys: Key[] = []
let authority: AuthorityKey
beforeAll(async () => {
  authority = await generateAuthority()
  for (let i = 0; i < 8; i++) {
    const key = await generateKeyPair('Ed25519')
    keys.push({ key, id: peerIdFromPrivateKey(key).toString() })
  }
})

const nodeRec = async (k: Key, clock: ManualClock, seq = 1): Promise<FleetEnvelope> =>
  await signRecord(k.key, 'node', makeNodeRecord(k.id, { seq, sentMs: clock.now(), roles: ['full', 'host'] }))
const memberRec = async (k: Key, clock: ManualClock, seq: number, cells = ['billing']): Promise<FleetEnvelope> =>
  await signRecord(k.key, 'member', { nodeId: k.id, seq, sentMs: clock.now(), nodeSeq: 1, slots: 8, freeSlots: 2, cpuPercent: 20, memoryPercent: 30, leaving: false, cells })
const downRec = async (reporter: Key, subject: Key, clock: ManualClock, subjectSeq: number): Promise<FleetEnvelope> =>
  await signRecord(reporter.key, 'down', { nodeId: reporter.id, subject: subject.id, subjectSeq, seq: 1, sentMs: clock.now() })
const instRec = async (k: Key, clock: ManualClock, instanceId: string, seq = 1): Promise<FleetEnvelope> =>
  await signRecord(k.key, 'instance', makeInstanceRecord(k.id, { cell: 'billing', instanceId, seq, sentMs: clock.now(), refreshMs: 60_000 }))

const releaseRec = async (seq: number, cell = 'billing', kind: 'release' | 'desired' = 'release'): Promise<FleetEnvelope> => {
  const input = { cell, version: `1.0.${seq}`, digest: 'ab'.repeat(32), seq, createdMs: seq }
  return kind === 'release'
    ? { kind, signed: encodeRelease(await signRelease(input, authority)) }
    : { kind, signed: encodeDesiredVersion(await signDesiredVersion({ ...input, reason: 'test' }, authority)) }
}

async function apply (view: FleetView, bytes: FleetEnvelope, from: string): Promise<void> {
  const r = await view.apply(bytes, { from })
  expect(r, JSON.stringify(r)).toMatchObject({ accepted: true })
}

/** A 'members' view holding keys[0..n) with a node record, a member record (seq 2) and a billing instance each. */
async function fleetView (clock: ManualClock, n: number, order: number[] = Array.from({ length: n }, (_, i) => i)): Promise<FleetView> {
  const trusted = new Set([authority.id])
  const view = new FleetView({
    clock,
    liveness: 'members',
    verifyRelease: async (signed, o) => await verifySignedRecord(signed, { ...o, kind: 'release', trusted }),
    verifyDesired: async (signed, o) => await verifySignedRecord(signed, { ...o, kind: 'desired', trusted })
  })
  for (const i of order) {
    await apply(view, await nodeRec(keys[i], clock), keys[i].id)
    await apply(view, await memberRec(keys[i], clock, 2), keys[i].id)
    await apply(view, await instRec(keys[i], clock, `b${i}`), keys[i].id)
  }
  return view
}

const kindsOf = (frames: Uint8Array[]): string[] => frames.flatMap(f => decodeFrame(f)).map(e => {
  const env = e.envelope
  const who = (id: string): number => keys.findIndex(k => k.id === id)
  if (env.kind === 'down') return `down:${who(env.record.nodeId)}->${who(env.record.subject)}`
  return `${env.kind}:${'record' in env && 'nodeId' in env.record ? who(env.record.nodeId) : '?'}`
}).sort()

describe('range digests (FleetView, pure)', () => {
  it('are independent of the order records arrived in, and a changed node changes exactly its bucket', async () => {
    const clock = new ManualClock()
    const a = await fleetView(clock, 6)
    const b = await fleetView(clock, 6, [5, 3, 1, 0, 2, 4])
    for (const buckets of [1, 16, 1024]) {
      expect(a.rangeDigest({ kind: 'members' }, buckets)).toEqual(b.rangeDigest({ kind: 'members' }, buckets))
      expect(a.rangeDigest({ kind: 'cell', cell: 'billing' }, buckets)).toEqual(b.rangeDigest({ kind: 'cell', cell: 'billing' }, buckets))
    }
    expect(a.rangeDigest({ kind: 'members' }, 64)).toHaveLength(64 * 8)
    // An empty scope digests to zeros.
    expect(a.rangeDigest({ kind: 'cell', cell: 'ledger' }, 4)).toEqual(new Uint8Array(32))

    // A newer member record of node 3 in b only: exactly node 3's bucket differs.
    await apply(b, await memberRec(keys[3], clock, 3), keys[3].id)
    expect(diffRangeDigests(a.rangeDigest({ kind: 'members' }, 64), b.rangeDigest({ kind: 'members' }, 64))).toEqual([rangeBucket(keys[3].id, 64)])
    // The instances did not change.
    expect(diffRangeDigests(a.rangeDigest({ kind: 'cell', cell: 'billing' }, 64), b.rangeDigest({ kind: 'cell', cell: 'billing' }, 64))).toEqual([])
    // A refreshed instance (higher seq) changes its cell's digest in its bucket.
    await apply(b, await instRec(keys[2], clock, 'b2', 2), keys[2].id)
    expect(diffRangeDigests(a.rangeDigest({ kind: 'cell', cell: 'billing' }, 64), b.rangeDigest({ kind: 'cell', cell: 'billing' }, 64))).toEqual([rangeBucket(`${keys[2].id}/b2`, 64)])
  })

  it('a down verdict changes the subject\'s bucket; rangeRecords gives its node, member and down records', async () => {
    const clock = new ManualClock()
    const a = await fleetView(clock, 5)
    const b = await fleetView(clock, 5)
    await apply(b, await downRec(keys[1], keys[0], clock, 2), keys[1].id)
    // One report of a quorum of 2: no verdict, same digests.
    expect(diffRangeDigests(a.rangeDigest({ kind: 'members' }, 1024), b.rangeDigest({ kind: 'members' }, 1024))).toEqual([])
    await apply(b, await downRec(keys[2], keys[0], clock, 2), keys[2].id)
    expect(b.isDown(keys[0].id)).toBe(true)
    const bucket = rangeBucket(keys[0].id, 1024)
    expect(diffRangeDigests(a.rangeDigest({ kind: 'members' }, 1024), b.rangeDigest({ kind: 'members' }, 1024))).toEqual([bucket])
    const records = b.rangeRecords({ kind: 'members' }, 1024, new Set([bucket]))
    expect(records.every(r => r.bucket === bucket)).toBe(true)
    const frames = answerDigests(b, [{ scope: { kind: 'members' }, buckets: 1024, digest: a.rangeDigest({ kind: 'members' }, 1024) }], { maxFrameBytes: 64 * 1024, maxBytes: 1 << 20 })
    // Other nodes may share the bucket only by chance: compare with rangeBucket.
    const sharing = keys.slice(1, 5).map((k, i) => ({ k, i: i + 1 })).filter(({ k }) => rangeBucket(k.id, 1024) === bucket).flatMap(({ i }) => [`member:${i}`, `node:${i}`])
    expect(kindsOf(frames)).toEqual(['down:1->0', 'down:2->0', 'member:0', 'node:0', ...sharing].sort())
    // Merged into a, the verdict follows.
    for (const f of frames) await a.merge(f)
    expect(a.isDown(keys[0].id)).toBe(true)
    expect(a.rangeDigest({ kind: 'members' }, 1024)).toEqual(b.rangeDigest({ kind: 'members' }, 1024))
  })

  it('the releases scope repairs a missed release, desired record and older release of a cell, keyed by cell', async () => {
    const clock = new ManualClock()
    const a = await fleetView(clock, 2)
    const b = await fleetView(clock, 2)
    for (const v of [a, b]) await apply(v, await releaseRec(1), 'x')
    await apply(a, await releaseRec(1, 'ledger'), 'x')
    await apply(b, await releaseRec(1, 'ledger'), 'x')
    const scope = { kind: 'releases' } as const
    expect(a.rangeSize(scope)).toBe(2)
    expect(a.rangeDigest(scope, 16)).toEqual(b.rangeDigest(scope, 16))
    // b gets billing's release 2 (1 goes to its history) and a desired record: only billing's bucket differs.
    await apply(b, await releaseRec(2), 'x')
    await apply(b, await releaseRec(2, 'billing', 'desired'), 'x')
    expect(diffRangeDigests(a.rangeDigest(scope, 16), b.rangeDigest(scope, 16))).toEqual([rangeBucket('billing', 16)])
    const frames = answerDigests(b, [{ scope, buckets: 16, digest: a.rangeDigest(scope, 16) }], { maxFrameBytes: 64 * 1024, maxBytes: 1 << 20 })
    const kinds = frames.flatMap(f => decodeFrame(f)).map(e => e.envelope.kind).sort()
    // billing's records (release 2, release 1 from history, desired 2), and ledger's only if it shares the bucket.
    expect(kinds).toEqual(rangeBucket('ledger', 16) === rangeBucket('billing', 16) ? ['desired', 'release', 'release', 'release'] : ['desired', 'release', 'release'])
    for (const f of frames) await a.merge(f)
    expect(a.release('billing')?.seq).toBe(2)
    expect(a.desired('billing')?.seq).toBe(2)
    expect(a.rangeDigest(scope, 16)).toEqual(b.rangeDigest(scope, 16))
    // A public-only requester gets no releases by digest.
    expect(answerDigests(b, [{ scope, buckets: 16, digest: new Uint8Array(128) }], { maxFrameBytes: 64 * 1024, maxBytes: 1 << 20, cells: () => true })).toEqual([])
  })

  it('answerDigests sends nothing for equal digests and stops at maxBytes', async () => {
    const clock = new ManualClock()
    const full = await fleetView(clock, 8)
    const empty = new FleetView({ clock, liveness: 'members' })
    const scopes = (v: FleetView): DigestScope[] => [{ scope: { kind: 'members' }, buckets: 8, digest: v.rangeDigest({ kind: 'members' }, 8) }]
    expect(answerDigests(full, scopes(full), { maxFrameBytes: 64 * 1024, maxBytes: 1 << 20 })).toEqual([])
    const all = kindsOf(answerDigests(full, scopes(empty), { maxFrameBytes: 64 * 1024, maxBytes: 1 << 20 }))
    expect(all.filter(k => k.startsWith('node:'))).toHaveLength(8)
    const some = kindsOf(answerDigests(full, scopes(empty), { maxFrameBytes: 64 * 1024, maxBytes: 3_000 }))
    expect(some.length).toBeGreaterThan(0)
    expect(some.length).toBeLessThan(all.length)
  })

  it('bucket counts: powers of two up to 1,024, sized by entries', () => {
    expect(digestBuckets(0, 1300)).toBe(1)
    expect(digestBuckets(4, 1300)).toBe(4)
    expect(digestBuckets(1_000, 1300)).toBe(512)
    expect(digestBuckets(10_000, 1300)).toBe(1024)
    expect(digestBuckets(2_000, 300)).toBe(256)
    for (const bad of [0, 3, 2048, 1.5, -4]) expect(() => { checkBucketCount(bad) }).toThrow(RangeError)
    expect(() => diffRangeDigests(new Uint8Array(8), new Uint8Array(16))).toThrow(RangeError)
  })
})

/** A digest request written by hand (no checks), to send what encodeDigestRequest refuses to. */
function rawDigestRequest (scopes: Array<{ tag: number, cell?: string, buckets: number, digestBytes: number }>, chain = new Uint8Array(0)): Uint8Array {
  const w = new ByteWriter(1 << 22)
  w.u8(1).u8(0x23).bytes(chain, 1 << 20).uvarint(scopes.length)
  for (const s of scopes) {
    w.u8(s.tag)
    if (s.cell !== undefined) w.string(s.cell, 1 << 20)
    w.uvarint(s.buckets).bytes(new Uint8Array(s.digestBytes), 1 << 20)
  }
  return w.finish()
}

describe('digest request codec and bounds', () => {
  it('round-trips and refuses malformed, oversized or truncated requests by name', () => {
    const scopes: DigestScope[] = [
      { scope: { kind: 'members' }, buckets: 4, digest: new Uint8Array(32).fill(7) },
      { scope: { kind: 'cell', cell: 'billing' }, buckets: 1, digest: new Uint8Array(8).fill(9) },
      { scope: { kind: 'releases' }, buckets: 2, digest: new Uint8Array(16).fill(5) }
    ]
    const frame = encodeDigestRequest(new Uint8Array([1, 2, 3]), scopes)
    expect(parseSyncRequest(frame)).toEqual({ legacy: false, chain: new Uint8Array([1, 2, 3]), digests: scopes })
    const bad: Array<[string, Uint8Array]> = [
      ['bucket count not a power of two', rawDigestRequest([{ tag: 0, buckets: 3, digestBytes: 24 }])],
      ['too many buckets', rawDigestRequest([{ tag: 0, buckets: 2048, digestBytes: 2048 * 8 }])],
      ['digest length mismatch', rawDigestRequest([{ tag: 0, buckets: 4, digestBytes: 24 }])],
      ['members twice', rawDigestRequest([{ tag: 0, buckets: 1, digestBytes: 8 }, { tag: 0, buckets: 1, digestBytes: 8 }])],
      ['a cell twice', rawDigestRequest([{ tag: 1, cell: 'billing', buckets: 1, digestBytes: 8 }, { tag: 1, cell: 'billing', buckets: 1, digestBytes: 8 }])],
      ['65 cells', rawDigestRequest(Array.from({ length: 65 }, (_, i) => ({ tag: 1, cell: `c${i}`, buckets: 1, digestBytes: 8 })))],
      ['over 4096 buckets in all', rawDigestRequest(Array.from({ length: 5 }, (_, i) => ({ tag: 1, cell: `c${i}`, buckets: 1024, digestBytes: 1024 * 8 })))],
      ['invalid cell name', rawDigestRequest([{ tag: 1, cell: 'bad name', buckets: 1, digestBytes: 8 }])],
      ['unknown scope kind', rawDigestRequest([{ tag: 3, buckets: 1, digestBytes: 8 }])],
      ['releases twice', rawDigestRequest([{ tag: 2, buckets: 1, digestBytes: 8 }, { tag: 2, buckets: 1, digestBytes: 8 }])],
      ['no scopes', rawDigestRequest([])],
      ['trailing bytes', new Uint8Array([...rawDigestRequest([{ tag: 0, buckets: 1, digestBytes: 8 }]), 0])],
      ['truncated', rawDigestRequest([{ tag: 0, buckets: 4, digestBytes: 32 }]).subarray(0, 20)],
      ['oversized', new Uint8Array(MAX_DIGEST_REQUEST_BYTES + 1).fill(1, 0, 1).fill(0x23, 1, 2)]
    ]
    for (const [what, request] of bad) expect(() => parseSyncRequest(request), what).toThrow(FleetSyncFilterError)
    // The encoder refuses what the parser would.
    expect(() => encodeDigestRequest(new Uint8Array(0), [{ scope: { kind: 'members' }, buckets: 3, digest: new Uint8Array(24) }])).toThrow(FleetSyncFilterError)
    expect(() => encodeDigestRequest(new Uint8Array(0), [])).toThrow(FleetSyncFilterError)
    // The largest valid request fits its bound.
    const sizes = [1024, 1024, 512, ...Array.from({ length: 61 }, () => 8)]
    const largest = encodeDigestRequest(new Uint8Array(4096), [
      { scope: { kind: 'members' }, buckets: 1024, digest: new Uint8Array(8192) },
      ...sizes.map((buckets, i): DigestScope => ({ scope: { kind: 'cell', cell: `${'c'.repeat(120)}${i}` }, buckets, digest: new Uint8Array(buckets * 8) }))
    ])
    expect(largest.length).toBeLessThanOrEqual(MAX_DIGEST_REQUEST_BYTES)
    expect(() => digestScopes(new FleetView({ clock: new ManualClock(), liveness: 'members' }), { cells: Array.from({ length: DIGEST_LIMITS.cells + 1 }, (_, i) => `c${i}`) })).toThrow(FleetSyncFilterError)
  })
})

const nodes: Libp2p[] = []
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop()
})

async function peer (view: FleetView, clock: ManualClock, init: { antiEntropyCells?: () => readonly string[], maxInboundStreams?: number, antiEntropyMs?: number, random?: { next: () => number, bytes: (n: number) => Uint8Array } } = {}, privateKey?: PrivateKey): Promise<Libp2p<{ fleetSync: FleetSync }>> {
  const n = await createLibp2p({
    ...(privateKey !== undefined ? { privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), fleetSync: fleetSync({ view, clock, autoPull: 0, antiEntropyMode: 'digest', random: { next: () => 0.5, bytes: (l) => new Uint8Array(l) }, ...init }) }
  })
  nodes.push(n)
  return n
}

function once (target: EventTarget, type: string, timeoutMs: number): Promise<Event> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ${type} within ${timeoutMs} ms`)) }, timeoutMs)
    target.addEventListener(type, (evt) => { clearTimeout(timer); resolve(evt) }, { once: true })
  })
}

describe('digest pulls over libp2p', () => {
  it('views that differ by one node exchange only that bucket\'s records; identical views nothing but the request', async () => {
    const clock = new ManualClock()
    const serverView = await fleetView(clock, 6)
    const clientView = await fleetView(clock, 6)
    const server = await peer(serverView, clock)
    const client = await peer(clientView, clock, { antiEntropyCells: () => ['billing'] })
    const identified = once(client, 'peer:identify', 10_000)
    await client.dial(server.getMultiaddrs()[0])
    await identified

    // Identical views: no frame comes back.
    expect(await client.services.fleetSync.digestPull(server.peerId, { cells: ['billing'] })).toMatchObject({ frames: 0, bytes: 0, accepted: 0 })
    expect(server.services.fleetSync.stats()).toMatchObject({ digestServes: 1, served: 1 })

    // The server learns a newer member record of node 4 that the client missed, and a new node 6.
    await apply(serverView, await memberRec(keys[4], clock, 5), keys[4].id)
    await apply(serverView, await nodeRec(keys[6], clock), keys[6].id)
    await apply(serverView, await memberRec(keys[6], clock, 2), keys[6].id)
    const result = await client.services.fleetSync.antiEntropyRound()
    // Node 4's and node 6's buckets: their records (node 4's node record a duplicate), plus those of any node sharing a bucket.
    const buckets = digestBuckets(6, 1300)
    const sharing = [0, 1, 2, 3, 5].filter(i => [rangeBucket(keys[4].id, buckets), rangeBucket(keys[6].id, buckets)].includes(rangeBucket(keys[i].id, buckets)))
    expect(result).toMatchObject({ frames: 1, accepted: 3, dropped: 1 + 2 * sharing.length })
    expect(clientView.member(keys[4].id)?.seq).toBe(5)
    expect(clientView.node(keys[6].id)).toBeDefined()
    expect(clientView.rangeDigest({ kind: 'members' }, 64)).toEqual(serverView.rangeDigest({ kind: 'members' }, 64))

    // A missed instance of a followed cell: only that cell's differing bucket.
    await apply(serverView, await instRec(keys[6], clock, 'b6'), keys[6].id)
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 1, accepted: 1 })
    expect(clientView.instances('billing').map(i => i.instanceId).sort()).toEqual(['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6'])
    // A release the client missed (its gossip lost): the releases scope brings it.
    await apply(serverView, await releaseRec(3), 'x')
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 1, accepted: 1 })
    expect(clientView.release('billing')?.seq).toBe(3)
    // Converged: the next round carries nothing.
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 0, accepted: 0 })
    expect(server.services.fleetSync.stats()).toMatchObject({ digestServes: 5, served: 5 })
  }, 30_000)

  it('the periodic round (antiEntropyMs, PER_CELL_ANTI_ENTROPY_MS) runs digest pulls: a missed member record arrives', async () => {
    const clock = new ManualClock()
    const serverView = await fleetView(clock, 3)
    const clientView = await fleetView(clock, 3)
    const server = await peer(serverView, clock)
    const client = await peer(clientView, clock, { antiEntropyMs: PER_CELL_ANTI_ENTROPY_MS })
    const identified = once(client, 'peer:identify', 10_000)
    await client.dial(server.getMultiaddrs()[0])
    await identified
    await apply(serverView, await memberRec(keys[2], clock, 9), keys[2].id)
    const pulled = once(client.services.fleetSync, 'pulled', 10_000)
    clock.advance(PER_CELL_ANTI_ENTROPY_MS) // random 0.5 → exactly the period
    await pulled
    expect(clientView.member(keys[2].id)?.seq).toBe(9)
    expect(server.services.fleetSync.stats()).toMatchObject({ digestServes: 1 })
  }, 30_000)

  it('compares a followed cell with a connected peer hosting it, not with a round\'s peer that does not', async () => {
    const clock = new ManualClock()
    // keys[0] hosts nothing, keys[1] hosts billing (their member records say so); the client follows billing.
    const view = async (): Promise<FleetView> => {
      const v = await fleetView(clock, 0)
      await apply(v, await nodeRec(keys[0], clock), keys[0].id)
      await apply(v, await memberRec(keys[0], clock, 2, []), keys[0].id)
      await apply(v, await nodeRec(keys[1], clock), keys[1].id)
      await apply(v, await memberRec(keys[1], clock, 2, ['billing']), keys[1].id)
      return v
    }
    const idleView = await view()
    const hostView = await view()
    await apply(hostView, await signRecord(keys[1].key, 'instance', makeInstanceRecord(keys[1].id, { cell: 'billing', instanceId: 'fresh', sentMs: clock.now(), refreshMs: 60_000 })), keys[1].id)
    const clientView = await view()
    const idle = await peer(idleView, clock, {}, keys[0].key)
    const host = await peer(hostView, clock, {}, keys[1].key)
    // random 0: the round's peer is the first identified, the idle one.
    const client = await peer(clientView, clock, { antiEntropyCells: () => ['billing'], random: { next: () => 0, bytes: (l) => new Uint8Array(l) } })
    for (const n of [idle, host]) {
      const identified = once(client, 'peer:identify', 10_000)
      await client.dial(n.getMultiaddrs()[0])
      await identified
    }
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 1, accepted: 1 })
    expect(clientView.instances('billing').map(i => i.instanceId)).toEqual(['fresh'])
    // Members and releases with the round's peer, billing with its host.
    expect(idle.services.fleetSync.stats()).toMatchObject({ digestServes: 1 })
    expect(host.services.fleetSync.stats()).toMatchObject({ digestServes: 1 })
  }, 30_000)

  it('a node following more than 64 cells compares 64 a round, rotating', async () => {
    const clock = new ManualClock()
    const serverView = await fleetView(clock, 2)
    const clientView = await fleetView(clock, 2)
    const many = Array.from({ length: 70 }, (_, i) => `cell-${i}`)
    // The server holds an instance of cell-69 the client lacks: the first round (cells 0-63) does not ask for it, the second does.
    await apply(serverView, await signRecord(keys[1].key, 'instance', makeInstanceRecord(keys[1].id, { cell: 'cell-69', instanceId: 'late', sentMs: clock.now(), refreshMs: 60_000 })), keys[1].id)
    const server = await peer(serverView, clock)
    const client = await peer(clientView, clock, { antiEntropyCells: () => many })
    const identified = once(client, 'peer:identify', 10_000)
    await client.dial(server.getMultiaddrs()[0])
    await identified
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 0, accepted: 0 })
    expect(await client.services.fleetSync.antiEntropyRound()).toMatchObject({ frames: 1, accepted: 1 })
    expect(clientView.instances('cell-69').map(i => i.instanceId)).toEqual(['late'])
  }, 30_000)

  it('refuses a malformed digest request by name and closes the stream (attack)', async () => {
    const clock = new ManualClock()
    const serverView = await fleetView(clock, 3)
    const server = await peer(serverView, clock, { maxInboundStreams: 8 })
    const attacker = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    nodes.push(attacker)
    await attacker.dial(server.getMultiaddrs()[0])
    const attempts = [
      rawDigestRequest([{ tag: 0, buckets: 3, digestBytes: 24 }]),
      rawDigestRequest([{ tag: 0, buckets: 4, digestBytes: 8 }]),
      rawDigestRequest([{ tag: 0, buckets: 4, digestBytes: 32 }]).subarray(0, 10)
    ]
    for (const request of attempts) {
      const stream = await attacker.dialProtocol(server.peerId, FLEET_SYNC_PROTOCOL)
      stream.send(encodeLengthPrefixed(request))
      const got: Uint8Array[] = []
      await expect((async () => { for await (const chunk of stream) got.push(chunk instanceof Uint8Array ? chunk : chunk.subarray()) })()).rejects.toThrow()
      expect(got).toEqual([])
    }
    expect(server.services.fleetSync.stats()).toMatchObject({ badFilters: 3, served: 0, digestServes: 0 })
  }, 30_000)
})
