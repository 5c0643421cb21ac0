// Gossipsub binding: every heartbeatMs (injected clock) signs and publishes this node's record and
// its instances' heartbeats, and feeds incoming messages to the FleetView through a topic
// validator, so a record the view refuses is never forwarded to the rest of the mesh.
//
// Two ways to disseminate (`dissemination`, docs/biology.md "Scale: fleets of 1,000 and 10,000 nodes"):
// - 'fleet' (default): one bundle a heartbeat on `/cell/fleet/1` with the node record and every
//   local instance, which every node receives.
// - 'per-cell': the node record and a compact member record on `/cell/members/1`, sent on a change
//   and otherwise every memberRefreshMs; each local instance on its cell's topic `/cell/c/<cell>/1`,
//   at once on a change and otherwise every max(5 s, hosts / 2 per s), the promise carried in the
//   record's refreshMs. A node receives only the cells it follows: those it hosts, those follow() was
//   called for, and those with a release or desired record that `followPolicy` wants (default: all;
//   see refollow()). Every heartbeat only compares what the host reports with what was last sent:
//   nothing is signed when nothing is due.
//   Per-cell bandwidth rules (10,000 nodes within 50 kB/s, test/sim/gossip-sizes.ts):
//   - the full node record is sent at start and when its addrs, grants, roles, halts or slots change,
//     not periodically (only before the view's memberTtlMs would make it too old to accept, see
//     nodeRefreshMs) and NOT when only `prepared` changes: prepared lists change on every node at
//     every release, so they ride along with the next node record sent for another reason. Instead a
//     change of `prepared` alone re-signs the node record into the LOCAL view only (at most once a
//     heartbeat, only on a real change; nothing is published): same seq as the record last sent,
//     newer sentMs, so a view that pulls this node's record (fleet-sync, `nodes` filter: what
//     `cell publish` and `cell rollback` do for their per-node prepare report) takes it as newer,
//     while every node's newest seq (what member records, down reports and refutations are judged
//     by) stays what was gossiped. A node record still pending (its publish reached no peer) is
//     replaced by the re-signed one, so the retry carries the fresh list at no extra publish.
//   - the member record is sent at once when slots, free slots, leaving or cells change; a change
//     of load only (CPU or memory past 10 points) at most once per memberLoadMinIntervalMs (1 h);
//     otherwise every memberRefreshMs (6 h).
//   - a node, member or down record whose publish reached no peer (not connected yet, or no stream
//     open to any subscriber) is published again at every heartbeat until one publish reaches a peer
//     (only the newest node and member record, and a bounded number of down reports, are kept for it).
//     An instance record that none of its cell's known followers took is sent again (re-signed) at
//     the next heartbeats, at most 10 in a row; one of a cell nobody follows yet is not (followers
//     pull when they start following).
//     Records that reached one peer are not sent again when more peers subscribe: that peer forwards
//     them, and a resend per new subscriber would multiply the start-up traffic of every node (a
//     duplicate record is accepted and forwarded fleet-wide like a new one).
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { AbortOptions, PeerId, PrivateKey } from '@libp2p/interface'
import type { Message, TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import { CellError } from '../errors.ts'
import type { RetryRule } from '../errors.ts'
import type { Clock } from '../ports.ts'
import { FleetRecordRejectedError, MalformedFleetRecordError } from './errors.ts'
import type { DisseminationMismatchError } from './errors.ts'
import { DisseminationWatch } from './dissemination-watch.ts'
import type { DisseminationWatchInit, MismatchPeer } from './dissemination-watch.ts'
import { decodeFrame, encodeBundles, encodeEnvelope } from './codec.ts'
import type { BundleItem, FleetEnvelope } from './codec.ts'
import { scoreTopic, unscoreTopic } from './gossip-score.ts'
import type { TopicScoring } from './gossip-score.ts'
import { DEFAULT_MAX_FOLLOWED_CELLS, FLEET_RELEASE_TOPIC, FLEET_TOPIC, LIMITS, MAX_MESSAGE_BYTES, MEMBERS_TOPIC, cellTopic, checkCellName } from './records.ts'
import type { Dissemination, InstanceRecord, MemberRecord, NodeRecord } from './records.ts'
import { signRecord } from './sign.ts'
import type { ApplyResult, FleetChange, FleetView } from './view.ts'

const log = logger('cell:fleet:gossip')

/** What the host reports about itself; the binding stamps nodeId, seq and sentMs. */
export type LocalNodeState = Omit<NodeRecord, 'nodeId' | 'seq' | 'sentMs'>
export type LocalInstanceState = Omit<InstanceRecord, 'nodeId' | 'seq' | 'sentMs'>

/** The part of `@libp2p/gossipsub` v17 this binding uses (its `GossipSub` service satisfies it). */
export interface FleetPubSub extends TopicScoring {
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
  /** The gossipsub class also takes publish options; the interface type omits them, hence optional here. */
  publish: (topic: string, data: Uint8Array, opts?: { allowPublishToZeroTopicPeers?: boolean, ignoreDuplicatePublishError?: boolean }) => Promise<unknown>
  topicValidators: Map<string, TopicValidatorFn>
  /** Peers known to subscribe to `topic` (gossipsub has it; without it a publish is not retried). */
  getSubscribers?: (topic: string) => unknown[]
}

export interface FleetGossipInit {
  pubsub: FleetPubSub
  view: FleetView
  clock: Clock
  /** This node's libp2p key: records are signed with it so they can be relayed by anyone. */
  privateKey: PrivateKey
  localNode?: () => LocalNodeState | undefined
  localInstances?: () => LocalInstanceState[]
  /** Default 1000. */
  heartbeatMs?: number
  topic?: string
  releaseTopic?: string
  /** Local instances published per heartbeat; extra ones are skipped and counted (default 1024). */
  maxLocalInstances?: number
  /** 'fleet' (default, today's single topic) or 'per-cell' (see the file comment). */
  dissemination?: Dissemination
  /** Per-cell: the members topic (default MEMBERS_TOPIC). */
  membersTopic?: string
  /**
   * Per-cell: a member record is sent again after this long without a change (default 6 h). Capped
   * at a third of the view's memberTtlMs under 'members' liveness (the view's default, 3 h, gives 1 h:
   * the host must set FleetView memberTtlMs to 18 h for the 6 h refresh), so a node never lapses
   * between two refreshes.
   */
  memberRefreshMs?: number
  /** Per-cell: a member record whose only change is load (CPU or memory) waits this long after the previous one (default 1 h). */
  memberLoadMinIntervalMs?: number
  /**
   * Per-cell: the node is leaving the fleet (drains, takes no new replicas): the member record's
   * `leaving` flag, sent at once when it turns. Default: never leaving.
   */
  localLeaving?: () => boolean
  /** Per-cell: an instance is resent at least every max(cellRefreshMinMs, hosts / cellRefreshPerSecond s) (defaults 5000 and 2). */
  cellRefreshMinMs?: number
  cellRefreshPerSecond?: number
  /** Per-cell: cells followed at once (explicit and automatic together; default 1024). */
  maxFollowedCells?: number
  /**
   * Per-cell: whether to follow a cell the view has a release or desired record of (default: every
   * such cell). Asked once per cell as it appears and again for every cell on refollow(); cells
   * with local instances are followed whatever it says, and so are follow() calls.
   */
  followPolicy?: (cell: string) => boolean
  /**
   * Per-cell: pulls one cell's records (fleet-sync with a `cells` filter) from one connected full
   * node; called when this node starts following the cell (at most maxCellPullsInFlight at once, the
   * rest queued). A failed pull (e.g. no peer connected yet at start) is counted, not retried: the
   * whole-view pulls fleet-sync makes when it connects, and the hosts' refreshes, bring the rest.
   * Without it nothing is pulled (the cell's records arrive with its hosts' next sends).
   */
  pullCell?: (cell: string, options: AbortOptions) => Promise<void>
  /**
   * Per-cell: pulls a node's full record (fleet-sync with a `nodes` filter, plus `options.cells`
   * when given) from `fromPeer`. Called when a record on a members or cell topic was dropped as
   * 'unknown-node' (fromPeer = gossipsub's propagation source: connected, and it held the record), and
   * on the view's 'need-node' event for records that came otherwise (fromPeer = the event's `from`).
   * `cells`: an instance record of those cells was dropped with it, so the pull brings it back too.
   */
  pullNode?: (nodeId: string, fromPeer: string, options: NodePullOptions) => Promise<void>
  /** Per-cell: pulls in flight at once, cell and node pulls each (default 2 and 4). */
  maxCellPullsInFlight?: number
  maxNodePullsInFlight?: number
  /** Per-cell: one node's record is pulled at most once per this long (default 10 s). */
  nodePullIntervalMs?: number
  /**
   * Limits of the watch for peers of the other dissemination mode (core/fleet/dissemination-watch.ts:
   * 64 peers, 16 reports a minute, a returning peer reported again after 5 min by default).
   */
  mismatch?: Pick<DisseminationWatchInit, 'maxPeers' | 'reportsPerMinute' | 'reportAgainMs'>
}

/** Options of a node pull: the signal, and the cells whose instance records of the node were dropped. */
export interface NodePullOptions extends AbortOptions {
  cells?: string[]
}

/** Topic families of the byte counters. */
export type FleetTopicFamily = 'fleet' | 'members' | 'cells' | 'releases'

/** follow() was asked for one cell more than maxFollowedCells. */
export class FollowedCellsLimitError extends CellError {
  static override readonly errorName = 'FollowedCellsLimitError'
  static override readonly retry: RetryRule = 'never'
}

/** The abort reason of pulls (pullCell, pullNode) still running when FleetGossip stops. */
export class FleetGossipStoppedError extends CellError {
  static override readonly errorName = 'FleetGossipStoppedError'
  static override readonly retry: RetryRule = 'never'
}

/** A per-cell operation (reportDown) on a FleetGossip running in 'fleet' mode. */
export class DisseminationModeError extends CellError {
  static override readonly errorName = 'DisseminationModeError'
  static override readonly retry: RetryRule = 'never'
}

export interface FleetGossipStats {
  ticks: number
  published: number
  publishFailures: number
  /** Release, desired and retire records published again because no subscriber took them. */
  releaseRepublished: number
  skippedInstances: number
  received: { accept: number, ignore: number, reject: number }
  // The fields below are always set by FleetGossip.stats() (typed Required there); optional here
  // only so stats fakes elsewhere need not list them.
  /** Message data bytes: `out` as published, `in` as validated (whatever the verdict). */
  bytes?: { in: Record<FleetTopicFamily, number>, out: Record<FleetTopicFamily, number> }
  /** Per-cell: records signed and sent (member records include refutations). */
  sent?: { node: number, member: number, instance: number, down: number }
  /** Per-cell: member records sent at once because a down report named this node. */
  refuted?: number
  /** Per-cell: node, member or down records published again because their last publish reached no peer, and instance records sent again because none of their cell's known followers took them. */
  republished?: number
  /** Per-cell: node records re-signed into the local view only, because only their `prepared` list changed (never published). */
  resignedLocal?: number
  /** Per-cell: cells followed now. */
  followed?: number
  /** Per-cell: cells this node should have followed automatically but maxFollowedCells was reached (per heartbeat). */
  followOverflow?: number
  /** Per-cell: messages on a cell or the members topic with a record that does not belong there. */
  wrongTopic?: number
  cellPulls?: number
  cellPullFailures?: number
  nodePulls?: number
  nodePullFailures?: number
  /** Node pulls not made: the queue was full or the node was pulled less than nodePullIntervalMs ago. */
  nodePullsSkipped?: number
  /** Connected peers of the other dissemination mode now (at most the watch's maxPeers), and reports of them made. */
  mismatchPeers?: number
  mismatchReports?: number
}

/** FleetGossip.stats(): every counter set. */
export type FleetGossipCounters = Required<FleetGossipStats>

/** Instance fields whose change is sent at once in per-cell mode. */
interface SentInstance {
  fingerprint: string
  cpuPercent: number
  sentMs: number
  refreshMs: number
  /** The last send reached none of the topic's known subscribers: sent again at the next heartbeat. */
  resend?: boolean
  /** Sends in a row that reached none of the known subscribers (at most MAX_INSTANCE_RESENDS are retried). */
  misses?: number
}

/** The member fields compared between sends (seq, sentMs and nodeSeq are stamped at send). */
export type MemberFields = Omit<MemberRecord, 'nodeId' | 'seq' | 'sentMs' | 'nodeSeq'>

/** CPU or memory moves by more than this many points (CPU per core) before a change is sent. */
const LOAD_CHANGE_POINTS = 10
/** Node ids remembered with the time of their last pull (oldest forgotten first). */
const MAX_NODE_PULL_TIMES = 1024
/** Node pulls waiting for a slot; more are skipped and counted. */
const MAX_NODE_PULL_QUEUE = 64
/** Cells one queued node pull carries (within fleet-sync's filter bound). */
const MAX_NODE_PULL_CELLS = 8
/** An instance send that reached none of its cell's known subscribers is retried at most this many heartbeats in a row. */
const MAX_INSTANCE_RESENDS = 10
/** Down reports (one per subject, the newest) kept for publishing again while no peer took them. */
const MAX_PENDING_DOWN = 16

/**
 * Per-cell defaults that keep a 10,000-node fleet within 50 kB/s per node (docs/biology.md "Scale";
 * test/sim/gossip-sizes.ts). `memberTtlMs` is the FleetView's (3 × the refresh): a view left at its
 * own default (3 h) caps FleetGossip's member refresh at 1 h.
 */
export const PER_CELL_DEFAULTS = {
  memberRefreshMs: 6 * 3_600_000,
  memberTtlMs: 18 * 3_600_000,
  // Load-only changes of a member record at most hourly: headroom at 10,000 nodes (docs/biology.md
  // "Scale"). A cap of 1 refresh a second would save ~7 kB/s more, but the decision simulator then
  // found a 1,000-seed run settling one replica short (within the scale-up tolerance).
  memberLoadMinIntervalMs: 3_600_000,
  cellRefreshMinMs: 5000,
  cellRefreshPerSecond: 2
} as const
const DEFAULT_MEMBER_REFRESH_MS = PER_CELL_DEFAULTS.memberRefreshMs
const DEFAULT_MEMBER_LOAD_MIN_INTERVAL_MS = PER_CELL_DEFAULTS.memberLoadMinIntervalMs

/**
 * The member record of a node as its host reports it: slots and load from the node state; cells =
 * sorted distinct cells of its instances that are not stopped or crashed, at most LIMITS.memberCells
 * (the first in order; the rest are still followed and published, just not listed).
 */
export function memberFields (node: LocalNodeState, instances: readonly LocalInstanceState[], leaving: boolean): MemberFields {
  const cells = [...new Set(instances.filter(i => i.state !== 'stopped' && i.state !== 'crashed').map(i => i.cell))].sort()
  return {
    slots: node.capacity.slots,
    freeSlots: Math.min(node.capacity.freeSlots, node.capacity.slots),
    cpuPercent: node.load.cpuPercent,
    memoryPercent: node.load.memoryPercent,
    leaving,
    cells: cells.slice(0, LIMITS.memberCells)
  }
}

/** Has the member record changed in slots, free slots, leaving or cells (sent at once)? */
export function memberStructureChanged (prev: MemberFields, next: MemberFields): boolean {
  if (prev.slots !== next.slots || prev.freeSlots !== next.freeSlots || prev.leaving !== next.leaving) return true
  return prev.cells.length !== next.cells.length || prev.cells.some((c, i) => c !== next.cells[i])
}

/** Has the load moved enough to count? CPU and memory count only past 10 points (CPU per core). */
export function memberLoadChanged (prev: MemberFields, next: MemberFields, cpuCores: number): boolean {
  if (Math.abs(prev.cpuPercent - next.cpuPercent) > LOAD_CHANGE_POINTS * Math.max(1, cpuCores)) return true
  return Math.abs(prev.memoryPercent - next.memoryPercent) > LOAD_CHANGE_POINTS
}

/**
 * The fields of a node record whose change makes a new full record: load and free slots travel in
 * member records; `prepared` rides along with the next record sent for another reason, and alone is
 * only re-signed into the local view (see the file comment).
 */
function nodeShape (node: LocalNodeState): unknown {
  return [node.addrs, node.grants ?? [], node.roles, node.halts ?? [], node.capacity.slots]
}

/** Deep equality of plain values, arrays and byte arrays (what nodeShape holds). */
function sameValue (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
    return true
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false
    return a.every((v, i) => sameValue(v, b[i]))
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false
  const ka = Object.keys(a).filter(k => (a as Record<string, unknown>)[k] !== undefined)
  const kb = Object.keys(b).filter(k => (b as Record<string, unknown>)[k] !== undefined)
  return ka.length === kb.length && ka.every(k => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}

/** What of an instance is sent at once when it changes: state, release, readiness, end, claim, exit report. */
export function instanceFingerprint (i: LocalInstanceState): string {
  return [
    i.cell, i.state, i.version, i.digest, i.startedMs, i.readyMs ?? '', i.endedMs ?? '',
    i.claim === undefined ? '' : `${i.claim.ordinal}@${i.claim.epoch}`,
    i.exitReason ?? '', (i.stderrTail ?? []).join('\n'), (i.idempotent ?? []).join(',')
  ].join('\u0000')
}

/** An instance's refresh in per-cell mode: max(minMs, hosts / perSecond s), within LIMITS' refreshMs bounds. */
export function cellRefreshMs (hosts: number, minMs: number = PER_CELL_DEFAULTS.cellRefreshMinMs, perSecond: number = PER_CELL_DEFAULTS.cellRefreshPerSecond): number {
  const ms = Math.max(minMs, Math.ceil(Math.max(0, hosts) / perSecond * 1000))
  return Math.min(LIMITS.refreshMsMax, Math.max(LIMITS.refreshMsMin, ms))
}

function topicFamily (topic: string, init: { topic: string, releaseTopic: string, membersTopic: string }): FleetTopicFamily {
  if (topic === init.topic) return 'fleet'
  if (topic === init.releaseTopic) return 'releases'
  if (topic === init.membersTopic) return 'members'
  return 'cells'
}

const zeroFamilies = (): Record<FleetTopicFamily, number> => ({ fleet: 0, members: 0, cells: 0, releases: 0 })

/** A release record is published at most this many times, this far apart, while no subscriber takes it. */
const RELEASE_PUBLISH_ATTEMPTS = 20
const RELEASE_PUBLISH_RETRY_MS = 250

// Drop reasons that prove the sender misbehaved (gossipsub lowers its score); the rest are benign races.
const REJECT_REASONS = new Set(['malformed', 'wrong-origin', 'bad-signature', 'untrusted'])

/** Detail of the 'heartbeat' event FleetGossip dispatches after each tick (and after scheduling the next). */
export interface FleetHeartbeat { ok: boolean, tick: number }

/**
 * The 'dissemination-mismatch' event FleetGossip dispatches once per appearance of a connected peer
 * of the other dissemination mode (see core/fleet/dissemination-watch.ts for the limits): its detail
 * is the error, whose message tells the operator what to do. A report only: nothing else changes.
 */
export type DisseminationMismatchEvent = CustomEvent<DisseminationMismatchError>

export class FleetGossip extends EventTarget {
  readonly nodeId: string
  readonly dissemination: Dissemination
  private readonly init: FleetGossipInit
  private readonly heartbeatMs: number
  private readonly topic: string
  private readonly releaseTopic: string
  private readonly membersTopic: string
  private readonly maxLocalInstances: number
  /** Per-cell: the member record's refresh in effect (see FleetGossipInit.memberRefreshMs). */
  readonly memberRefreshMs: number
  /** Per-cell: the full node record is signed again after this long without a change, so views that pull it later still accept it. */
  readonly nodeRefreshMs: number
  private readonly memberLoadMinIntervalMs: number
  private readonly maxFollowedCells: number
  private seq: number
  private timer: unknown
  private started = false
  private ticking: Promise<void> | undefined
  /** soon() was called during a tick: the next tick follows at once. */
  private rush = false
  private readonly counters: FleetGossipCounters = {
    ticks: 0,
    published: 0,
    publishFailures: 0,
    releaseRepublished: 0,
    skippedInstances: 0,
    received: { accept: 0, ignore: 0, reject: 0 },
    bytes: { in: zeroFamilies(), out: zeroFamilies() },
    sent: { node: 0, member: 0, instance: 0, down: 0 },
    refuted: 0,
    republished: 0,
    resignedLocal: 0,
    followed: 0,
    followOverflow: 0,
    wrongTopic: 0,
    cellPulls: 0,
    cellPullFailures: 0,
    nodePulls: 0,
    nodePullFailures: 0,
    nodePullsSkipped: 0,
    mismatchPeers: 0,
    mismatchReports: 0
  }
  /** Peers of the other dissemination mode (checked at every heartbeat). */
  private readonly watch: DisseminationWatch

  // Per-cell state, all bounded: by the local instances, by maxFollowedCells, or by constants.
  /**
   * The last full node record sent: its shape (see nodeShape), seq and time; `prepared` and
   * `localSentMs`: the list and sentMs of the newest record signed under that seq (sent, or
   * re-signed into the local view only when `prepared` alone changed).
   */
  private lastNode: { shape: unknown, seq: number, sentMs: number, prepared: unknown, localSentMs: number } | undefined
  private lastMember: { fields: MemberFields, sentMs: number } | undefined
  /** The newest node and member record and down reports (by subject) whose publish has not reached a peer yet. */
  private pendingNode: Uint8Array | undefined
  private pendingMember: Uint8Array | undefined
  private readonly pendingDown = new Map<string, Uint8Array>()
  /** followPolicy's answers per cell with a release/desired record (pruned to the view's cells). */
  private readonly policyAnswers = new Map<string, boolean>()
  /** Per local instance id: what was last sent (pruned when the instance disappears from the host's list). */
  private readonly lastSent = new Map<string, SentInstance>()
  /** A down report named this node: the next heartbeat sends a member record whatever changed. */
  private refute = false
  /** Cells followed because follow() was called. */
  private readonly explicitCells = new Set<string>()
  /** Cells followed because this node hosts them or the view has a release/desired record of them. */
  private autoCells = new Set<string>()
  /** Cells subscribed now, with their topic validators. */
  private readonly subscribed = new Map<string, TopicValidatorFn>()
  private readonly cellPullQueue = new Set<string>()
  private cellPullsInFlight = 0
  private readonly nodePullQueue = new Map<string, { from: string, cells: Set<string> }>()
  /** Origins of records being applied by a validator now (their 'need-node' is answered by the validator). */
  private readonly validating = new Map<string, number>()
  private nodePullsInFlight = 0
  private readonly nodePullTimes = new Map<string, number>()
  private shutdown = new AbortController()

  constructor (init: FleetGossipInit) {
    super()
    this.init = init
    this.nodeId = peerIdFromPrivateKey(init.privateKey).toString()
    this.dissemination = init.dissemination ?? 'fleet'
    this.heartbeatMs = init.heartbeatMs ?? 1000
    this.topic = init.topic ?? FLEET_TOPIC
    this.releaseTopic = init.releaseTopic ?? FLEET_RELEASE_TOPIC
    this.membersTopic = init.membersTopic ?? MEMBERS_TOPIC
    this.maxLocalInstances = init.maxLocalInstances ?? 1024
    // A node lives memberTtlMs after its newest node or member record (views that run 'members'
    // liveness; a 'heartbeat' view, nodeTtlMs), and a node record older than that is refused as
    // 'expired' by a view that pulls it later: member records come at least 3 times per that life,
    // and the full record is re-signed once it is past life - refresh.
    const life = init.view.liveness === 'members' ? init.view.memberTtlMs : init.view.nodeTtlMs
    const wanted = init.memberRefreshMs ?? DEFAULT_MEMBER_REFRESH_MS
    this.memberRefreshMs = init.view.liveness === 'members' ? Math.max(1, Math.min(wanted, Math.floor(life / 3))) : wanted
    if (this.memberRefreshMs !== wanted && this.dissemination === 'per-cell') log('memberRefreshMs %d capped at %d (a third of the view\'s memberTtlMs)', wanted, this.memberRefreshMs)
    this.nodeRefreshMs = Math.max(this.memberRefreshMs, life - this.memberRefreshMs)
    this.memberLoadMinIntervalMs = init.memberLoadMinIntervalMs ?? DEFAULT_MEMBER_LOAD_MIN_INTERVAL_MS
    this.maxFollowedCells = init.maxFollowedCells ?? DEFAULT_MAX_FOLLOWED_CELLS
    // Seeded from the clock so a restarted node's seq still exceeds what it gossiped before.
    this.seq = init.clock.now()
    this.watch = new DisseminationWatch({
      ...init.mismatch,
      pubsub: init.pubsub,
      dissemination: this.dissemination,
      clock: init.clock,
      selfId: this.nodeId,
      fleetTopic: this.topic,
      membersTopic: this.membersTopic,
      onMismatch: (err) => { this.dispatchEvent(new CustomEvent('dissemination-mismatch', { detail: err })) }
    })
    this.validate = this.validate.bind(this)
    this.validateMembers = this.validateMembers.bind(this)
    this.onViewChange = this.onViewChange.bind(this)
    this.onNeedNode = this.onNeedNode.bind(this)
  }

  private get perCell (): boolean {
    return this.dissemination === 'per-cell'
  }

  /** Subscribes, installs the validators and publishes the first heartbeat at once. Idempotent. */
  start (): void {
    if (this.started) return
    this.started = true
    this.shutdown = new AbortController()
    const { pubsub } = this.init
    // Fleet mode: the fleet topic. Per-cell: the members topic (cell topics follow in syncFollowed).
    const recordTopic = this.perCell ? this.membersTopic : this.topic
    pubsub.topicValidators.set(recordTopic, this.perCell ? this.validateMembers : this.validate)
    pubsub.topicValidators.set(this.releaseTopic, this.validate)
    pubsub.subscribe(recordTopic)
    pubsub.subscribe(this.releaseTopic)
    if (this.perCell) {
      this.init.view.addEventListener('change', this.onViewChange)
      this.init.view.addEventListener('need-node', this.onNeedNode)
      // Follow at once what this node hosts and has releases of, so the first sends of its peers reach it.
      this.autoCells = this.wantedCells((this.init.localInstances?.() ?? []).slice(0, this.maxLocalInstances), this.init.clock.now())
      this.syncFollowed()
    }
    this.schedule(0)
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.init.clock.clearTimeout(this.timer)
    this.shutdown.abort(new FleetGossipStoppedError('fleet gossip stopped'))
    const { pubsub } = this.init
    const recordTopic = this.perCell ? this.membersTopic : this.topic
    const recordValidator = this.perCell ? this.validateMembers : this.validate
    pubsub.unsubscribe(recordTopic)
    pubsub.unsubscribe(this.releaseTopic)
    if (pubsub.topicValidators.get(recordTopic) === recordValidator) pubsub.topicValidators.delete(recordTopic)
    if (pubsub.topicValidators.get(this.releaseTopic) === this.validate) pubsub.topicValidators.delete(this.releaseTopic)
    this.watch.clear()
    if (this.perCell) {
      this.init.view.removeEventListener('change', this.onViewChange)
      this.init.view.removeEventListener('need-node', this.onNeedNode)
      for (const cell of [...this.subscribed.keys()]) this.unsubscribeCell(cell)
      this.cellPullQueue.clear()
      this.nodePullQueue.clear()
      // A restart sends the node record, member record and every instance again.
      this.lastNode = undefined
      this.lastMember = undefined
      this.pendingNode = undefined
      this.pendingMember = undefined
      this.pendingDown.clear()
      this.lastSent.clear()
      this.policyAnswers.clear()
    }
  }

  stats (): FleetGossipCounters {
    const c = this.counters
    const watch = this.watch.stats()
    return {
      ...c,
      received: { ...c.received },
      bytes: { in: { ...c.bytes.in }, out: { ...c.bytes.out } },
      sent: { ...c.sent },
      followed: this.subscribed.size,
      mismatchPeers: watch.peers,
      mismatchReports: watch.reports
    }
  }

  /** Connected peers of the other dissemination mode, as of the last heartbeat (see the 'dissemination-mismatch' event). */
  mismatches (): MismatchPeer[] {
    return this.watch.peers()
  }

  /**
   * Publishes the next heartbeat now instead of at its time (a replica that just started is
   * announced before other nodes' volunteers confirm theirs); the cadence goes on from there. During
   * a tick, the next one follows it at once.
   */
  soon (): void {
    if (!this.started) return
    if (this.ticking !== undefined) { this.rush = true; return }
    this.init.clock.clearTimeout(this.timer)
    this.schedule(0)
  }

  private schedule (delayMs: number): void {
    this.timer = this.init.clock.setTimeout(() => {
      if (!this.started) return
      // One tick at a time: a slow publish delays the next heartbeat instead of piling them up.
      let ok = true
      this.ticking ??= this.tick().catch((err) => { ok = false; log.error('heartbeat failed: %e', err) }).finally(() => {
        this.ticking = undefined
        const rush = this.rush
        this.rush = false
        if (this.started) this.schedule(rush ? 0 : this.heartbeatMs)
        this.dispatchEvent(new CustomEvent<FleetHeartbeat>('heartbeat', { detail: { ok, tick: this.counters.ticks } }))
      })
    }, delayMs)
  }

  private nextSeq (): number {
    this.seq = Math.max(this.seq + 1, this.init.clock.now())
    return this.seq
  }

  /**
   * Fleet mode: signs, applies locally and publishes this node's record and instance heartbeats once.
   * Per-cell mode: sends what changed or is due (see the file comment). Both run expiry.
   */
  async tick (options: AbortOptions = {}): Promise<void> {
    this.counters.ticks++
    this.watch.check()
    if (this.perCell) {
      await this.tickPerCell(options)
      return
    }
    const { view, clock, privateKey } = this.init
    view.expire(clock.now())
    const items: BundleItem[] = []
    const node = this.init.localNode?.()
    if (node !== undefined) {
      const env = await signRecord(privateKey, 'node', { ...node, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: clock.now() }, options)
      await view.apply(env, { from: this.nodeId, signal: options.signal })
      items.push({ bytes: encodeEnvelope(env), ageMs: 0 })
    }
    const instances = this.init.localInstances?.() ?? []
    if (instances.length > this.maxLocalInstances) this.counters.skippedInstances += instances.length - this.maxLocalInstances
    for (const inst of instances.slice(0, this.maxLocalInstances)) {
      const env = await signRecord(privateKey, 'instance', { ...inst, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: clock.now() }, options)
      await view.apply(env, { from: this.nodeId, signal: options.signal })
      items.push({ bytes: encodeEnvelope(env), ageMs: 0 })
    }
    for (const frame of encodeBundles(items, MAX_MESSAGE_BYTES)) await this.publish(this.topic, frame)
  }

  /** Signs a record of this node, applies it to the local view and returns its envelope bytes. */
  private async signLocal (envelope: Promise<FleetEnvelope>, options: AbortOptions): Promise<Uint8Array> {
    const env = await envelope
    // The local view may refuse (e.g. member records before it runs per-cell liveness): peers decide for themselves.
    const result = await this.init.view.apply(env, { from: this.nodeId, signal: options.signal })
    if (!result.accepted && result.reason !== 'duplicate') log.trace('local view refused own %s record: %s', env.kind, result.reason)
    return encodeEnvelope(env)
  }

  private async tickPerCell (options: AbortOptions): Promise<void> {
    const { view, clock, privateKey } = this.init
    const now = clock.now()
    view.expire(now)
    const node = this.init.localNode?.()
    const all = this.init.localInstances?.() ?? []
    if (all.length > this.maxLocalInstances) this.counters.skippedInstances += all.length - this.maxLocalInstances
    const instances = all.slice(0, this.maxLocalInstances)
    this.autoCells = this.wantedCells(instances, now)
    this.syncFollowed()
    // A refresh is sent at the first heartbeat from which waiting another would break its promise.
    const due = (sentMs: number, refreshMs: number): boolean => now >= sentMs + refreshMs - this.heartbeatMs

    // Members topic: the full node record on a change of its shape (or before views would refuse it
    // as too old); then the member record. Each newly signed record replaces its kind's pending one.
    let fresh = false
    if (node !== undefined) {
      const shape = nodeShape(node)
      const last = this.lastNode
      if (last === undefined || !sameValue(last.shape, shape) || due(last.sentMs, this.nodeRefreshMs)) {
        const seq = this.nextSeq()
        this.pendingNode = await this.signLocal(signRecord(privateKey, 'node', { ...node, nodeId: this.nodeId, seq, sentMs: now }, options), options)
        // Kept as sent: the host may mutate its arrays in place.
        this.lastNode = { shape: structuredClone(shape), seq, sentMs: now, prepared: structuredClone(node.prepared ?? []), localSentMs: now }
        this.counters.sent.node++
        fresh = true
      } else if (!sameValue(last.prepared, node.prepared ?? [])) {
        // Only `prepared` changed: re-signed for the local view (and so for pulls of this node's
        // record), never published by itself. Same seq, newer sentMs: newer for every view, while
        // the node's newest seq, by which member records and down reports are judged, stays put.
        const sentMs = Math.max(now, last.localSentMs + 1)
        const bytes = await this.signLocal(signRecord(privateKey, 'node', { ...node, nodeId: this.nodeId, seq: last.seq, sentMs }, options), options)
        if (this.pendingNode !== undefined) this.pendingNode = bytes
        last.prepared = structuredClone(node.prepared ?? [])
        last.localSentMs = sentMs
        this.counters.resignedLocal++
      }
      const fields = memberFields(node, instances, this.init.localLeaving?.() ?? false)
      const lastMember = this.lastMember
      const refuting = this.refute
      if (fresh || refuting || lastMember === undefined || this.memberDue(lastMember, fields, node.capacity.cpuCores, now) || due(lastMember.sentMs, this.memberRefreshMs)) {
        this.refute = false
        const record: MemberRecord = { ...fields, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: now, nodeSeq: this.lastNode?.seq ?? 0 }
        this.pendingMember = await this.signLocal(signRecord(privateKey, 'member', record, options), options)
        this.lastMember = { fields, sentMs: now }
        this.counters.sent.member++
        if (refuting) this.counters.refuted++
        fresh = true
      }
    }
    await this.flushMembers(fresh)

    // Cell topics: each instance at once on a change, otherwise when its refresh is due.
    const byCell = new Map<string, { items: BundleItem[], ids: string[] }>()
    const refreshByCell = new Map<string, number>()
    const present = new Set<string>()
    for (const inst of instances) {
      present.add(inst.instanceId)
      const last = this.lastSent.get(inst.instanceId)
      const fingerprint = instanceFingerprint(inst)
      if (last !== undefined && last.resend !== true && last.fingerprint === fingerprint && Math.abs(last.cpuPercent - inst.cpuPercent) <= LOAD_CHANGE_POINTS && !due(last.sentMs, last.refreshMs)) continue
      let refreshMs = refreshByCell.get(inst.cell)
      if (refreshMs === undefined) {
        // Hosts: the cell's live instances elsewhere in the view, and this node's own as it reports them now.
        const hosts = view.liveInstances(inst.cell, now).filter(i => i.nodeId !== this.nodeId).length +
          instances.filter(i => i.cell === inst.cell && (i.state === 'starting' || i.state === 'ready')).length
        refreshMs = cellRefreshMs(hosts, this.init.cellRefreshMinMs, this.init.cellRefreshPerSecond)
        refreshByCell.set(inst.cell, refreshMs)
      }
      const record: InstanceRecord = { ...inst, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: now, refreshMs }
      let bytes: Uint8Array
      try {
        bytes = await this.signLocal(signRecord(privateKey, 'instance', record, options), options)
      } catch (err) {
        // One instance the host reports badly (a field out of bounds) must not silence the others.
        if (!(err instanceof MalformedFleetRecordError)) throw err
        this.counters.skippedInstances++
        log.error('instance %s not sent: %e', inst.instanceId, err)
        continue
      }
      let batch = byCell.get(inst.cell)
      if (batch === undefined) byCell.set(inst.cell, batch = { items: [], ids: [] })
      batch.items.push({ bytes, ageMs: 0 })
      batch.ids.push(inst.instanceId)
      this.lastSent.set(inst.instanceId, { fingerprint, cpuPercent: inst.cpuPercent, sentMs: now, refreshMs, ...(last?.resend === true ? { misses: last.misses } : {}) })
      this.counters.sent.instance++
    }
    for (const id of this.lastSent.keys()) if (!present.has(id)) this.lastSent.delete(id)
    for (const [cell, { items, ids }] of byCell) {
      const topic = cellTopic(cell)
      const reached = await this.publishAll(topic, items)
      // Not handed to gossipsub: these instances go again at the next heartbeat.
      if (reached === undefined) {
        for (const id of ids) this.lastSent.delete(id)
        continue
      }
      // Handed over but taken by none of the followers gossipsub knows (their streams from this node
      // not open yet, as for releases): again at the next heartbeats, a bounded number of times. A cell
      // nobody follows is not retried: its followers pull its records when they start following.
      const followers = this.init.pubsub.getSubscribers?.(topic).length ?? 0
      if (followers === 0 || reached > 0) continue
      for (const id of ids) {
        const sent = this.lastSent.get(id)
        if (sent === undefined) continue
        sent.misses = (sent.misses ?? 0) + 1
        sent.resend = sent.misses <= MAX_INSTANCE_RESENDS
        if (sent.resend) this.counters.republished++
      }
    }
  }

  /** A member record is due for a change: at once for slots, free slots, leaving or cells; load only once memberLoadMinIntervalMs has passed. */
  private memberDue (last: { fields: MemberFields, sentMs: number }, fields: MemberFields, cpuCores: number, now: number): boolean {
    if (memberStructureChanged(last.fields, fields)) return true
    return memberLoadChanged(last.fields, fields, cpuCores) && now >= last.sentMs + this.memberLoadMinIntervalMs
  }

  /**
   * Publishes the pending node, member and down records on the members topic in one bundle; those
   * it reached a peer with are no longer pending. Without a newly signed record (`fresh`) this is a
   * retry, skipped while gossipsub knows no subscriber of the topic.
   */
  private async flushMembers (fresh: boolean): Promise<void> {
    const items = [this.pendingNode, this.pendingMember, ...this.pendingDown.values()].filter((b): b is Uint8Array => b !== undefined)
    if (items.length === 0) return
    if (!fresh) {
      if (this.init.pubsub.getSubscribers?.(this.membersTopic).length === 0) return
      this.counters.republished += items.length
    }
    const reached = await this.publishAll(this.membersTopic, items.map(bytes => ({ bytes, ageMs: 0 })))
    if (reached === undefined || reached === 0) return
    // Reached a peer: what was sent stops being pending (a newer record signed meanwhile stays).
    if (this.pendingNode !== undefined && items.includes(this.pendingNode)) this.pendingNode = undefined
    if (this.pendingMember !== undefined && items.includes(this.pendingMember)) this.pendingMember = undefined
    for (const [subject, bytes] of [...this.pendingDown]) if (items.includes(bytes)) this.pendingDown.delete(subject)
  }

  /** Publishes items bundled into frames: how many peers the frame that reached the fewest reached; undefined when a frame failed to publish. */
  private async publishAll (topic: string, items: BundleItem[]): Promise<number | undefined> {
    let failed = false
    let fewest = Infinity
    for (const frame of encodeBundles(items, MAX_MESSAGE_BYTES)) {
      const failuresBefore = this.counters.publishFailures
      fewest = Math.min(fewest, await this.publish(topic, frame))
      if (this.counters.publishFailures !== failuresBefore) failed = true
    }
    return failed ? undefined : fewest === Infinity ? 0 : fewest
  }

  /**
   * The cells followed automatically: those this node hosts (not stopped or crashed), always, and
   * the cells with a release or desired record that followPolicy wants (default: all of them).
   */
  private wantedCells (instances: readonly LocalInstanceState[], now: number): Set<string> {
    const cells = new Set<string>()
    for (const i of instances) if (i.state !== 'stopped' && i.state !== 'crashed') cells.add(i.cell)
    const released = new Set<string>()
    for (const cell of this.init.view.cells(now)) {
      if (this.init.view.claimants(cell).length === 0) continue
      released.add(cell)
      if (this.policyWants(cell)) cells.add(cell)
    }
    // Answers are kept for the view's released cells only (the view bounds those).
    for (const cell of [...this.policyAnswers.keys()]) if (!released.has(cell)) this.policyAnswers.delete(cell)
    return cells
  }

  /** followPolicy's answer for `cell`, asked once and remembered until refollow(); a policy that throws counts as yes. */
  private policyWants (cell: string): boolean {
    const policy = this.init.followPolicy
    if (policy === undefined) return true
    let answer = this.policyAnswers.get(cell)
    if (answer === undefined) {
      try {
        answer = policy(cell)
      } catch (err) {
        log.error('followPolicy failed for cell %s (followed): %e', cell, err)
        answer = true
      }
      this.policyAnswers.set(cell, answer)
    }
    return answer
  }

  /**
   * Per-cell: asks followPolicy again about every cell with a release or desired record (the host
   * calls it when its policy's answers may have changed, e.g. its standby ranking moved). Newly wanted
   * cells are subscribed and pulled at once; cells neither hosted, wanted nor explicitly followed are
   * unsubscribed. The view keeps an unfollowed cell's instances until they expire (3 × their
   * refreshMs without a resend, which no longer reaches this node): nothing removes them earlier.
   * No-op in fleet mode or before start().
   */
  refollow (): void {
    if (!this.started || !this.perCell) return
    this.policyAnswers.clear()
    this.autoCells = this.wantedCells((this.init.localInstances?.() ?? []).slice(0, this.maxLocalInstances), this.init.clock.now())
    this.syncFollowed()
  }

  /**
   * Follows `cell`: subscribes its topic (records of it are validated and kept), and pulls its
   * current records once through `pullCell`. Explicit follows are kept until unfollow(); in fleet
   * mode the fleet topic carries every cell, so the cell is only remembered. Throws
   * FollowedCellsLimitError beyond maxFollowedCells and MalformedFleetRecordError for an invalid name.
   */
  follow (cell: string): void {
    checkCellName(cell)
    if (this.explicitCells.has(cell)) return
    const union = new Set([...this.explicitCells, ...this.subscribed.keys()])
    if (!union.has(cell) && union.size >= this.maxFollowedCells) {
      throw new FollowedCellsLimitError(`this node follows ${union.size} cells, at most ${this.maxFollowedCells}`)
    }
    this.explicitCells.add(cell)
    this.syncFollowed()
  }

  /** Ends an explicit follow(); the cell stays followed while this node hosts it or has its release. */
  unfollow (cell: string): void {
    if (!this.explicitCells.delete(cell)) return
    this.syncFollowed()
  }

  /** The cells whose topics this node is subscribed to, sorted. */
  followed (): string[] {
    return [...this.subscribed.keys()].sort()
  }

  /** Subscribes the wanted cells (explicit first, then automatic, up to the bound) and leaves the rest. */
  private syncFollowed (): void {
    if (!this.started || !this.perCell) return
    const wanted = new Set<string>()
    for (const cell of this.explicitCells) wanted.add(cell)
    // Cells already followed keep their place, so the set does not churn at the bound.
    for (const cell of this.autoCells) if (this.subscribed.has(cell) && wanted.size < this.maxFollowedCells) wanted.add(cell)
    let overflow = 0
    for (const cell of [...this.autoCells].sort()) {
      if (wanted.has(cell)) continue
      if (wanted.size < this.maxFollowedCells) wanted.add(cell)
      else overflow++
    }
    if (overflow > 0) {
      this.counters.followOverflow += overflow
      log('%d cells not followed: %d followed at most', overflow, this.maxFollowedCells)
    }
    for (const cell of [...this.subscribed.keys()]) if (!wanted.has(cell)) this.unsubscribeCell(cell)
    for (const cell of wanted) if (!this.subscribed.has(cell)) this.subscribeCell(cell)
  }

  private subscribeCell (cell: string): void {
    const { pubsub } = this.init
    const topic = cellTopic(cell)
    const validator: TopicValidatorFn = async (source, msg) => await this.validateCell(cell, source, msg)
    this.subscribed.set(cell, validator)
    pubsub.topicValidators.set(topic, validator)
    scoreTopic(pubsub, topic)
    pubsub.subscribe(topic)
    this.cellPullQueue.add(cell)
    this.pumpCellPulls()
  }

  private unsubscribeCell (cell: string): void {
    const { pubsub } = this.init
    const topic = cellTopic(cell)
    const validator = this.subscribed.get(cell)
    this.subscribed.delete(cell)
    this.cellPullQueue.delete(cell)
    pubsub.unsubscribe(topic)
    if (validator !== undefined && pubsub.topicValidators.get(topic) === validator) pubsub.topicValidators.delete(topic)
    unscoreTopic(pubsub, topic)
  }

  private pumpCellPulls (): void {
    const pull = this.init.pullCell
    if (pull === undefined) { this.cellPullQueue.clear(); return }
    const max = this.init.maxCellPullsInFlight ?? 2
    while (this.started && this.cellPullsInFlight < max && this.cellPullQueue.size > 0) {
      const cell = this.cellPullQueue.values().next().value as string
      this.cellPullQueue.delete(cell)
      this.cellPullsInFlight++
      this.counters.cellPulls++
      pull(cell, { signal: this.shutdown.signal }).catch((err) => {
        this.counters.cellPullFailures++
        log('pulling cell %s failed: %e', cell, err)
      }).finally(() => {
        this.cellPullsInFlight--
        this.pumpCellPulls()
      })
    }
  }

  /** A release or desired record arrived: follow its cell now rather than at the next heartbeat. */
  private onViewChange (evt: Event): void {
    const change = (evt as CustomEvent<FleetChange>).detail
    if (change === undefined) return
    if ((change.kind === 'release' || change.kind === 'desired') && change.op === 'upsert' && change.cell !== undefined && !this.autoCells.has(change.cell) && this.policyWants(change.cell)) {
      this.autoCells.add(change.cell)
      this.syncFollowed()
    }
    // A down report about this node (however it arrived: gossip or a pull): refute it at once.
    if (change.kind === 'down' && change.op === 'upsert' && (change.nodeId === this.nodeId || change.key === this.nodeId)) this.refuteNow()
  }

  private refuteNow (): void {
    this.refute = true
    this.soon()
  }

  /** The view holds a member record of a node whose full record it lacks: pull that record from the peer that sent it. */
  private onNeedNode (evt: Event): void {
    const detail = (evt as CustomEvent<{ nodeId?: unknown, from?: unknown }>).detail
    if (detail == null || typeof detail.nodeId !== 'string' || typeof detail.from !== 'string') return
    // A record a validator is applying: the validator asks itself, with the propagation source.
    if (this.validating.has(detail.nodeId)) return
    this.requestNode(detail.nodeId, detail.from)
  }

  private requestNode (nodeId: string, from: string, cell?: string): void {
    if (this.init.pullNode === undefined || !this.started || nodeId === this.nodeId) return
    const queued = this.nodePullQueue.get(nodeId)
    if (queued !== undefined) {
      if (cell !== undefined && queued.cells.size < MAX_NODE_PULL_CELLS) queued.cells.add(cell)
      else this.counters.nodePullsSkipped++
      return
    }
    const now = this.init.clock.now()
    const last = this.nodePullTimes.get(nodeId)
    const interval = this.init.nodePullIntervalMs ?? 10_000
    if ((last !== undefined && now - last < interval) || this.nodePullQueue.size >= MAX_NODE_PULL_QUEUE) {
      this.counters.nodePullsSkipped++
      return
    }
    this.nodePullQueue.set(nodeId, { from, cells: new Set(cell !== undefined ? [cell] : []) })
    // After the current validation: a bundle may name the same node for several cells.
    queueMicrotask(() => { this.pumpNodePulls() })
  }

  private pumpNodePulls (): void {
    const pull = this.init.pullNode
    if (pull === undefined) return
    const max = this.init.maxNodePullsInFlight ?? 4
    while (this.started && this.nodePullsInFlight < max && this.nodePullQueue.size > 0) {
      const [nodeId, { from, cells }] = this.nodePullQueue.entries().next().value as [string, { from: string, cells: Set<string> }]
      this.nodePullQueue.delete(nodeId)
      this.nodePullTimes.delete(nodeId)
      if (this.nodePullTimes.size >= MAX_NODE_PULL_TIMES) this.nodePullTimes.delete(this.nodePullTimes.keys().next().value as string)
      this.nodePullTimes.set(nodeId, this.init.clock.now())
      this.nodePullsInFlight++
      this.counters.nodePulls++
      pull(nodeId, from, { signal: this.shutdown.signal, ...(cells.size > 0 ? { cells: [...cells] } : {}) }).catch((err) => {
        this.counters.nodePullFailures++
        log('pulling node %s from %s failed: %e', nodeId, from, err)
      }).finally(() => {
        this.nodePullsInFlight--
        this.pumpNodePulls()
      })
    }
  }

  /**
   * Per-cell: reports `subject` down (the failure detector lost it and could not redial): signs a
   * down report with this node's key, applies it to the local view and publishes it on the members
   * topic. Throws FleetRecordRejectedError when the local view refuses it (e.g. a stale subjectSeq)
   * and DisseminationModeError in fleet mode.
   */
  async reportDown (subject: string, subjectSeq: number, options: AbortOptions = {}): Promise<void> {
    if (!this.perCell) throw new DisseminationModeError('down reports need per-cell dissemination')
    const { clock, privateKey, view } = this.init
    const env = await signRecord(privateKey, 'down', { nodeId: this.nodeId, subject, subjectSeq, seq: this.nextSeq(), sentMs: clock.now() }, options)
    const result = await view.apply(env, { from: this.nodeId, signal: options.signal })
    if (!result.accepted && result.reason !== 'duplicate') {
      throw new FleetRecordRejectedError(`down report refused by the local fleet view: ${result.reason}`, result.reason)
    }
    options.signal?.throwIfAborted()
    this.counters.sent.down++
    const bytes = encodeEnvelope(env)
    if (await this.publish(this.membersTopic, bytes) > 0) return
    // Reached no peer: sent again with the heartbeats' member records until one takes it (the
    // newest report per subject; the oldest subject's report is dropped beyond the bound).
    this.pendingDown.delete(subject)
    if (this.pendingDown.size >= MAX_PENDING_DOWN) this.pendingDown.delete(this.pendingDown.keys().next().value as string)
    this.pendingDown.set(subject, bytes)
  }

  /** Verifies a signed release from core/identity through the local view, then gossips it. */
  async publishRelease (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('release', signed, options)
  }

  /** Same as publishRelease for a signed desired-version record (publish, rollback). */
  async publishDesired (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('desired', signed, options)
  }

  /** Same as publishRelease for a signed retire record (`cell retire`). */
  async publishRetire (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('retire', signed, options)
  }

  private async publishSigned (kind: 'release' | 'desired' | 'retire', signed: Uint8Array, options: AbortOptions): Promise<void> {
    const envelope = { kind, signed }
    const bytes = encodeEnvelope(envelope)
    const result = await this.init.view.apply(envelope, { from: this.nodeId, signal: options.signal })
    // Re-gossiping a record we already hold is fine (helps late joiners); anything else is refused.
    if (!result.accepted && result.reason !== 'duplicate') {
      throw new FleetRecordRejectedError(`${kind} refused by the local fleet view: ${result.reason}`, result.reason)
    }
    options.signal?.throwIfAborted()
    // gossipsub skips a subscriber whose stream from this peer is not open yet (a publisher that has
    // just connected) and says so only in its recipients; such a release would reach nobody until a
    // node pulled it from this peer. Publish again (a new message id each time under StrictSign)
    // while subscribers are known but none took it, for a bounded time.
    for (let attempt = 1; ; attempt++) {
      const recipients = await this.publish(this.releaseTopic, bytes)
      const subscribers = this.init.pubsub.getSubscribers?.(this.releaseTopic).length ?? 0
      if (recipients > 0 || subscribers === 0 || attempt >= RELEASE_PUBLISH_ATTEMPTS) return
      this.counters.releaseRepublished++
      await new Promise<void>((resolve) => { this.init.clock.setTimeout(resolve, RELEASE_PUBLISH_RETRY_MS) })
      options.signal?.throwIfAborted()
    }
  }

  private family (topic: string): FleetTopicFamily {
    return topicFamily(topic, { topic: this.topic, releaseTopic: this.releaseTopic, membersTopic: this.membersTopic })
  }

  /** Publishes `data`; how many peers gossipsub handed it to (0 on failure). */
  private async publish (topic: string, data: Uint8Array): Promise<number> {
    try {
      const result = await this.init.pubsub.publish(topic, data, { allowPublishToZeroTopicPeers: true, ignoreDuplicatePublishError: true }) as { recipients?: unknown[] } | undefined
      this.counters.published++
      this.counters.bytes.out[this.family(topic)] += data.length
      return result?.recipients?.length ?? 0
    } catch (err) {
      this.counters.publishFailures++
      log('publish on %s failed: %e', topic, err)
      return 0
    }
  }

  private async validate (_propagationSource: PeerId, msg: Message): Promise<TopicValidatorResult> {
    this.counters.bytes.in[this.family(msg.topic)] += msg.data.length
    // With StrictSign, `from` is the publisher gossipsub authenticated; unsigned messages are
    // treated as relayed, so only the records' own origin signatures count.
    const from = msg.type === 'signed' ? msg.from.toString() : undefined
    let results: ApplyResult[]
    try {
      // gossipsub has verified the StrictSign message signature by `from`; the view still checks
      // every record's own signature and whether its node holds a grant.
      results = await this.init.view.applyFrame(msg.data, { from, relayed: from === undefined })
    } catch {
      return this.verdict('reject')
    }
    return this.verdictOf(results, from)
  }

  private verdictOf (results: ApplyResult[], from: string | undefined): TopicValidatorResult {
    if (results.some(r => r.accepted || (r.reason === 'duplicate' && from !== undefined))) return this.verdict('accept')
    if (results.some(r => !r.accepted && REJECT_REASONS.has(r.reason))) return this.verdict('reject')
    return this.verdict('ignore')
  }

  /** Members topic: node, member and down records only; a down report about this node is refuted. */
  private async validateMembers (propagationSource: PeerId, msg: Message): Promise<TopicValidatorResult> {
    return await this.validateScoped(propagationSource, msg, (env) => env.kind === 'node' || env.kind === 'member' || env.kind === 'down', (env, result) => {
      if (env.kind === 'down' && env.record.subject === this.nodeId && result.accepted) this.refuteNow()
    })
  }

  /**
   * A cell topic: instance records of exactly that cell, and its claims' snapshot and pin records
   * (a stateful cell's followers restore from them); anything else is the sender's fault.
   */
  private async validateCell (cell: string, propagationSource: PeerId, msg: Message): Promise<TopicValidatorResult> {
    return await this.validateScoped(propagationSource, msg, (env) => (env.kind === 'instance' || env.kind === 'snapshot' || env.kind === 'pin') && env.record.cell === cell)
  }

  private async validateScoped (source: PeerId, msg: Message, belongs: (env: FleetEnvelope) => boolean, after?: (env: FleetEnvelope, result: ApplyResult) => void): Promise<TopicValidatorResult> {
    this.counters.bytes.in[this.family(msg.topic)] += msg.data.length
    const from = msg.type === 'signed' ? msg.from.toString() : undefined
    let entries
    try {
      entries = decodeFrame(msg.data)
    } catch {
      return this.verdict('reject')
    }
    // A record on a topic it does not belong to is never applied: the topic is what followers trust
    // to bound what they receive, so a mismatch is the publisher's fault, whatever its signatures.
    if (entries.some(e => !belongs(e.envelope))) {
      this.counters.wrongTopic++
      return this.verdict('reject')
    }
    const results: ApplyResult[] = []
    for (const entry of entries) {
      const relayed = from === undefined
      const env = entry.envelope
      const origin = 'record' in env ? env.record.nodeId : undefined
      if (origin !== undefined) this.validating.set(origin, (this.validating.get(origin) ?? 0) + 1)
      let result: ApplyResult
      try {
        result = await this.init.view.apply(env, { from, relayed, ageMs: relayed ? entry.ageMs : 0 })
      } finally {
        if (origin !== undefined) {
          const n = (this.validating.get(origin) ?? 1) - 1
          if (n === 0) this.validating.delete(origin)
          else this.validating.set(origin, n)
        }
      }
      if (!result.accepted && result.reason === 'unknown-node' && origin !== undefined) {
        // The node's full record is missing here: pull it from the peer that just sent this (it is
        // connected, and it accepted the record, so it holds the node's record), with the cell of a
        // dropped instance so that comes back too. A down report names two nodes: ask for the missing one.
        const missing = env.kind === 'down' && this.init.view.lastSeenMs('node', origin) !== undefined ? env.record.subject : origin
        this.requestNode(missing, source.toString(), env.kind === 'instance' ? env.record.cell : undefined)
      }
      after?.(env, result)
      results.push(result)
    }
    return this.verdictOf(results, from)
  }

  private verdict (v: 'accept' | 'ignore' | 'reject'): TopicValidatorResult {
    this.counters.received[v]++
    // The gossipsub enum's values are exactly these strings; a type-only import keeps its runtime out of core.
    return v as TopicValidatorResult
  }
}
