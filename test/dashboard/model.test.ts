import { describe, expect, it } from 'vitest'
import type { InstanceRecord, ReleaseRecord, DesiredVersionRecord } from '../../core/fleet/records.ts'
import {
  callSplit, cellSample, createCallTally, describeError, displayStatus, isStale, pushBounded,
  qpsShareByDigest, replicaSummary, rolloutProgress, tallyCall, targetOf, OTHER, UNATTRIBUTED, claimNotes
} from '../../dashboard/src/model.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { FleetView, signRecord } from '../../core/fleet/index.ts'
import { ManualClock, makeNodeRecord, makePinRecord, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import type { CellPolicy } from '../../dashboard/src/source.ts'

let n = 0
function inst (p: Partial<InstanceRecord> & Pick<InstanceRecord, 'version' | 'digest'>): InstanceRecord {
  n++
  return {
    instanceId: `i${n}`, cell: 'billing', nodeId: `node${n}`, startedMs: 1000 + n, state: 'ready',
    cpuPercent: 10, memoryBytes: 1000, memoryPercent: 5, qps: 1, p99Ms: 3, inflight: 0, sentMs: 0, seq: 1, ...p
  }
}

const policy: CellPolicy = { minReplicas: 2, maxReplicas: 4, canaryWeight: 10, maxSurge: 25, healthGraceMs: 10_000 }
const V1 = { version: '1.0.0', digest: 'sha256-a' }
const V2 = { version: '1.1.0', digest: 'sha256-b' }

describe('targetOf', () => {
  const rel = (seq: number, v = V2): ReleaseRecord => ({ cell: 'billing', ...v, authority: 'aa', seq, signed: new Uint8Array() })
  const des = (seq: number, v = V1): DesiredVersionRecord => ({ cell: 'billing', ...v, authority: 'aa', seq, signed: new Uint8Array() })
  it('follows a rollback until a later release rolls forward', () => {
    expect(targetOf('billing', [rel(3)], des(4))).toEqual({ target: V1 })
    expect(targetOf('billing', [rel(5)], des(4))).toEqual({ target: V2 })
    expect(targetOf('billing', [], des(1))).toEqual({ target: V1 })
    expect(targetOf('billing', [rel(1)], undefined)).toEqual({ target: V2 })
    expect(targetOf('billing', [], undefined)).toEqual({})
  })

  it('falls back from a halted release as the nodes do, and names the halted one', () => {
    // 1.1.0 halted: the fleet runs 1.0.0 (the dashboard said "Rolling out 1.0.0 → 1.1.0" forever).
    const halt = { cell: 'billing', version: V2.version, digest: V2.digest, atMs: 5, reason: '3 crashes or failed health checks' }
    const nodes = [makeNodeRecord('node-a', { halts: [halt] })]
    expect(targetOf('billing', [rel(2), rel(1, V1)], undefined, nodes)).toEqual({ target: V1, halted: V2 })
    // The same version published again as another artifact that crashed: back to the earlier artifact.
    const V2b = { version: V2.version, digest: 'sha256-b2' }
    const again = [makeNodeRecord('node-a', { halts: [{ ...halt, digest: V2b.digest }] })]
    expect(targetOf('billing', [rel(6, V2b), rel(2), rel(1, V1)], undefined, again)).toEqual({ target: V2, halted: V2b })
    // Nothing to fall back to (crash-looping): no target, the halted one named.
    expect(targetOf('billing', [rel(2)], undefined, nodes)).toEqual({ halted: V2 })
    // Another cell's halt of the same digest changes nothing.
    expect(targetOf('ledger', [{ ...rel(2), cell: 'ledger' }], undefined, nodes)).toEqual({ target: V2 })
  })
})

describe('replicaSummary', () => {
  it('counts live replicas against min and max', () => {
    const below = replicaSummary([inst({ ...V1 }), inst({ ...V1, state: 'draining' })], policy)
    expect(below).toMatchObject({ live: 1, ready: 1, draining: 1, min: 2, max: 4, state: 'below-min' })
    const ok = replicaSummary([inst({ ...V1 }), inst({ ...V1, state: 'starting' })], policy)
    expect(ok).toMatchObject({ live: 2, starting: 1, state: 'ok' })
    const over = replicaSummary(Array.from({ length: 5 }, () => inst({ ...V1 })), policy)
    expect(over.state).toBe('above-max')
  })
  it('says no-policy (not ok) when the bounds are unknown', () => {
    expect(replicaSummary([inst({ ...V1 })], undefined)).toMatchObject({ live: 1, state: 'no-policy' })
    expect(replicaSummary([inst({ ...V1 })], undefined).min).toBeUndefined()
    expect(replicaSummary([inst({ ...V1, state: 'crashed' })], undefined)).toMatchObject({ live: 0, crashed: 1, state: 'none' })
  })
})

describe('rolloutProgress', () => {
  it('counts old against new, proven replicas, surge and grace timers', () => {
    const now = 100_000
    const list = [
      inst({ ...V1 }), inst({ ...V1 }), inst({ ...V1, state: 'draining' }),
      inst({ ...V2, readyMs: now - 12_000 }), // proven
      inst({ ...V2, readyMs: now - 4000 }), // 6 s left
      inst({ ...V2, state: 'starting' })
    ]
    const p = rolloutProgress(list, V2, policy, now)
    expect(p.active).toBe(true)
    expect(p.newCount).toBe(3)
    expect(p.oldCount).toBe(2)
    expect(p.old).toEqual([{ ...V1, live: 2, ready: 2 }])
    expect(p.proven).toBe(1)
    expect(p.unproven).toBe(2)
    // desired ≈ clamp(old 2 + proven 1) = 3 → ceil(25% × 3) = 1
    expect(p.surge).toBe(1)
    expect(p.fraction).toBeCloseTo(3 / 5)
    const timed = p.graceTimers.find(t => t.remainingMs !== undefined)
    expect(timed?.remainingMs).toBe(6000)
    expect(timed?.fraction).toBeCloseTo(0.4)
    expect(p.graceTimers.filter(t => t.remainingMs === undefined)).toHaveLength(1)
  })
  it('is settled when only the target runs, and shows no surge without a policy', () => {
    const p = rolloutProgress([inst({ ...V2 }), inst({ ...V2 })], V2, undefined, 0)
    expect(p).toMatchObject({ active: false, newCount: 2, oldCount: 0, surge: undefined, fraction: 1 })
  })
  it('is active when a new target has no replica yet', () => {
    const p = rolloutProgress([inst({ ...V1 })], V2, policy, 0)
    expect(p).toMatchObject({ active: true, newCount: 0, oldCount: 1, fraction: 0 })
  })
  it('takes the latest-started release as the target when none is known', () => {
    const p = rolloutProgress([inst({ ...V1, startedMs: 1 }), inst({ ...V2, startedMs: 50 })], undefined, undefined, 100)
    expect(p.target).toEqual(V2)
    expect(p.active).toBe(true)
  })
})

describe('canary split', () => {
  it('shares qps by digest among live replicas', () => {
    const rows = qpsShareByDigest([
      inst({ ...V1, qps: 90 }), inst({ ...V2, qps: 10 }), inst({ ...V2, qps: 500, state: 'draining' })
    ], V2)
    expect(rows.map(r => [r.version, r.share, r.isTarget])).toEqual([['1.0.0', 0.9, false], ['1.1.0', 0.1, true]])
  })
  it('has zero shares, not NaN, when nothing is served', () => {
    expect(qpsShareByDigest([inst({ ...V1, qps: 0 })], V1)[0].share).toBe(0)
  })
  it('tallies this page\'s calls per answering release, bounded', () => {
    const t = createCallTally(1, 4)
    for (let k = 0; k < 3; k++) tallyCall(t, 'billing', V1, true)
    tallyCall(t, 'billing', V2, false)
    tallyCall(t, 'billing', undefined, true)
    tallyCall(t, 'billing', { version: '9', digest: 'sha256-z' }, true)
    tallyCall(t, 'ledger', V1, true)
    expect(t.dropped).toBe(1)
    const rows = callSplit(t, 'billing', V2)
    expect(rows.map(r => [r.version, r.value])).toEqual([['1.0.0', 3], [OTHER, 1], ['1.1.0', 1], [UNATTRIBUTED, 1]])
    expect(rows.find(r => r.isTarget)?.version).toBe('1.1.0')
    expect(rows.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1)
    expect(callSplit(t, 'ledger', V1)).toEqual([])
  })
})

describe('stale detection', () => {
  it('shows a live source stale when no record arrived lately', () => {
    expect(displayStatus('live', 1000, 2000, 5000)).toBe('live')
    expect(displayStatus('live', 1000, 7000, 5000)).toBe('stale')
    expect(displayStatus('live', undefined, 0, 5000)).toBe('stale')
    expect(displayStatus('error', 1000, 1000, 5000)).toBe('error')
    expect(displayStatus('connecting', undefined, 0, 5000)).toBe('connecting')
    expect(isStale(0, 5000, 5000)).toBe(false)
    expect(isStale(0, 5001, 5000)).toBe(true)
  })
})

describe('samples and errors', () => {
  it('sums live replicas and keeps the worst p99', () => {
    const s = cellSample([inst({ ...V1, qps: 2, p99Ms: 7 }), inst({ ...V1, qps: 3, p99Ms: 4 }), inst({ ...V1, state: 'crashed', qps: 100 })], 5)
    expect(s).toEqual({ atMs: 5, cpuPercent: 20, memoryBytes: 2000, qps: 5, p99Ms: 7 })
  })
  it('bounds a series', () => {
    let s: number[] = []
    for (let k = 0; k < 10; k++) s = pushBounded(s, k, 4)
    expect(s).toEqual([6, 7, 8, 9])
  })
  it('names errors and explains them in words, also for remote errors', () => {
    expect(describeError(Object.assign(new Error('x'), { name: 'NoReplicaError' }))).toMatchObject({ name: 'NoReplicaError', words: expect.stringMatching(/No ready replica/) })
    expect(describeError({ name: 'RemoteError', remoteName: 'InsufficientFundsError', message: 'low' })).toMatchObject({ name: 'InsufficientFundsError', words: 'The call failed (insufficient funds).', message: 'low' })
    expect(describeError('boom')).toMatchObject({ name: 'Error', message: 'boom' })
  })
})

describe('a stateful cell\'s storage line', () => {
  interface Key { key: PrivateKey, id: string }
  const mk = async (): Promise<Key> => { const key = await generateKeyPair('Ed25519'); return { key, id: peerIdFromPrivateKey(key).toString() } }

  it('names each claim\'s owner and epoch and the age and holders of its newest safe snapshot, from a real fleet view', async () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0))
    const view = new FleetView({ clock })
    const [owner, h1, h2, other] = [await mk(), await mk(), await mk(), await mk()]
    // Claim 0: a safe snapshot 5 min old (two holders) and a newer one not yet held by two.
    const safe = makeSnapshotRecord(owner.id, { epoch: 3, tag: 'snapshot-e3-20261201T115500Z', takenMs: clock.now() - 5 * 60_000, sentMs: clock.now() })
    const fresh = makeSnapshotRecord(owner.id, { epoch: 3, tag: 'snapshot-e3-20261201T115900Z', takenMs: clock.now() - 60_000, sentMs: clock.now() })
    await view.apply(await signRecord(owner.key, 'snapshot', safe), { from: owner.id })
    await view.apply(await signRecord(owner.key, 'snapshot', fresh), { from: owner.id })
    for (const h of [h1, h2]) await view.apply(await signRecord(h.key, 'pin', makePinRecord(h.id, safe, { sentMs: clock.now() })), { from: h.id })
    // Claim 1: one snapshot nobody else holds yet, on a node whose replica is not live any more.
    const lone = makeSnapshotRecord(other.id, { claimId: 'ledger/1', epoch: 1, tag: 'snapshot-e1-20261201T115930Z', takenMs: clock.now() - 30_000, sentMs: clock.now() })
    await view.apply(await signRecord(other.key, 'snapshot', lone), { from: other.id })
    const instances = [
      inst({ version: '1.0.0', digest: 'sha256-l', cell: 'ledger', nodeId: owner.id, claim: { ordinal: 0, epoch: 3 } }),
      inst({ version: '1.0.0', digest: 'sha256-l', cell: 'ledger', nodeId: other.id, state: 'crashed', claim: { ordinal: 1, epoch: 1 } }),
      // Claim 2: a replica that just opened it, before any snapshot.
      inst({ version: '1.0.0', digest: 'sha256-l', cell: 'ledger', nodeId: h1.id, state: 'starting', claim: { ordinal: 2, epoch: 1 } })
    ]
    expect(claimNotes(view, 'ledger', instances, clock.now())).toEqual([
      { claimId: 'ledger/0', epoch: 3, ownerNodeId: owner.id, safeAgeMs: 300_000, safeHolders: 2, newestAgeMs: 60_000, snapshots: 2 },
      { claimId: 'ledger/1', epoch: 1, newestAgeMs: 30_000, snapshots: 1 },
      { claimId: 'ledger/2', epoch: 1, ownerNodeId: h1.id, snapshots: 0 }
    ])
    // A stateless cell, or a source whose view has no snapshot methods: no line.
    expect(claimNotes(view, 'billing', [inst(V1)], clock.now())).toEqual([])
    expect(claimNotes({} as unknown as FleetView, 'ledger', [], clock.now())).toEqual([])
  })
})
