import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { initialCellState, rendezvous, RELEASE_HALTED_METRIC, type BiologyView, type CellState, type Policy } from '../core/biology/index.ts'
import type { Manifest } from '../core/manifest/index.ts'
import { encodeCertificate, generateAuthority, issueGrant } from '../core/identity/index.ts'
import { makeInstanceRecord, makeNodeRecord } from '../core/fleet/testing.ts'
import { LIMITS, type FleetView, type InstanceRecord, type NodeRecord } from '../core/fleet/index.ts'
import { hostGrantCheck } from '../core/mesh/index.ts'
import { ManualClock } from '../core/testing/manual-clock.ts'
import { AutonomicLoop, MAX_CELL_ERRORS, policyRelease, spawnFailureText, type LoopNotice } from './autonomic-loop.ts'
import { ClaimQuorumError } from '../core/claims/errors.ts'
import { ClaimsHeldError, ClaimOwnerAwaitedError, ClaimVotersUnknownError } from './volumes/volume-manager.ts'
import type { PreparedRelease, ReleaseStore } from './release-store.ts'
import type { ReplicaSet } from './replica-set.ts'

const CELL = 'versioned'
const AUTHORITY = 'a'.repeat(64)

function policy (minReplicas: number): Policy {
  return { minReplicas, maxReplicas: 10, cpuTarget: 60, memoryTarget: 80, update: 'live', maxSurge: 50, healthGraceMs: 2000, canaryWeight: 10 }
}

function prepared (version: string, digest: string, seq: number, minReplicas: number): PreparedRelease {
  return { cell: CELL, version, digest, seq, authority: AUTHORITY, codePath: `/code/${digest}.mjs`, manifest: { biology: policy(minReplicas) } as unknown as Manifest }
}

const v1 = prepared('1.0.0', '1'.repeat(64), 100, 2)
const v2 = prepared('1.1.0', '2'.repeat(64), 200, 5)

function view (desired: BiologyView['desired'] = []): BiologyView {
  return {
    nodes: [],
    instances: [],
    releases: [v1, v2].map(r => ({ cell: CELL, version: r.version, digest: r.digest, seq: r.seq, authority: AUTHORITY })),
    desired,
    events: [],
    halts: []
  }
}

describe('policyRelease', () => {
  it('is the newest release without a desired record', () => {
    expect(policyRelease(CELL, [v1, v2], view(), initialCellState(CELL)).version).toBe('1.1.0')
  })

  it('follows a rollback: the desired record names 1.0.0, so 1.0.0\'s [cell.biology] governs', () => {
    const chosen = policyRelease(CELL, [v1, v2], view([{ cell: CELL, version: '1.0.0', digest: v1.digest, seq: 300 }]), initialCellState(CELL))
    expect(chosen.version).toBe('1.0.0')
    expect(chosen.manifest.biology.minReplicas).toBe(2)
  })

  it('ignores a replayed desired record the node already saw superseded', () => {
    const state: CellState = { ...initialCellState(CELL), desired: { cell: CELL, version: '1.1.0', digest: v2.digest, seq: 400 } }
    expect(policyRelease(CELL, [v1, v2], view([{ cell: CELL, version: '1.0.0', digest: v1.digest, seq: 300 }]), state).version).toBe('1.1.0')
  })

  it('is the release before a halted one', () => {
    const state: CellState = { ...initialCellState(CELL), halts: [{ cell: CELL, version: '1.1.0', digest: v2.digest, atMs: 1, reason: 'crashing' }] }
    expect(policyRelease(CELL, [v1, v2], view(), state).version).toBe('1.0.0')
  })

  it('falls back to the newest prepared release while the target\'s artifact is not here yet', () => {
    expect(policyRelease(CELL, [v1], view(), initialCellState(CELL)).version).toBe('1.0.0')
  })
})

describe('gossiped halts', () => {
  async function peerId (): Promise<string> {
    return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  }

  /** A loop on `self` holding v1 and v2 of the cell, whose view holds `others`' node records. */
  async function loopWith (others: NodeRecord[], authority: string, clock: ManualClock): Promise<AutonomicLoop> {
    const self = await peerId()
    const releases = [v1, v2].map(r => ({ ...r, authority }))
    const view = { nodes: () => others, instances: () => [], desired: () => undefined, retired: () => undefined, releaseOf: () => undefined, claimants: () => [authority] } as unknown as FleetView
    const store = { cells: () => [CELL], releases: () => releases, byDigest: (_: string, d: string) => releases.find(r => r.digest === d) } as unknown as ReleaseStore
    const replicas = { list: () => [], spawn: async () => { throw new Error('test: no spawning') }, drain: async () => {} } as unknown as ReplicaSet
    return new AutonomicLoop({ selfId: self, view, releases: store, replicas, clock, random: { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) }, canHost: () => false, hostGrant: hostGrantCheck(clock) })
  }

  it('adopts a halt from a node the release authority granted the host role, and repeats it in its own heartbeat', async () => {
    const clock = new ManualClock(Date.now())
    const key = await generateAuthority()
    const granted = await peerId()
    const grant = await issueGrant(key, { subject: granted, roles: ['host'], notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 })
    const halt = { cell: CELL, version: '1.1.0', digest: v2.digest, atMs: clock.now() - 10, reason: '3 crashes or failed health checks within 120000 ms' }
    const loop = await loopWith([makeNodeRecord(granted, { grants: [encodeCertificate(grant)], halts: [halt] })], key.id, clock)
    await loop.tick()
    expect(loop.halted.get(`${CELL}@1.1.0`)).toMatchObject({ digest: v2.digest, metric: RELEASE_HALTED_METRIC, reason: expect.stringMatching(/halted by node …\w{8}: 3 crashes/) })
    expect(loop.counters.halts).toBe(1)
    expect(loop.haltRecords()).toEqual([expect.objectContaining({ cell: CELL, digest: v2.digest, version: '1.1.0' })])
    await loop.tick()
    expect(loop.counters.halts).toBe(1) // once
  })

  it('repeats a halt whose reason is too long for a heartbeat cut with an ellipsis, within the limit', async () => {
    const clock = new ManualClock(Date.now())
    const key = await generateAuthority()
    const granted = await peerId()
    const grant = await issueGrant(key, { subject: granted, roles: ['host'], notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 })
    const halt = { cell: CELL, version: '1.1.0', digest: v2.digest, atMs: clock.now() - 10, reason: `crash-looping: ${'x'.repeat(LIMITS.haltReasonChars - 20)} until another artifact is published or rolled back to` }
    const loop = await loopWith([makeNodeRecord(granted, { grants: [encodeCertificate(grant)], halts: [halt] })], key.id, clock)
    await loop.tick()
    const [repeated] = loop.haltRecords()
    expect(repeated.reason).toHaveLength(LIMITS.haltReasonChars)
    expect(repeated.reason).toMatch(/^crash-looping: x+ unt…$/)
  })

  it('ignores a halt from a node without a host grant from the release authority', async () => {
    const clock = new ManualClock(Date.now())
    const key = await generateAuthority()
    const stranger = await generateAuthority()
    const [plain, foreign, expired] = [await peerId(), await peerId(), await peerId()]
    const foreignGrant = await issueGrant(stranger, { subject: foreign, roles: ['host'], notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 })
    const oldGrant = await issueGrant(key, { subject: expired, roles: ['host'], notBeforeMs: clock.now() - 20_000, notAfterMs: clock.now() - 10_000 })
    const halt = { cell: CELL, version: '1.1.0', digest: v2.digest, atMs: clock.now() - 10, reason: 'forged' }
    const loop = await loopWith([
      makeNodeRecord(plain, { halts: [halt] }),
      makeNodeRecord(foreign, { grants: [encodeCertificate(foreignGrant)], halts: [halt] }),
      makeNodeRecord(expired, { grants: [encodeCertificate(oldGrant)], halts: [halt] })
    ], key.id, clock)
    await loop.tick()
    expect(loop.halted.size).toBe(0)
    expect(loop.haltRecords()).toEqual([])
  })
})

/**
 * A loop on a node whose replica of CELL 1.1.0 crashed (its tombstone stays listed, with what
 * `spawn` adds to `listed`): its next tick restarts it.
 */
async function loopRestartingACrash (spawn: (listed: Array<{ instanceId: string, cell: string, state: string }>) => Promise<void>, announce?: (listed: Array<{ state: string }>) => void): Promise<{ loop: AutonomicLoop, clock: ManualClock }> {
  const clock = new ManualClock(Date.now())
  const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const crashedAt = clock.now() - 5_000
  const crashed = { instanceId: 'versioned-1.1.0-dead', cell: CELL, version: '1.1.0', digest: v2.digest, nodeId: self, startedMs: crashedAt - 1_000, state: 'crashed' as const, cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0, sentMs: clock.now(), seq: 1, endedMs: crashedAt }
  const view = { nodes: () => [makeNodeRecord(self)], instances: () => [{ ...crashed, sentMs: clock.now() }], desired: () => undefined, retired: () => undefined, releaseOf: () => undefined, claimants: () => [v1.authority], node: () => undefined } as unknown as FleetView
  const store = { cells: () => [CELL], releases: () => [v1, v2], byDigest: (_: string, d: string) => [v1, v2].find(r => r.digest === d) } as unknown as ReleaseStore
  const listed: Array<{ instanceId: string, cell: string, state: string }> = [{ instanceId: crashed.instanceId, cell: CELL, state: 'crashed' }]
  const replicas = { list: () => listed, spawn: async () => { await spawn(listed); return listed.at(-1) }, drain: async () => {} } as unknown as ReplicaSet
  const loop = new AutonomicLoop({ selfId: self, view, releases: store, replicas, clock, random: { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) }, canHost: () => true, hostGrant: async () => true, ...(announce !== undefined ? { announce: () => { announce(listed) } } : {}) })
  return { loop, clock }
}

describe('restarting a crashed replica', () => {
  it('starts one replacement per crash, not one per backoff period while the tombstone lasts', async () => {
    // Each spawn adds a starting replica; the heartbeat is asked for as the spawn starts, with the new replica already listed.
    let spawned = 0
    const announced: number[] = []
    const { loop, clock } = await loopRestartingACrash(async (listed) => { spawned++; listed.push({ instanceId: `new-${spawned}`, cell: CELL, state: 'starting' }) }, (listed) => { announced.push(listed.filter(r => r.state === 'starting').length) })
    const notices: LoopNotice[] = []
    loop.addEventListener('notice', (evt) => { notices.push((evt as CustomEvent<LoopNotice>).detail) })
    for (let i = 0; i < 5; i++) {
      await loop.tick()
      clock.advance(2_000)
    }
    expect(spawned).toBe(1)
    expect(loop.counters.spawns).toBe(1)
    expect(announced).toEqual([1])
    // `cell up` prints it: which replica started and why, once.
    expect(notices).toEqual([{ kind: 'restarted', cell: CELL, text: 'restarted new-1: replica versioned-1.1.0-dead of 1.1.0 crashed 5000 ms ago (crash 1 here; back-off 1000 ms)' }])
  })
})

describe('a spawn that fails', () => {
  it('is logged as one line when the error is a named one of ours, with its stack when it is a bug', () => {
    // On the old code each retry of a claim hand-over printed the error's 11-line stack.
    const quorum = new ClaimQuorumError('renew ledger/0: no majority after 6 rounds (accept: 0 of 3 yes; …9V4WkD rejected: lease-held by …xTBzSy; …xTBzSy failed: ConnectionClosedError)')
    expect(spawnFailureText(quorum)).toBe('ClaimQuorumError: renew ledger/0: no majority after 6 rounds (accept: 0 of 3 yes; …9V4WkD rejected: lease-held by …xTBzSy; …xTBzSy failed: ConnectionClosedError)')
    const bug = new TypeError("Cannot read properties of undefined (reading 'epoch')")
    expect(spawnFailureText(bug)).toMatch(/^TypeError: Cannot read properties of undefined \(reading 'epoch'\)\n\s+at /)
    expect(spawnFailureText('thrown string')).toBe('thrown string')
  })

  it('is kept as that cell\'s last error (for `cell status <cell>`), not as the loop\'s, and the cells kept are bounded', async () => {
    const { loop, clock } = await loopRestartingACrash(async () => { throw new Error('test: disk full') })
    for (let i = 0; i < MAX_CELL_ERRORS + 10; i++) loop.cellErrors.set(`other-${i}`, { atMs: 0, message: 'old' })
    const notices: LoopNotice[] = []
    loop.addEventListener('notice', (evt) => { notices.push((evt as CustomEvent<LoopNotice>).detail) })
    await loop.tick()
    expect(loop.counters.failures).toBeGreaterThan(0)
    expect(notices).toEqual([])
    expect(loop.cellErrors.get(CELL)).toEqual({ atMs: clock.now(), message: `spawn ${CELL}@1.1.0: Error: test: disk full` })
    expect(loop.lastTickError).toBeUndefined()
    expect(loop.lastError?.message).toMatch(/test: disk full/)
    // The newest is kept when the map is full; the oldest other cell goes.
    expect(loop.cellErrors.size).toBe(MAX_CELL_ERRORS)
    expect([...loop.cellErrors.keys()].at(-1)).toBe(CELL)
    expect(loop.cellErrors.has('other-0')).toBe(false)
  })
})

describe('a spawn another node\'s claims decline', () => {
  it('is counted as declined, not as a failure, and still shown as that cell\'s last error', async () => {
    const { loop } = await loopRestartingACrash(async () => { throw new ClaimsHeldError(`${CELL}/0 is held by …abcdef, which serves a replica of it after all; x not started`) })
    await loop.tick()
    expect(loop.counters.declined).toBe(1)
    expect(loop.counters.failures).toBe(0)
    expect(loop.lastError).toBeUndefined()
    expect(loop.cellDeclines.get(CELL)?.message).toMatch(/^spawn versioned@1\.1\.0: ClaimsHeldError: .* is held by …abcdef/)
    expect(loop.cellErrors.has(CELL)).toBe(false)
  })

  it('so is one left to the nodes that know the claim\'s voters (ClaimVotersUnknownError)', async () => {
    const { loop } = await loopRestartingACrash(async () => { throw new ClaimVotersUnknownError(`${CELL}/0 exists (the fleet holds snapshots of it) but this node neither held it nor votes on it`) })
    await loop.tick()
    expect(loop.counters.declined).toBe(1)
    expect(loop.counters.failures).toBe(0)
    expect(loop.lastError).toBeUndefined()
    expect(loop.cellDeclines.get(CELL)?.message).toMatch(/^spawn versioned@1\.1\.0: Claim\w+Error: /)
    expect(loop.cellErrors.has(CELL)).toBe(false)
  })

  it('so is one left to its former owner for a while (ClaimOwnerAwaitedError)', async () => {
    const { loop } = await loopRestartingACrash(async () => { throw new ClaimOwnerAwaitedError(`${CELL}/0 was last owned by …abcdef (epoch 3), whose lease ran out without a hand-over`) })
    await loop.tick()
    expect(loop.counters.declined).toBe(1)
    expect(loop.counters.failures).toBe(0)
    expect(loop.lastError).toBeUndefined()
    expect(loop.cellDeclines.get(CELL)?.message).toMatch(/^spawn versioned@1\.1\.0: Claim\w+Error: /)
    expect(loop.cellErrors.has(CELL)).toBe(false)
  })
})

describe('eligible hosts', () => {
  it('come from verified host grants for the cell, and a strict-requiring cell only counts nodes advertising a strict sandbox', async () => {
    const clock = new ManualClock(Date.now())
    const key = await generateAuthority()
    const id = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const grant = async (subject: string, roles: Array<'host' | 'caller'>): Promise<Uint8Array> =>
      encodeCertificate(await issueGrant(key, { subject, roles, notBeforeMs: clock.now() - 1000, notAfterMs: clock.now() + 86_400_000 }))
    const [strict, weak, caller, tagsOnly] = [await id(), await id(), await id(), await id()]
    const nodes = [
      makeNodeRecord(strict, { roles: ['full', 'sandbox-strict'], grants: [await grant(strict, ['host'])] }),
      makeNodeRecord(weak, { roles: ['full', 'sandbox-process'], grants: [await grant(weak, ['host'])] }),
      makeNodeRecord(caller, { roles: ['full', 'sandbox-strict'], grants: [await grant(caller, ['caller'])] }),
      // Claims to trust the authority in its role tags, holds no grant.
      makeNodeRecord(tagsOnly, { roles: ['full', 'sandbox-strict', `trust-${key.id.slice(0, 16)}`] })
    ]
    const releases = [{ ...v1, authority: key.id, manifest: { biology: policy(1), sandbox: { require: 'strict' } } as unknown as Manifest }]
    const fleet = { nodes: () => nodes, instances: () => [], desired: () => undefined, retired: () => undefined, releaseOf: () => undefined, claimants: () => [key.id], node: () => undefined } as unknown as FleetView
    const store = { cells: () => [CELL], releases: () => releases, byDigest: (_: string, d: string) => releases.find(r => r.digest === d) } as unknown as ReleaseStore
    const replicas = { list: () => [], spawn: async () => {}, drain: async () => {} } as unknown as ReplicaSet
    const { levelOfRoles, satisfiesSandbox } = await import('./capsid/index.ts')
    const loop = new AutonomicLoop({
      selfId: await id(), view: fleet, releases: store, replicas, clock, random: { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) },
      canHost: () => false, hostGrant: hostGrantCheck(clock),
      nodeSuits: (node, release) => satisfiesSandbox(levelOfRoles(node.roles), release.manifest.sandbox.require)
    })
    await loop.tick()
    const eligible = loop.biologyView(CELL).nodes.filter(n => n.trustsAuthorities.length > 0).map(n => n.id)
    expect(eligible).toEqual([strict])
  })
})

describe('replicas out of sight', () => {
  /** A loop whose view shows `nodes()` and `instances()` as the test sets them. */
  function loopOver (clock: ManualClock): { loop: AutonomicLoop, show: (nodes: NodeRecord[], instances: InstanceRecord[]) => void } {
    let shown: { nodes: NodeRecord[], instances: InstanceRecord[] } = { nodes: [], instances: [] }
    const view = { nodes: () => shown.nodes, instances: () => shown.instances, instanceTtlMs: 3000 } as unknown as FleetView
    const store = { cells: () => [], releases: () => [] } as unknown as ReleaseStore
    const replicas = { list: () => [] } as unknown as ReplicaSet
    const loop = new AutonomicLoop({ selfId: 'self', view, releases: store, replicas, clock, random: { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) }, canHost: () => false, hostGrant: hostGrantCheck(clock), tickMs: 1000 })
    return { loop, show: (nodes, instances) => { shown = { nodes, instances } } }
  }
  const full = (id: string): NodeRecord => makeNodeRecord(id, { roles: ['full'] })
  const fleet = ['self', 'n2', 'n3', 'n4', 'n5'].map(full)
  const replica = makeInstanceRecord('n5', { cell: CELL, instanceId: 'r5' })

  it('still counts a replica whose record expired just before its node was cut off', () => {
    const clock = new ManualClock(1_000_000)
    const { loop, show } = loopOver(clock)
    show(fleet, [replica])
    expect(loop.membership()).toEqual({ live: 5, known: 5 })
    expect(loop.outOfSight(CELL)).toBe(0)
    // The instance record expired a moment before n5's node record (they arrive apart)...
    clock.advance(1000)
    show(fleet, [])
    loop.membership()
    // ...then n5 is out of sight: its replica may still run behind the partition.
    clock.advance(1000)
    show(fleet.slice(0, 4), [])
    expect(loop.membership()).toEqual({ live: 4, known: 5 })
    expect(loop.outOfSight(CELL)).toBe(1)
  })

  it('forgets a replica its node stopped while still in sight', () => {
    const clock = new ManualClock(1_000_000)
    const { loop, show } = loopOver(clock)
    show(fleet, [replica])
    loop.membership()
    // n5 drained its replica and kept heartbeating for longer than an instance record lives.
    show(fleet, [])
    for (let i = 0; i < 5; i++) { clock.advance(1000); loop.membership() }
    clock.advance(1000)
    show(fleet.slice(0, 4), [])
    loop.membership()
    expect(loop.outOfSight(CELL)).toBe(0)
  })
})

describe('the minority check under heartbeat liveness', () => {
  // Five full nodes; at the cut, n3, n4 and n5 (the replica's node) were last heard a moment apart.
  // When n5's record expires (3 s), n3 and n4 are still in view, silent for over half the node TTL.
  function loopHearing (clock: ManualClock, heard: Map<string, number>, liveness: 'heartbeat' | 'members'): AutonomicLoop {
    const view = {
      liveness,
      nodeTtlMs: 3000,
      instanceTtlMs: 3000,
      nodes: (nowMs: number) => ['self', 'n2', 'n3', 'n4', 'n5'].filter(id => nowMs - heard.get(id)! < 3000).map(id => makeNodeRecord(id, { roles: ['full'] })),
      instances: () => [],
      lastSeenMs: (_kind: string, id: string) => heard.get(id)
    } as unknown as FleetView
    const store = { cells: () => [], releases: () => [] } as unknown as ReleaseStore
    const replicas = { list: () => [] } as unknown as ReplicaSet
    return new AutonomicLoop({ selfId: 'self', view, releases: store, replicas, clock, random: { next: () => 0.99, bytes: (n: number) => new Uint8Array(n) }, canHost: () => false, hostGrant: hostGrantCheck(clock), tickMs: 1000 })
  }

  it('counts only nodes heard within half the node TTL as live, so a minority side is one while the cut-off nodes leave its view', () => {
    const clock = new ManualClock(1_000_000)
    const heard = new Map(['self', 'n2', 'n3', 'n4', 'n5'].map(id => [id, clock.now()]))
    const loop = loopHearing(clock, heard, 'heartbeat')
    expect(loop.membership()).toEqual({ live: 5, known: 5 })
    // The cut: n5 was last heard at t, n3 at t + 400 ms, n4 at t + 800 ms; self and n2 keep hearing each other.
    heard.set('n3', clock.now() + 400)
    heard.set('n4', clock.now() + 800)
    clock.advance(3000)
    heard.set('self', clock.now())
    heard.set('n2', clock.now())
    // n5 has left the view, n3 and n4 have not; they are silent for 2.6 and 2.2 s.
    expect(loop.membership()).toEqual({ live: 2, known: 5 })
  })

  it('counts a node whose heartbeat is less than half the TTL late, and ignores the ages under members liveness', () => {
    const clock = new ManualClock(1_000_000)
    const heard = new Map(['self', 'n2', 'n3', 'n4', 'n5'].map(id => [id, clock.now()]))
    const heartbeat = loopHearing(clock, heard, 'heartbeat')
    const members = loopHearing(clock, heard, 'members')
    clock.advance(1400)
    heard.set('self', clock.now())
    expect(heartbeat.membership()).toEqual({ live: 5, known: 5 })
    clock.advance(200)
    heard.set('self', clock.now())
    expect(heartbeat.membership()).toEqual({ live: 1, known: 5 })
    expect(members.membership()).toEqual({ live: 5, known: 5 })
  })
})

describe('per-cell following', () => {
  /** A loop on `self` among `ids` (all eligible, none hosting) with following on, `candidates` per cell. */
  function loopAmong (self: string, ids: string[], clock: ManualClock, candidates: number, onFollowChange: () => void, instances: InstanceRecord[] = []): AutonomicLoop {
    const nodes = ids.map(id => makeNodeRecord(id, { roles: ['full'] }))
    const view = { nodes: () => nodes, instances: () => instances, hostsOf: () => [], desired: () => undefined, retired: () => undefined, releaseOf: () => undefined, claimants: () => [AUTHORITY], node: () => undefined } as unknown as FleetView
    const store = { cells: () => [CELL], releases: () => [v1], byDigest: (_: string, d: string) => [v1].find(r => r.digest === d) } as unknown as ReleaseStore
    const replicas = { list: () => [], spawn: async () => {}, drain: async () => {} } as unknown as ReplicaSet
    return new AutonomicLoop({
      selfId: self, view, releases: store, replicas, clock, random: { next: () => 0.9, bytes: (n: number) => new Uint8Array(n) },
      canHost: () => true, hostGrant: async () => true, following: { candidates, joinMs: 1000, onFollowChange }
    })
  }
  const ids = Array.from({ length: 10 }, (_, i) => `node${i}`)
  const ranked = [...ids].sort((a, b) => rendezvous(CELL, b) - rendezvous(CELL, a))

  it('a standby candidate follows the cell and decides for it once it has followed it for joinMs', async () => {
    const clock = new ManualClock(1_000_000)
    let changes = 0
    const loop = loopAmong(ranked[1], ids, clock, 2, () => { changes++ })
    await loop.tick()
    expect(loop.follows(CELL)).toBe(true)
    expect(changes).toBe(1)
    expect(loop.lastReasons.get(CELL)).toEqual(['following: waiting for the cell\'s records'])
    expect(loop.counters.volunteers).toBe(0)
    clock.advance(1000)
    await loop.tick()
    expect(changes).toBe(1)
    // It counts the two candidates only, not all ten eligible nodes: p = deficit 2 / 2 = 1, so it
    // volunteers even with a draw of 0.9 (over all ten, p = 0.2 and that draw stays put).
    expect(loop.counters.volunteers).toBe(1)
  })

  it('a node that is neither host nor candidate neither follows nor decides', async () => {
    const clock = new ManualClock(1_000_000)
    let changes = 0
    const loop = loopAmong(ranked[5], ids, clock, 2, () => { changes++ })
    for (let i = 0; i < 3; i++) { await loop.tick(); clock.advance(1000) }
    expect(loop.follows(CELL)).toBe(false)
    expect(changes).toBe(0)
    expect(loop.counters.volunteers).toBe(0)
    expect(loop.lastReasons.get(CELL)).toEqual(['not following: neither a host nor a standby candidate'])
  })

  it('counts per-cell replicas stale only after 3 × their refreshMs', () => {
    const clock = new ManualClock(1_000_000)
    const slow = makeInstanceRecord('node1', { cell: CELL, instanceId: 'r1', refreshMs: 20_000 })
    expect(loopAmong(ranked[0], ids, clock, 2, () => {}, [slow]).cellParams(CELL)).toMatchObject({ heartbeatStaleMs: 60_000 })
    const fast = makeInstanceRecord('node1', { cell: CELL, instanceId: 'r1', refreshMs: 1_000 })
    expect(loopAmong(ranked[0], ids, clock, 2, () => {}, [fast]).cellParams(CELL)).toBeUndefined()
  })
})
