// FleetGossip in per-cell mode (docs/biology.md "Scale"), with a fake pubsub and a ManualClock:
// what is sent at once on a change and what waits for its refresh, following cells, the scoped
// validators of the members and cell topics, down reports and their refutation, node pulls.
import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { AbortOptions, PeerId, PrivateKey } from '@libp2p/interface'
import type { Message, TopicValidatorFn } from '@libp2p/gossipsub'
import { decodeFrame, encodeBundles, encodeEnvelope } from './codec.ts'
import type { FleetEnvelope } from './codec.ts'
import { FLEET_TOPIC_SCORE } from './gossip-score.ts'
import { FleetGossip, FollowedCellsLimitError, DisseminationModeError, PER_CELL_DEFAULTS, cellRefreshMs, memberFields, memberLoadChanged, memberStructureChanged } from './gossip.ts'
import type { FleetGossipInit, FleetPubSub, LocalInstanceState, LocalNodeState, MemberFields } from './gossip.ts'
import { FLEET_RELEASE_TOPIC, FLEET_TOPIC, MEMBERS_TOPIC, cellTopic } from './records.ts'
import type { ReleaseFields } from './records.ts'
import { signRecord } from './sign.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord, makePinRecord, makeSnapshotRecord } from './testing.ts'
import type { SnapshotRecord } from './snapshots.ts'
import { narrowSnapshot } from './sync.ts'
import { FleetView } from './view.ts'
import type { ApplyOptions, ApplyResult, FleetViewInit } from './view.ts'

class FakePubSub implements FleetPubSub {
  readonly topics = new Set<string>()
  readonly published: Array<{ topic: string, data: Uint8Array }> = []
  readonly topicValidators = new Map<string, TopicValidatorFn>()
  readonly score = { params: { topics: {} as Record<string, unknown> } }
  subscribe (topic: string): void { this.topics.add(topic) }
  unsubscribe (topic: string): void { this.topics.delete(topic) }
  /** Set by a test to say which peers subscribe to a topic (gossipsub has it). */
  getSubscribers?: (topic: string) => unknown[]
  /** Peers each publish reaches (gossipsub's `recipients`). */
  recipients = 1
  async publish (topic: string, data: Uint8Array): Promise<unknown> {
    this.published.push({ topic, data })
    return { recipients: Array.from({ length: this.recipients }, (_, i) => `peer-${i}`) }
  }

  async deliver (topic: string, data: Uint8Array, from: PeerId): Promise<string> {
    const validator = this.topicValidators.get(topic)
    if (validator === undefined) throw new Error(`no validator on ${topic}`)
    const msg = { type: 'signed', from, topic, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey }
    return await validator(from, msg as Message)
  }

  /** Envelopes published on `topic` since index `from`. */
  envelopes (topic: string, from = 0): FleetEnvelope[] {
    return this.published.slice(from).filter(p => p.topic === topic).flatMap(p => decodeFrame(p.data).map(e => e.envelope))
  }
}

/**
 * A FleetView that accepts member and down records without checking them (FleetView's per-cell
 * liveness is another module's): enough to see what FleetGossip does with them.
 */
class MembersView extends FleetView {
  readonly downs: FleetEnvelope[] = []
  override async apply (envelope: FleetEnvelope, options: ApplyOptions = {}): Promise<ApplyResult> {
    if (envelope.kind === 'member') return { accepted: true, kind: 'member' }
    if (envelope.kind === 'down') {
      this.downs.push(envelope)
      this.dispatchEvent(new CustomEvent('change', { detail: { kind: 'down', op: 'upsert', key: envelope.record.subject, nodeId: envelope.record.subject } }))
      return { accepted: true, kind: 'down' }
    }
    return await super.apply(envelope, options)
  }
}

let self: PrivateKey, other: PrivateKey, otherId: PeerId, selfId: string
const verify = async (signed: Uint8Array): Promise<ReleaseFields> => JSON.parse(new TextDecoder().decode(signed).slice(3))
const releaseBytes = (cell: string, seq: number): Uint8Array => new TextEncoder().encode('ok:' + JSON.stringify({ cell, version: `1.${seq}`, digest: 'd'.repeat(64), authority: 'auth', seq }))

beforeAll(async () => {
  self = await generateKeyPair('Ed25519')
  other = await generateKeyPair('Ed25519')
  otherId = peerIdFromPrivateKey(other)
  selfId = peerIdFromPrivateKey(self).toString()
})

function localInstance (overrides: Partial<LocalInstanceState> = {}): LocalInstanceState {
  const { nodeId: _a, seq: _b, sentMs: _c, ...inst } = makeInstanceRecord(selfId, { startedMs: 1_700_000_000_000, ...overrides })
  return inst
}

function setup (init: Partial<FleetGossipInit> = {}, viewInit: Partial<FleetViewInit> = {}) {
  const clock = new ManualClock()
  const view = new MembersView({ clock, verifyRelease: verify, verifyDesired: verify, instanceTtlMs: 60_000, nodeTtlMs: 60_000, ...viewInit })
  const pubsub = new FakePubSub()
  const { nodeId: _a, seq: _b, sentMs: _c, ...node } = makeNodeRecord(selfId)
  const state = {
    node: node as LocalNodeState,
    instances: [localInstance({ instanceId: 'b-1', cell: 'billing' }), localInstance({ instanceId: 's-1', cell: 'search' })]
  }
  const pulls: string[] = []
  const gossip = new FleetGossip({
    pubsub,
    view,
    clock,
    privateKey: self,
    heartbeatMs: 1000,
    dissemination: 'per-cell',
    memberRefreshMs: 60_000,
    localNode: () => state.node,
    localInstances: () => state.instances,
    pullCell: async (cell) => { pulls.push(cell) },
    ...init
  })
  return { clock, view, pubsub, gossip, state, pulls }
}

async function nextHeartbeat (gossip: FleetGossip, clock: ManualClock, ms: number): Promise<void> {
  const done = new Promise<void>((resolve) => gossip.addEventListener('heartbeat', () => resolve(), { once: true }))
  clock.advance(ms)
  await done
}

/**
 * Moves the clock so that the next heartbeat runs exactly `atMs` after `startMs` (a jump runs the one
 * heartbeat already due, then the cadence restarts from the jump's end).
 */
async function heartbeatAt (gossip: FleetGossip, clock: ManualClock, startMs: number, atMs: number): Promise<void> {
  const gap = startMs + atMs - clock.now()
  if (gap !== 1000 && gap < 2000) throw new Error(`cannot reach ${atMs} from here (gap ${gap} ms)`)
  if (gap >= 2000) await nextHeartbeat(gossip, clock, gap - 1000)
  await nextHeartbeat(gossip, clock, 1000)
  expect(clock.now()).toBe(startMs + atMs)
}

/** Advances the clock heartbeat by heartbeat (1 s), waiting for each. */
async function heartbeats (gossip: FleetGossip, clock: ManualClock, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await nextHeartbeat(gossip, clock, 1000)
}

describe('per-cell publishing (pure parts)', () => {
  it('maps the node state to member fields: sorted distinct cells of running instances, bounded', () => {
    const { nodeId: _a, seq: _b, sentMs: _c, ...node } = makeNodeRecord('x', { capacity: { slots: 4, freeSlots: 1, cpuCores: 2, memoryBytes: 8, freeMemoryBytes: 4 } })
    const instances = [
      localInstance({ cell: 'search' }), localInstance({ cell: 'billing' }), localInstance({ cell: 'search' }),
      localInstance({ cell: 'ledger', state: 'crashed' }), localInstance({ cell: 'zeta', state: 'stopped' }), localInstance({ cell: 'alpha', state: 'draining' })
    ]
    expect(memberFields(node, instances, true)).toEqual({ slots: 4, freeSlots: 1, cpuPercent: 37.5, memoryPercent: 50, leaving: true, cells: ['alpha', 'billing', 'search'] })
    const many = Array.from({ length: 70 }, (_, i) => localInstance({ cell: `c${String(i).padStart(2, '0')}` }))
    expect(memberFields(node, many, false).cells).toHaveLength(64)
  })

  it('counts a member change only past 10 points of load (CPU per core), or any slot, cell or leaving change', () => {
    const base = { slots: 4, freeSlots: 1, cpuPercent: 100, memoryPercent: 50, leaving: false, cells: ['a'] }
    // Changed at all: in structure (sent at once) or in load past 10 points (rate-limited).
    const memberChanged = (prev: MemberFields, next: MemberFields, cores: number): boolean => memberStructureChanged(prev, next) || memberLoadChanged(prev, next, cores)
    expect(memberChanged(base, { ...base, cpuPercent: 139 }, 4)).toBe(false)
    expect(memberChanged(base, { ...base, cpuPercent: 141 }, 4)).toBe(true)
    expect(memberChanged(base, { ...base, memoryPercent: 59 }, 4)).toBe(false)
    expect(memberChanged(base, { ...base, memoryPercent: 61 }, 4)).toBe(true)
    expect(memberChanged(base, { ...base, freeSlots: 0 }, 4)).toBe(true)
    expect(memberChanged(base, { ...base, cells: ['a', 'b'] }, 4)).toBe(true)
    expect(memberChanged(base, { ...base, leaving: true }, 4)).toBe(true)
    // Load alone is a change of another class (sent at most once per memberLoadMinIntervalMs).
    expect(memberStructureChanged(base, { ...base, cpuPercent: 141, memoryPercent: 90 })).toBe(false)
    expect(memberLoadChanged(base, { ...base, cpuPercent: 141 }, 4)).toBe(true)
    expect(memberLoadChanged(base, { ...base, freeSlots: 0, leaving: true, cells: [] }, 4)).toBe(false)
    for (const patch of [{ slots: 5 }, { freeSlots: 0 }, { leaving: true }, { cells: ['b'] }]) expect(memberStructureChanged(base, { ...base, ...patch })).toBe(true)
  })

  it('refresh = max(5 s, hosts / 2 per s) by default, within the record bounds', () => {
    expect(cellRefreshMs(0)).toBe(5000)
    expect(cellRefreshMs(10)).toBe(5000)
    expect(cellRefreshMs(20)).toBe(10_000)
    expect(cellRefreshMs(1928)).toBe(964_000)
    expect(cellRefreshMs(10 ** 9)).toBe(3_600_000)
    expect(cellRefreshMs(50, 5000, 5)).toBe(10_000)
  })
})

describe('FleetGossip per-cell publishing', () => {
  it('starts with the node and member records on the members topic and each instance on its cell topic, with refreshMs', async () => {
    const { clock, pubsub, gossip, view } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.topics.has(FLEET_TOPIC)).toBe(false)
    expect([...pubsub.topics].sort()).toEqual([FLEET_RELEASE_TOPIC, MEMBERS_TOPIC, cellTopic('billing'), cellTopic('search')].sort())
    const members = pubsub.envelopes(MEMBERS_TOPIC)
    expect(members.map(e => e.kind)).toEqual(['node', 'member'])
    const [node, member] = members as [Extract<FleetEnvelope, { kind: 'node' }>, Extract<FleetEnvelope, { kind: 'member' }>]
    expect(member.record).toMatchObject({ nodeId: selfId, nodeSeq: node.record.seq, slots: 8, freeSlots: 6, leaving: false, cells: ['billing', 'search'] })
    expect(member.record.seq).toBeGreaterThan(node.record.seq)
    for (const cell of ['billing', 'search']) {
      const [inst] = pubsub.envelopes(cellTopic(cell)) as Array<Extract<FleetEnvelope, { kind: 'instance' }>>
      expect(inst.record).toMatchObject({ cell, nodeId: selfId, refreshMs: 5000 })
    }
    expect(view.liveInstances('billing')).toHaveLength(1)
    expect(gossip.stats().sent).toEqual({ node: 1, member: 1, instance: 2, down: 0 })
    expect(gossip.stats().bytes.out.fleet).toBe(0)
    expect(gossip.stats().bytes.out.members).toBe(pubsub.published.filter(p => p.topic === MEMBERS_TOPIC).reduce((n, p) => n + p.data.length, 0))
    expect(gossip.stats().bytes.out.cells).toBeGreaterThan(0)
    gossip.stop()
  })

  it('sends nothing while nothing changes, then each instance when its refresh is due', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const after = pubsub.published.length
    await heartbeats(gossip, clock, 3)
    expect(pubsub.published.length).toBe(after)
    expect(gossip.stats().ticks).toBe(4)
    // The 5 s promise is kept at the heartbeat from which one more would be late: 4 s after the send.
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(cellTopic('billing'), after)).toHaveLength(1)
    expect(pubsub.envelopes(cellTopic('search'), after)).toHaveLength(1)
    expect(pubsub.envelopes(MEMBERS_TOPIC, after)).toHaveLength(0)
    gossip.stop()
  })

  it('a bigger cell refreshes more slowly: hosts / 2 per s', async () => {
    const { clock, pubsub, gossip, view } = setup()
    const oid = otherId.toString()
    for (let i = 0; i < 49; i++) {
      await view.apply(await signRecord(other, 'instance', makeInstanceRecord(oid, { instanceId: `o-${i}`, cell: 'billing', sentMs: clock.now() })), { from: oid })
    }
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const [first] = pubsub.envelopes(cellTopic('billing')) as Array<Extract<FleetEnvelope, { kind: 'instance' }>>
    // 49 + this node's own instance = 50 hosts: 25 s.
    expect(first.record.refreshMs).toBe(25_000)
    const after = pubsub.published.length
    await heartbeats(gossip, clock, 23)
    expect(pubsub.envelopes(cellTopic('billing'), after)).toHaveLength(0)
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(cellTopic('billing'), after)).toHaveLength(1)
    gossip.stop()
  })

  it('sends a changed instance at once: state, readiness, end, claim, exit report, or CPU past 10 points', async () => {
    const { clock, pubsub, gossip, state } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const sentOf = (from: number): string[] => (pubsub.envelopes(cellTopic('billing'), from) as Array<Extract<FleetEnvelope, { kind: 'instance' }>>).map(e => e.record.state)
    const change = async (patch: Partial<LocalInstanceState>): Promise<string[]> => {
      const from = pubsub.published.length
      state.instances[0] = { ...state.instances[0], ...patch }
      // soon(): announced now, not at the next heartbeat.
      gossip.soon()
      await nextHeartbeat(gossip, clock, 0)
      return sentOf(from)
    }
    expect(await change({ cpuPercent: 12.5 + 10 })).toEqual([])
    expect(await change({ cpuPercent: 12.5 + 10.5 })).toEqual(['ready'])
    expect(await change({ state: 'draining' })).toEqual(['draining'])
    expect(await change({ readyMs: 1_700_000_000_100 })).toEqual(['draining'])
    expect(await change({ claim: { ordinal: 0, epoch: 2 } })).toEqual(['draining'])
    expect(await change({ state: 'crashed', endedMs: 1_700_000_001_000, exitReason: 'exit 1' })).toEqual(['crashed'])
    expect(await change({ qps: 999, p99Ms: 1, inflight: 7 })).toEqual([])
    // Other cells are not resent.
    expect(pubsub.envelopes(cellTopic('search'))).toHaveLength(1)
    gossip.stop()
  })

  it('a crashed instance leaves the member record\'s cells; a vanished one is forgotten (sent at once if it comes back)', async () => {
    const { clock, pubsub, gossip, state } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    let from = pubsub.published.length
    state.instances[1] = { ...state.instances[1], state: 'crashed', endedMs: clock.now() }
    await heartbeats(gossip, clock, 1)
    const members = pubsub.envelopes(MEMBERS_TOPIC, from)
    expect(members.map(e => e.kind)).toEqual(['member'])
    expect((members[0] as Extract<FleetEnvelope, { kind: 'member' }>).record.cells).toEqual(['billing'])
    const search = state.instances.pop()!
    await heartbeats(gossip, clock, 1)
    from = pubsub.published.length
    state.instances.push(search)
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(cellTopic('search'), from)).toHaveLength(1)
    gossip.stop()
  })

  it('sends a new full node record when addrs, roles, grants, halts or slots change; member records on slots, free slots and leaving at once', async () => {
    let leaving = false
    const { clock, pubsub, gossip, state } = setup({ localLeaving: () => leaving })
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const kinds = async (mutate: () => void): Promise<string[]> => {
      const from = pubsub.published.length
      mutate()
      await heartbeats(gossip, clock, 1)
      return pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)
    }
    expect(await kinds(() => { state.node = { ...state.node, capacity: { ...state.node.capacity, freeSlots: 5 } } })).toEqual(['member'])
    expect(await kinds(() => { leaving = true })).toEqual(['member'])
    // Mutated in place: still seen as a change, since what was sent is kept as a copy.
    expect(await kinds(() => { state.node.addrs.push('/ip4/127.0.0.1/tcp/4002') })).toEqual(['node', 'member'])
    expect(await kinds(() => { state.node = { ...state.node, roles: ['host', 'full'] } })).toEqual(['node', 'member'])
    expect(await kinds(() => { state.node = { ...state.node, grants: [new Uint8Array([1, 2, 3])] } })).toEqual(['node', 'member'])
    expect(await kinds(() => { state.node = { ...state.node, grants: [new Uint8Array([1, 2, 3])] } })).toEqual([])
    expect(await kinds(() => { state.node = { ...state.node, halts: [{ cell: 'billing', version: '2', digest: 'd'.repeat(64), atMs: clock.now(), reason: 'crash loop' }] } })).toEqual(['node', 'member'])
    expect(await kinds(() => { state.node = { ...state.node, capacity: { ...state.node.capacity, slots: 9 } } })).toEqual(['node', 'member'])
    gossip.stop()
  })

  it('a change of prepared alone sends nothing: it rides along with the next node record sent for another reason', async () => {
    const { clock, pubsub, gossip, state } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const from = pubsub.published.length
    const prepared = [{ cell: 'billing', version: '2', digest: 'd', state: 'preparing' as const }]
    state.node = { ...state.node, prepared }
    await heartbeats(gossip, clock, 5)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from)).toEqual([])
    state.node = { ...state.node, addrs: [...state.node.addrs, '/ip4/127.0.0.1/tcp/4003'] }
    await heartbeats(gossip, clock, 1)
    const [node] = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'node' }>>
    expect(node.kind).toBe('node')
    expect(node.record.prepared).toEqual(prepared)
    gossip.stop()
  })

  it('a load-only change waits memberLoadMinIntervalMs (here 10 min; default 1 h) after the last member record; a slot change does not', async () => {
    expect(PER_CELL_DEFAULTS.memberLoadMinIntervalMs).toBe(3_600_000)
    const { clock, pubsub, gossip, state } = setup({ memberRefreshMs: 3_600_000, memberLoadMinIntervalMs: 600_000 })
    const start = clock.now()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const membersFrom = (from: number): string[] => pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)
    let from = pubsub.published.length
    // 4 cores: CPU must move by more than 40 points.
    state.node = { ...state.node, load: { cpuPercent: 37.5 + 41, memoryPercent: 50 } }
    await heartbeats(gossip, clock, 10)
    expect(membersFrom(from)).toEqual([])
    await heartbeatAt(gossip, clock, start, 599_000)
    expect(membersFrom(from)).toEqual([])
    await heartbeatAt(gossip, clock, start, 600_000)
    const [member] = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'member' }>>
    expect(member.record.cpuPercent).toBe(37.5 + 41)
    expect(membersFrom(from)).toEqual(['member'])
    // Memory moves now (a load change again): waits; free slots change: at once, carrying the new load too.
    from = pubsub.published.length
    state.node = { ...state.node, load: { cpuPercent: 37.5 + 41, memoryPercent: 80 } }
    await heartbeats(gossip, clock, 3)
    expect(membersFrom(from)).toEqual([])
    state.node = { ...state.node, capacity: { ...state.node.capacity, freeSlots: 5 } }
    await heartbeats(gossip, clock, 1)
    const [next] = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'member' }>>
    expect(next.record).toMatchObject({ freeSlots: 5, memoryPercent: 80 })
    expect(membersFrom(from)).toEqual(['member'])
    gossip.stop()
  })

  it('defaults: member records every 6 h, the node record only before views would refuse it as too old (memberTtlMs 18 h: every 12 h)', async () => {
    expect(PER_CELL_DEFAULTS.memberTtlMs).toBe(18 * 3_600_000)
    const { clock, pubsub, gossip } = setup({ memberRefreshMs: undefined }, { liveness: 'members', memberTtlMs: PER_CELL_DEFAULTS.memberTtlMs })
    expect(gossip.memberRefreshMs).toBe(6 * 3_600_000)
    expect(gossip.nodeRefreshMs).toBe(12 * 3_600_000)
    const start = clock.now()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const kindsUntil = async (atMs: number): Promise<string[]> => {
      const from = pubsub.published.length
      await heartbeatAt(gossip, clock, start, atMs)
      return pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)
    }
    const hour = 3_600_000
    // A refresh is sent at the heartbeat from which waiting one more would break it.
    expect(await kindsUntil(6 * hour - 2000)).toEqual([])
    expect(await kindsUntil(6 * hour - 1000)).toEqual(['member'])
    expect(await kindsUntil(12 * hour - 3000)).toEqual([])
    // The member record's next refresh (6 h after the last, sent 1 s early) ...
    expect(await kindsUntil(12 * hour - 2000)).toEqual(['member'])
    // ... and the node record, 12 h after the first, which brings a member record with it.
    expect(await kindsUntil(12 * hour - 1000)).toEqual(['node', 'member'])
    expect(await kindsUntil(18 * hour - 3000)).toEqual([])
    gossip.stop()
  })

  it('member refresh is capped at a third of the view\'s memberTtlMs (the view\'s default 3 h: 1 h, node record 2 h); a heartbeat view caps nothing', () => {
    const capped = setup({ memberRefreshMs: undefined }, { liveness: 'members' }).gossip
    expect(capped.memberRefreshMs).toBe(3_600_000)
    expect(capped.nodeRefreshMs).toBe(2 * 3_600_000)
    expect(setup({ memberRefreshMs: 600_000 }, { liveness: 'members' }).gossip.memberRefreshMs).toBe(600_000)
    expect(setup({ memberRefreshMs: undefined }).gossip.memberRefreshMs).toBe(6 * 3_600_000)
  })

  it('a node, member or down record that reached no peer is published again at every heartbeat until one reaches a peer; only the newest of each kind', async () => {
    const { clock, pubsub, gossip, state } = setup()
    pubsub.recipients = 0
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const first = pubsub.envelopes(MEMBERS_TOPIC)
    expect(first.map(e => e.kind)).toEqual(['node', 'member'])
    // Reached nobody: the same signed records again (nothing new signed), at every heartbeat.
    let from = pubsub.published.length
    await heartbeats(gossip, clock, 2)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from)).toEqual([...first, ...first])
    expect(gossip.stats().sent).toMatchObject({ node: 1, member: 1 })
    expect(gossip.stats().republished).toBe(4)
    // Instances are not retried for lack of recipients (a cell may have no follower): only on their refresh.
    expect(pubsub.envelopes(cellTopic('billing'))).toHaveLength(1)
    // A newer member record replaces the pending one; the pending node record goes with it.
    state.node = { ...state.node, capacity: { ...state.node.capacity, freeSlots: 5 } }
    from = pubsub.published.length
    await heartbeats(gossip, clock, 1)
    const second = pubsub.envelopes(MEMBERS_TOPIC, from)
    expect(second.map(e => e.kind)).toEqual(['node', 'member'])
    expect(second[0]).toEqual(first[0])
    expect((second[1] as Extract<FleetEnvelope, { kind: 'member' }>).record.freeSlots).toBe(5)
    // A down report that reached nobody joins them.
    await gossip.reportDown(otherId.toString(), 7)
    from = pubsub.published.length
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)).toEqual(['node', 'member', 'down'])
    // While gossipsub knows no subscriber of the topic, nothing is tried.
    let subscribers: unknown[] = []
    pubsub.getSubscribers = () => subscribers
    from = pubsub.published.length
    await heartbeats(gossip, clock, 2)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from)).toEqual([])
    // A peer appears and takes them: sent once more, then nothing until something changes.
    subscribers = [otherId]
    pubsub.recipients = 1
    from = pubsub.published.length
    await heartbeats(gossip, clock, 3)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)).toEqual(['node', 'member', 'down'])
    expect(gossip.stats().publishFailures).toBe(0)
    gossip.stop()
  })

  it('an instance none of its cell\'s known followers took is sent again at the next heartbeats, at most 10 in a row; a cell without followers is not', async () => {
    const { clock, pubsub, gossip, state } = setup()
    pubsub.recipients = 0
    pubsub.getSubscribers = (topic) => topic === cellTopic('billing') ? [otherId] : []
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const billing = (from: number): number => pubsub.envelopes(cellTopic('billing'), from).length
    expect(billing(0)).toBe(1)
    const from = pubsub.published.length
    await heartbeats(gossip, clock, 12)
    // Re-signed each time (a new seq), 10 times, then only its refresh (5 s) goes on.
    const resent = pubsub.envelopes(cellTopic('billing'), from) as Array<Extract<FleetEnvelope, { kind: 'instance' }>>
    expect(resent).toHaveLength(10)
    expect(new Set(resent.map(e => e.record.seq)).size).toBe(10)
    // search has no known follower: only its refreshes (every 4 s: sent a heartbeat early).
    expect(pubsub.envelopes(cellTopic('search'), from)).toHaveLength(3)
    // A follower takes it: a change goes once, then nothing until its refresh.
    pubsub.recipients = 1
    state.instances[0] = { ...state.instances[0], state: 'draining' }
    const next = pubsub.published.length
    await heartbeats(gossip, clock, 3)
    expect(billing(next)).toBe(1)
    gossip.stop()
  })

  it('keeps at most 16 unsent down reports, the newest per subject', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    pubsub.recipients = 0
    const subjects = await Promise.all(Array.from({ length: 18 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
    for (const subject of subjects) await gossip.reportDown(subject, 1)
    await gossip.reportDown(subjects[17], 2)
    const from = pubsub.published.length
    await heartbeats(gossip, clock, 1)
    const downs = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'down' }>>
    expect(downs.map(d => `${d.record.subject}@${d.record.subjectSeq}`)).toEqual([...subjects.slice(2, 17).map(s => `${s}@1`), `${subjects[17]}@2`])
    gossip.stop()
  })

  it('sends again at the next heartbeat what gossipsub failed to take; one badly reported instance does not silence the others', async () => {
    const { clock, pubsub, gossip, state } = setup()
    let failing = true
    const real = pubsub.publish.bind(pubsub)
    pubsub.publish = async (topic: string, data: Uint8Array) => {
      if (failing) throw new Error('stream reset')
      return await real(topic, data)
    }
    state.instances.push(localInstance({ instanceId: 'bad', cell: 'billing', cpuPercent: -1 }))
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published).toHaveLength(0)
    expect(gossip.stats()).toMatchObject({ publishFailures: 3, skippedInstances: 1 })
    failing = false
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(MEMBERS_TOPIC).map(e => e.kind)).toEqual(['node', 'member'])
    expect(pubsub.envelopes(cellTopic('billing'))).toHaveLength(1)
    expect(pubsub.envelopes(cellTopic('search'))).toHaveLength(1)
    const from = pubsub.published.length
    await heartbeats(gossip, clock, 1)
    expect(pubsub.published.length).toBe(from)
    gossip.stop()
  })

  it('publishes at most maxLocalInstances instances per heartbeat and counts the rest', async () => {
    const { clock, pubsub, gossip, state } = setup({ maxLocalInstances: 3 })
    state.instances = Array.from({ length: 5 }, (_, i) => localInstance({ instanceId: `b-${i}`, cell: 'billing' }))
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.envelopes(cellTopic('billing'))).toHaveLength(3)
    expect(gossip.stats().skippedInstances).toBe(2)
    gossip.stop()
  })

  it('stop() leaves every topic and validator; a restart sends everything again', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    gossip.follow('ledger')
    gossip.stop()
    expect(pubsub.topics.size).toBe(0)
    expect(pubsub.topicValidators.size).toBe(0)
    expect(Object.keys(pubsub.score.params.topics)).toEqual([])
    const from = pubsub.published.length
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.envelopes(MEMBERS_TOPIC, from).map(e => e.kind)).toEqual(['node', 'member'])
    expect(gossip.followed()).toEqual(['billing', 'ledger', 'search'])
    gossip.stop()
  })
})

describe('FleetGossip per-cell following', () => {
  it('follows hosted cells and cells with a release, plus explicit follows; pulls each once as it starts; bounded', async () => {
    const { clock, pubsub, gossip, pulls } = setup({ maxFollowedCells: 4 })
    gossip.follow('ledger')
    expect(gossip.followed()).toEqual([])
    gossip.start()
    // At once: the explicit follow and the hosted cells.
    expect(gossip.followed()).toEqual(['billing', 'ledger', 'search'])
    await nextHeartbeat(gossip, clock, 0)
    expect(gossip.followed()).toEqual(['billing', 'ledger', 'search'])
    expect(pulls.sort()).toEqual(['billing', 'ledger', 'search'])
    for (const cell of gossip.followed()) {
      expect(pubsub.topicValidators.has(cellTopic(cell))).toBe(true)
      expect(pubsub.score.params.topics[cellTopic(cell)]).toEqual(FLEET_TOPIC_SCORE)
    }
    // A release arriving for a new cell is followed at once, not at the next heartbeat.
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes('mail', 3) }), otherId)).toBe('accept')
    expect(gossip.followed()).toEqual(['billing', 'ledger', 'mail', 'search'])
    expect(() => { gossip.follow('extra') }).toThrow(FollowedCellsLimitError)
    gossip.follow('mail')
    // Unfollowing a cell that is also followed automatically keeps it; an explicit-only one goes.
    gossip.unfollow('mail')
    expect(gossip.followed()).toContain('mail')
    gossip.unfollow('ledger')
    expect(gossip.followed()).toEqual(['billing', 'mail', 'search'])
    expect(pubsub.topics.has(cellTopic('ledger'))).toBe(false)
    expect(pubsub.topicValidators.has(cellTopic('ledger'))).toBe(false)
    expect(pubsub.score.params.topics[cellTopic('ledger')]).toBeUndefined()
    gossip.follow('ledger')
    expect(pulls.filter(c => c === 'ledger')).toHaveLength(2)
    expect(gossip.stats().followed).toBe(4)
    // Automatic cells past the bound are counted, not followed.
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes('news', 3) }), otherId)).toBe('accept')
    expect(gossip.followed()).not.toContain('news')
    expect(gossip.stats().followOverflow).toBeGreaterThan(0)
    expect(() => { gossip.follow('bad name') }).toThrow()
    gossip.stop()
  })

  it('followPolicy narrows the automatic follows (hosted and explicit cells stay); refollow() asks again, joins and leaves', async () => {
    const wanted = new Set(['ledger'])
    const asked: string[] = []
    const { clock, pubsub, gossip, pulls } = setup({ followPolicy: (cell) => { asked.push(cell); return wanted.has(cell) } })
    gossip.follow('audit')
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    for (const cell of ['ledger', 'orders', 'billing']) {
      expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes(cell, 3) }), otherId)).toBe('accept')
    }
    // billing is hosted: followed whatever the policy says; orders is not wanted.
    expect(gossip.followed()).toEqual(['audit', 'billing', 'ledger', 'search'])
    await heartbeats(gossip, clock, 3)
    expect(gossip.followed()).toEqual(['audit', 'billing', 'ledger', 'search'])
    // Asked once per cell, not at every heartbeat.
    expect(asked.sort()).toEqual(['billing', 'ledger', 'orders'])
    expect(pulls.sort()).toEqual(['audit', 'billing', 'ledger', 'search'])

    // The policy changes its mind: refollow() joins orders (and pulls it), leaves ledger, keeps the rest.
    wanted.delete('ledger')
    wanted.add('orders')
    gossip.refollow()
    expect(gossip.followed()).toEqual(['audit', 'billing', 'orders', 'search'])
    expect(asked.filter(c => c === 'orders')).toHaveLength(2)
    expect(pulls.filter(c => c === 'orders')).toHaveLength(1)
    expect(pubsub.topics.has(cellTopic('ledger'))).toBe(false)
    expect(pubsub.topicValidators.has(cellTopic('ledger'))).toBe(false)
    expect(pubsub.topics.has(cellTopic('orders'))).toBe(true)
    // An explicit follow outlives the policy; unfollow() then leaves it.
    gossip.unfollow('audit')
    expect(gossip.followed()).toEqual(['billing', 'orders', 'search'])
    gossip.stop()
  })

  it('without followPolicy every cell with a release is followed; refollow() is a no-op in fleet mode and before start', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.refollow()
    expect(gossip.followed()).toEqual([])
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes('orders', 3) }), otherId)).toBe('accept')
    gossip.refollow()
    expect(gossip.followed()).toEqual(['billing', 'orders', 'search'])
    gossip.stop()
    const fleet = setup({ dissemination: 'fleet', followPolicy: () => { throw new Error('not asked in fleet mode') } }).gossip
    fleet.start()
    fleet.refollow()
    expect(fleet.followed()).toEqual([])
    fleet.stop()
    const throwing = setup({ followPolicy: () => { throw new Error('ranking not ready') } })
    throwing.gossip.start()
    await nextHeartbeat(throwing.gossip, throwing.clock, 0)
    expect(await throwing.pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes('orders', 3) }), otherId)).toBe('accept')
    expect(throwing.gossip.followed()).toContain('orders')
    throwing.gossip.stop()
  })

  it('runs at most maxCellPullsInFlight cell pulls at once and survives failed pulls', async () => {
    const waiting: Array<{ cell: string, done: (ok: boolean) => void }> = []
    const { clock, gossip } = setup({
      maxCellPullsInFlight: 1,
      pullCell: async (cell) => { await new Promise<void>((resolve, reject) => { waiting.push({ cell, done: (ok) => { if (ok) resolve(); else reject(new Error('no peer')) } }) }) }
    })
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(waiting.map(w => w.cell)).toEqual(['billing'])
    waiting[0].done(false)
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(waiting.map(w => w.cell)).toEqual(['billing', 'search'])
    waiting[1].done(true)
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(gossip.stats()).toMatchObject({ cellPulls: 2, cellPullFailures: 1 })
    gossip.stop()
  })

  it('in fleet mode follow() only remembers the cell: the fleet topic carries every cell', () => {
    const { gossip, pubsub } = setup({ dissemination: 'fleet' })
    gossip.start()
    gossip.follow('ledger')
    expect(gossip.followed()).toEqual([])
    expect([...pubsub.topics].sort()).toEqual([FLEET_RELEASE_TOPIC, FLEET_TOPIC].sort())
    gossip.stop()
  })
})

describe('FleetGossip per-cell validation (attacks)', () => {
  async function otherInstance (cell: string, clock: ManualClock): Promise<Uint8Array> {
    return encodeEnvelope(await signRecord(other, 'instance', makeInstanceRecord(otherId.toString(), { instanceId: `o-${cell}`, cell, sentMs: clock.now(), refreshMs: 5000 })))
  }

  it('accepts an instance of the topic\'s cell; rejects one of another cell, a member or node record, a bundle hiding one, junk', async () => {
    const { clock, pubsub, gossip, view } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const billing = await otherInstance('billing', clock)
    const search = await otherInstance('search', clock)
    expect(await pubsub.deliver(cellTopic('billing'), billing, otherId)).toBe('accept')
    expect(view.liveInstances('billing').map(i => i.instanceId).sort()).toEqual(['b-1', 'o-billing'])
    // An instance of cell `search` on billing's topic: the signature is good, the topic is not its.
    expect(await pubsub.deliver(cellTopic('billing'), search, otherId)).toBe('reject')
    expect(view.liveInstances('search').map(i => i.instanceId)).toEqual(['s-1'])
    const mixed = encodeBundles([{ bytes: billing, ageMs: 0 }, { bytes: search, ageMs: 0 }])[0]
    expect(await pubsub.deliver(cellTopic('billing'), mixed, otherId)).toBe('reject')
    const member = encodeEnvelope(await signRecord(other, 'member', { nodeId: otherId.toString(), seq: 2, sentMs: clock.now(), nodeSeq: 1, slots: 4, freeSlots: 4, cpuPercent: 0, memoryPercent: 0, leaving: false, cells: [] }))
    expect(await pubsub.deliver(cellTopic('billing'), member, otherId)).toBe('reject')
    const node = encodeEnvelope(await signRecord(other, 'node', makeNodeRecord(otherId.toString(), { sentMs: clock.now() })))
    expect(await pubsub.deliver(cellTopic('billing'), node, otherId)).toBe('reject')
    expect(await pubsub.deliver(cellTopic('billing'), new Uint8Array([1, 2, 250]), otherId)).toBe('reject')
    // The members topic takes node, member and down records, never instances.
    expect(await pubsub.deliver(MEMBERS_TOPIC, billing, otherId)).toBe('reject')
    expect(await pubsub.deliver(MEMBERS_TOPIC, node, otherId)).toBe('accept')
    expect(await pubsub.deliver(MEMBERS_TOPIC, member, otherId)).toBe('accept')
    expect(gossip.stats().wrongTopic).toBe(5)
    expect(gossip.stats().bytes.in.cells).toBeGreaterThan(0)
    expect(gossip.stats().bytes.in.members).toBe(billing.length + node.length + member.length)
    gossip.stop()
  })

  it('a cell topic also carries that cell\'s snapshot and pin records, never another cell\'s', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const oid = otherId.toString()
    const snapshot = (cell: string): SnapshotRecord => makeSnapshotRecord(oid, { cell, claimId: `${cell}/0`, sentMs: clock.now() })
    const billingSnap = encodeEnvelope(await signRecord(other, 'snapshot', snapshot('billing')))
    const billingPin = encodeEnvelope(await signRecord(other, 'pin', makePinRecord(oid, snapshot('billing'), { sentMs: clock.now() })))
    const searchSnap = encodeEnvelope(await signRecord(other, 'snapshot', snapshot('search')))
    // In scope: handed to the view (which judges their grants as on any topic), not refused for the topic.
    await pubsub.deliver(cellTopic('billing'), billingSnap, otherId)
    await pubsub.deliver(cellTopic('billing'), billingPin, otherId)
    expect(gossip.stats().wrongTopic).toBe(0)
    expect(await pubsub.deliver(cellTopic('billing'), searchSnap, otherId)).toBe('reject')
    expect(gossip.stats().wrongTopic).toBe(1)
    gossip.stop()
  })

  it('a topic it does not follow has no validator (gossipsub drops what nobody subscribed to)', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    await expect(pubsub.deliver(cellTopic('ledger'), await otherInstance('ledger', clock), otherId)).rejects.toThrow(/no validator/)
    gossip.stop()
  })
})

describe('FleetGossip per-cell down reports and node pulls', () => {
  it('reportDown signs, applies and publishes a down report; fleet mode refuses', async () => {
    const { clock, pubsub, gossip, view } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    await gossip.reportDown(otherId.toString(), 42)
    const [down] = pubsub.envelopes(MEMBERS_TOPIC).filter(e => e.kind === 'down') as Array<Extract<FleetEnvelope, { kind: 'down' }>>
    expect(down.record).toMatchObject({ nodeId: selfId, subject: otherId.toString(), subjectSeq: 42 })
    expect(view.downs).toHaveLength(1)
    expect(gossip.stats().sent.down).toBe(1)
    gossip.stop()
    const fleet = setup({ dissemination: 'fleet' })
    await expect(fleet.gossip.reportDown(otherId.toString(), 1)).rejects.toBeInstanceOf(DisseminationModeError)
  })

  it('refutes a down report about itself at once with a fresh member record, once per report burst', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const from = pubsub.published.length
    const before = (pubsub.envelopes(MEMBERS_TOPIC).find(e => e.kind === 'member') as Extract<FleetEnvelope, { kind: 'member' }>).record.seq
    const report = encodeEnvelope(await signRecord(other, 'down', { nodeId: otherId.toString(), subject: selfId, subjectSeq: before, seq: 5, sentMs: clock.now() }))
    const refuted = new Promise<void>((resolve) => gossip.addEventListener('heartbeat', () => resolve(), { once: true }))
    expect(await pubsub.deliver(MEMBERS_TOPIC, report, otherId)).toBe('accept')
    const again = encodeEnvelope(await signRecord(other, 'down', { nodeId: otherId.toString(), subject: selfId, subjectSeq: before, seq: 6, sentMs: clock.now() }))
    expect(await pubsub.deliver(MEMBERS_TOPIC, again, otherId)).toBe('accept')
    // No clock movement: soon() runs the heartbeat now.
    clock.advance(0)
    await refuted
    const members = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'member' }>>
    expect(members.map(e => e.kind)).toEqual(['member'])
    expect(members[0].record.seq).toBeGreaterThan(before)
    expect(gossip.stats().refuted).toBe(1)
    // A report about another node is not refuted.
    const aboutOther = encodeEnvelope(await signRecord(self, 'down', { nodeId: selfId, subject: otherId.toString(), subjectSeq: 1, seq: 5, sentMs: clock.now() }))
    expect(await pubsub.deliver(MEMBERS_TOPIC, aboutOther, peerIdFromPrivateKey(self))).toBe('accept')
    await heartbeats(gossip, clock, 1)
    expect(gossip.stats().refuted).toBe(1)
    gossip.stop()
  })

  it('pulls a node\'s full record on need-node from the peer that sent its member record: rate-limited and bounded', async () => {
    const calls: Array<[string, string]> = []
    const release: Array<() => void> = []
    const { clock, gossip, view } = setup({
      maxNodePullsInFlight: 2,
      nodePullIntervalMs: 10_000,
      pullNode: async (nodeId: string, from: string, _options: AbortOptions) => { calls.push([nodeId, from]); await new Promise<void>((resolve) => { release.push(resolve) }) }
    })
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const need = (nodeId: string, from: string): void => { view.dispatchEvent(new CustomEvent('need-node', { detail: { nodeId, from } })) }
    need('n1', 'p1')
    need('n1', 'p1')
    need('n2', 'p2')
    need('n3', 'p3')
    await Promise.resolve()
    expect(calls).toEqual([['n1', 'p1'], ['n2', 'p2']])
    release.shift()!()
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(calls).toEqual([['n1', 'p1'], ['n2', 'p2'], ['n3', 'p3']])
    // n1 again within its interval: skipped; after it, pulled again.
    need('n1', 'p9')
    expect(calls).toHaveLength(3)
    clock.advance(10_000)
    for (const r of release.splice(0)) r()
    await new Promise(resolve => setTimeout(resolve, 0))
    need('n1', 'p9')
    await Promise.resolve()
    expect(calls.at(-1)).toEqual(['n1', 'p9'])
    expect(gossip.stats()).toMatchObject({ nodePulls: 4, nodePullsSkipped: 2 })
    // Junk events are ignored.
    view.dispatchEvent(new CustomEvent('need-node', { detail: { nodeId: 7 } }))
    view.dispatchEvent(new Event('need-node'))
    expect(calls).toHaveLength(4)
    for (const r of release.splice(0)) r()
    gossip.stop()
  })
})

describe('FleetGossip per-cell with FleetView \'members\' liveness', () => {
  function real (init: Partial<FleetGossipInit> = {}) {
    const clock = new ManualClock()
    const view = new FleetView({ clock, liveness: 'members', verifyRelease: verify, verifyDesired: verify })
    const pubsub = new FakePubSub()
    const { nodeId: _a, seq: _b, sentMs: _c, ...node } = makeNodeRecord(selfId, { roles: ['full', 'host'] })
    const instances = [localInstance({ instanceId: 'b-1', cell: 'billing' })]
    const nodePulls: Array<{ nodeId: string, from: string, cells?: string[] }> = []
    const gossip = new FleetGossip({
      pubsub,
      view,
      clock,
      privateKey: self,
      heartbeatMs: 1000,
      dissemination: 'per-cell',
      localNode: () => ({ ...node, startedMs: clock.now() }),
      localInstances: () => instances,
      pullNode: async (nodeId, from, options) => { nodePulls.push({ nodeId, from, ...(options.cells !== undefined ? { cells: options.cells } : {}) }) },
      ...init
    })
    return { clock, view, pubsub, gossip, nodePulls }
  }
  const otherNode = async (clock: ManualClock): Promise<Uint8Array> => encodeEnvelope(await signRecord(other, 'node', makeNodeRecord(otherId.toString(), { seq: 1, sentMs: clock.now(), roles: ['full', 'host'] })))
  const otherMember = async (clock: ManualClock, seq: number): Promise<Uint8Array> => encodeEnvelope(await signRecord(other, 'member', { nodeId: otherId.toString(), seq, sentMs: clock.now(), nodeSeq: 1, slots: 8, freeSlots: 8, cpuPercent: 0, memoryPercent: 0, leaving: false, cells: [] }))

  it('its own node, member and instance records are live in its own view', async () => {
    const { clock, view, gossip } = real()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(view.node(selfId)?.capacity.freeSlots).toBe(6)
    expect(view.liveInstances('billing').map(i => i.instanceId)).toEqual(['b-1'])
    expect(view.stats().accepted).toMatchObject({ node: 1, member: 1, instance: 1 })
    // Past 3 × instanceTtlMs of heartbeat mode, the 5 s refresh keeps the instance live.
    await heartbeats(gossip, clock, 12)
    expect(view.liveInstances('billing')).toHaveLength(1)
    gossip.stop()
  })

  it('a member record or instance of a node it has no full record of: ignored, and that node pulled from the propagation source (with the cell)', async () => {
    const { clock, pubsub, gossip, nodePulls } = real()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const relay = peerIdFromPrivateKey(self)
    // Relayed by a neighbour: gossipsub's propagation source is the neighbour, `from` the origin.
    const via = async (topic: string, data: Uint8Array): Promise<string> => {
      const msg = { type: 'signed', from: otherId, topic, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: otherId.publicKey }
      return await pubsub.topicValidators.get(topic)!(relay, msg as Message)
    }
    const inst = encodeEnvelope(await signRecord(other, 'instance', makeInstanceRecord(otherId.toString(), { instanceId: 'o-1', cell: 'billing', sentMs: clock.now(), refreshMs: 5000 })))
    expect(await via(cellTopic('billing'), inst)).toBe('ignore')
    expect(await via(MEMBERS_TOPIC, await otherMember(clock, 2))).toBe('ignore')
    await Promise.resolve()
    // One pull of the node, from the neighbour, carrying the dropped instance's cell; the member
    // record's own request falls in the same interval.
    expect(nodePulls).toEqual([{ nodeId: otherId.toString(), from: relay.toString(), cells: ['billing'] }])
    expect(gossip.stats()).toMatchObject({ nodePulls: 1, nodePullsSkipped: 1 })
    // With the full record held, the member record counts.
    expect(await pubsub.deliver(MEMBERS_TOPIC, await otherNode(clock), otherId)).toBe('accept')
    expect(await pubsub.deliver(MEMBERS_TOPIC, await otherMember(clock, 3), otherId)).toBe('accept')
    gossip.stop()
  })

  it('refutes a down report about itself through the real view; reportDown is accepted locally and published', async () => {
    const { clock, pubsub, gossip, view } = real()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(await pubsub.deliver(MEMBERS_TOPIC, await otherNode(clock), otherId)).toBe('accept')
    const mine = (pubsub.envelopes(MEMBERS_TOPIC).find(e => e.kind === 'member') as Extract<FleetEnvelope, { kind: 'member' }>).record.seq
    const from = pubsub.published.length
    const report = encodeEnvelope(await signRecord(other, 'down', { nodeId: otherId.toString(), subject: selfId, subjectSeq: mine, seq: 5, sentMs: clock.now() }))
    const refuted = new Promise<void>((resolve) => gossip.addEventListener('heartbeat', () => resolve(), { once: true }))
    expect(await pubsub.deliver(MEMBERS_TOPIC, report, otherId)).toBe('accept')
    clock.advance(0)
    await refuted
    const sent = pubsub.envelopes(MEMBERS_TOPIC, from) as Array<Extract<FleetEnvelope, { kind: 'member' }>>
    expect(sent.map(e => e.kind)).toEqual(['member'])
    expect(sent[0].record.seq).toBeGreaterThan(mine)
    expect(gossip.stats().refuted).toBe(1)
    expect(view.node(selfId)).toBeDefined()
    // This node reports the other down: its own view holds the report.
    await gossip.reportDown(otherId.toString(), 1)
    expect(view.downReportsAbout(otherId.toString())?.reporters).toEqual([selfId])
    expect(pubsub.envelopes(MEMBERS_TOPIC).filter(e => e.kind === 'down')).toHaveLength(1)
    // A report the view refuses (an unknown subject) is not published.
    const unknown = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await expect(gossip.reportDown(unknown, 1)).rejects.toMatchObject({ reason: 'unknown-node' })
    expect(pubsub.envelopes(MEMBERS_TOPIC).filter(e => e.kind === 'down')).toHaveLength(1)
    gossip.stop()
  })
})

describe('FleetGossip per-cell: a change of prepared alone is re-signed into the local view only', () => {
  it('publishes nothing, keeps the gossiped seq, and a pull of the node\'s record (nodes filter) carries the fresh list', async () => {
    const clock = new ManualClock()
    const view = new FleetView({ clock, liveness: 'members', verifyRelease: verify, verifyDesired: verify })
    const pubsub = new FakePubSub()
    const { nodeId: _a, seq: _b, sentMs: _c, ...node } = makeNodeRecord(selfId, { roles: ['full', 'host'] })
    const state = { node: node as LocalNodeState }
    const gossip = new FleetGossip({ pubsub, view, clock, privateKey: self, heartbeatMs: 1000, dissemination: 'per-cell', localNode: () => state.node, localInstances: () => [] })
    // A peer's view, fed by what is gossiped and by pulls of this node's record.
    const peer = new FleetView({ clock, liveness: 'members', verifyRelease: verify, verifyDesired: verify })
    const gossiped = async (from: number): Promise<void> => {
      for (const p of pubsub.published.slice(from)) if (p.topic === MEMBERS_TOPIC) await peer.merge(p.data, { from: selfId })
    }
    const pull = async (): Promise<void> => {
      for (const frame of narrowSnapshot(view.snapshot({ cells: () => false }), { cells: [], nodes: [selfId] }, 64 * 1024)) await peer.merge(frame, { from: selfId })
    }
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    await gossiped(0)
    const sentNode = view.node(selfId)!
    const memberSeq = (pubsub.envelopes(MEMBERS_TOPIC).find(e => e.kind === 'member') as Extract<FleetEnvelope, { kind: 'member' }>).record.seq
    expect(peer.node(selfId)?.prepared).toBeUndefined()

    const from = pubsub.published.length
    const prepared = [{ cell: 'billing', version: '2.0.0', digest: 'd'.repeat(64), state: 'preparing' as const }]
    state.node = { ...state.node, prepared }
    await heartbeats(gossip, clock, 1)
    expect(pubsub.published.slice(from), 'nothing published').toEqual([])
    expect(gossip.stats()).toMatchObject({ resignedLocal: 1, sent: { node: 1, member: 1 } })
    const local = view.node(selfId)!
    expect(local.prepared).toEqual(prepared)
    // Same seq as the record gossiped, newer sentMs: the node's newest seq is unchanged.
    expect(local.seq).toBe(sentNode.seq)
    expect(local.sentMs).toBeGreaterThan(sentNode.sentMs)

    // Nothing changes: no re-sign, nothing published (at most one re-sign a heartbeat, only on a change).
    await heartbeats(gossip, clock, 3)
    expect(gossip.stats().resignedLocal).toBe(1)
    // A change in place (the host mutating its list) is seen; the same list again is not.
    prepared[0].state = 'prepared' as never
    await heartbeats(gossip, clock, 1)
    state.node = { ...state.node, prepared: structuredClone(prepared) }
    await heartbeats(gossip, clock, 2)
    expect(gossip.stats().resignedLocal).toBe(2)
    expect(view.node(selfId)?.prepared?.[0].state).toBe('prepared')
    expect(pubsub.published.slice(from)).toEqual([])

    // Gossip alone never brings the list; a pull with the nodes filter does.
    expect(peer.node(selfId)?.prepared).toBeUndefined()
    await pull()
    expect(peer.node(selfId)?.prepared).toEqual([{ ...prepared[0], state: 'prepared' }])
    expect(peer.node(selfId)?.seq).toBe(sentNode.seq)

    // A down report at the gossiped member seq is still current in the peer's view after the pull
    // (not 'future' or 'stale'): the re-sign kept the node's newest seq.
    expect(await peer.apply(await signRecord(other, 'node', makeNodeRecord(otherId.toString(), { seq: 1, sentMs: clock.now(), roles: ['full', 'host'] })), { from: otherId.toString() })).toMatchObject({ accepted: true })
    const report = await signRecord(other, 'down', { nodeId: otherId.toString(), subject: selfId, subjectSeq: memberSeq, seq: 5, sentMs: clock.now() })
    expect(await peer.apply(report, { from: otherId.toString() })).toMatchObject({ accepted: true })

    // The next member record (free slots changed) is newer than the re-signed node record at the peer.
    const before = pubsub.published.length
    state.node = { ...state.node, capacity: { ...state.node.capacity, freeSlots: state.node.capacity.freeSlots - 1 } }
    await heartbeats(gossip, clock, 1)
    expect(pubsub.envelopes(MEMBERS_TOPIC, before).map(e => e.kind)).toContain('member')
    const accepted = peer.stats().accepted.member
    await gossiped(before)
    expect(peer.stats().accepted.member).toBe(accepted + 1)
    expect(peer.node(selfId)?.capacity.freeSlots).toBe(state.node.capacity.freeSlots)

    // A node record sent for another reason (addrs) carries the list under a new seq, and resets the comparison.
    const beforeAddrs = pubsub.published.length
    state.node = { ...state.node, addrs: [...state.node.addrs, '/ip4/127.0.0.1/tcp/4003'] }
    await heartbeats(gossip, clock, 2)
    const [sent] = pubsub.envelopes(MEMBERS_TOPIC, beforeAddrs).filter(e => e.kind === 'node') as Array<Extract<FleetEnvelope, { kind: 'node' }>>
    expect(sent.record.prepared).toEqual([{ ...prepared[0], state: 'prepared' }])
    expect(sent.record.seq).toBeGreaterThan(sentNode.seq)
    expect(gossip.stats().resignedLocal).toBe(2)
    gossip.stop()
  })

  it('a node record still pending (reached no peer) is replaced by the re-signed one: the retry carries the fresh list, no extra publish', async () => {
    const { clock, pubsub, gossip, state } = setup()
    pubsub.recipients = 0
    pubsub.getSubscribers = () => ['peer-0']
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    const prepared = [{ cell: 'billing', version: '2.0.0', digest: 'd'.repeat(64), state: 'prepared' as const }]
    state.node = { ...state.node, prepared }
    const from = pubsub.published.length
    await heartbeats(gossip, clock, 1)
    // One publish on the members topic: the retry of the pending bundle, now with the re-signed node record.
    const frames = pubsub.published.slice(from).filter(p => p.topic === MEMBERS_TOPIC)
    expect(frames).toHaveLength(1)
    const node = decodeFrame(frames[0].data).map(e => e.envelope).find(e => e.kind === 'node') as Extract<FleetEnvelope, { kind: 'node' }>
    expect(node.record.prepared).toEqual(prepared)
    expect(gossip.stats().resignedLocal).toBe(1)
    gossip.stop()
  })
})

describe('fleet mode is unchanged', () => {
  it('publishes exactly the bundle it always did: the node record and each instance, signed, on the fleet topic', async () => {
    const { clock, pubsub, gossip, state } = setup({ dissemination: undefined })
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published.map(p => p.topic)).toEqual([FLEET_TOPIC])
    // Ed25519 signatures are deterministic: the expected bytes can be rebuilt from the seqs sent.
    const sent = decodeFrame(pubsub.published[0].data)
    const seqs = sent.map(e => (e.envelope as Extract<FleetEnvelope, { kind: 'node' | 'instance' }>).record.seq)
    const items = [
      { bytes: encodeEnvelope(await signRecord(self, 'node', { ...state.node, nodeId: selfId, seq: seqs[0], sentMs: clock.now() })), ageMs: 0 },
      ...await Promise.all(state.instances.map(async (inst, i) => ({ bytes: encodeEnvelope(await signRecord(self, 'instance', { ...inst, nodeId: selfId, seq: seqs[i + 1], sentMs: clock.now() })), ageMs: 0 })))
    ]
    expect(pubsub.published[0].data).toEqual(encodeBundles(items)[0])
    // No refreshMs, no member records, no cell topics, every heartbeat.
    expect(sent.some(e => e.envelope.kind === 'instance' && e.envelope.record.refreshMs !== undefined)).toBe(false)
    await heartbeats(gossip, clock, 2)
    expect(pubsub.published.map(p => p.topic)).toEqual([FLEET_TOPIC, FLEET_TOPIC, FLEET_TOPIC])
    expect(gossip.followed()).toEqual([])
    gossip.stop()
  })
})
