// FleetView: this node's picture of the fleet, built only from records that pass the rules below.
// Pure apart from the injected Clock and verifier ports, so it runs the same in a node, a browser
// tab and an edge worker, and tests drive it with a fake clock.
import { logger } from '@libp2p/logger'
import type { AbortOptions } from '@libp2p/interface'
import type { Clock } from '../ports.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { decodeFrame, encodeBundles, encodeEnvelope } from './codec.ts'
import type {
  BundleItem, FleetEnvelope, SignedDownEnvelope, SignedInstanceEnvelope, SignedMemberEnvelope, SignedNodeEnvelope, SignedPinEnvelope, SignedReleaseEnvelope,
  SignedSnapshotEnvelope
} from './codec.ts'
import { LIMITS, MAX_MESSAGE_BYTES, checkReleaseFields } from './records.ts'
import type {
  DesiredVersionRecord, DownRecord, FleetRecordKind, InstanceRecord, MemberRecord, NodeRecord, ReleaseFields, ReleaseRecord, RetireFields, RetireRecord
} from './records.ts'
import { verifyRecord } from './sign.ts'
import { SnapshotBook } from './snapshot-book.ts'
import type { SnapshotBookInit, SnapshotBookStats } from './snapshot-book.ts'
import type { PinRecord, SnapshotRecord } from './snapshots.ts'

const log = logger('cell:fleet')

/** Nodes the 'need-node' rate limit remembers (older entries are past their interval anyway). */
const NEED_NODE_REMEMBERED = 1024

/** Releases the view keeps per (authority, cell): the newest and the ones before it (issue 13 point 5). */
export const RELEASE_HISTORY = 8

/** Port to core/identity: checks a signed release/desired record and returns what it vouches for; throws when invalid. */
export type SignedRecordVerifier = (signed: Uint8Array, options: AbortOptions) => Promise<ReleaseFields>
/** Port to core/identity: checks a signed retire record (trust and signature); throws when invalid. */
export type RetireVerifier = (signed: Uint8Array, options: AbortOptions) => Promise<RetireFields>

export type TrustSubject =
  | { kind: 'node', record: NodeRecord }
  | { kind: 'instance', record: InstanceRecord }
  | { kind: 'release', record: ReleaseRecord }
  | { kind: 'desired', record: DesiredVersionRecord }
  | { kind: 'retire', record: RetireRecord }
  /** A claim owner's snapshot announcement: counts only from a node with a host grant for the cell. */
  | { kind: 'snapshot', record: SnapshotRecord }
  /** A holder's pin of `snapshot` (held by the view): counts only from a node with a host grant for the cell. */
  | { kind: 'pin', record: PinRecord, snapshot: SnapshotRecord }

/** Policy hook (e.g. "does the cell's authority grant this node the host role?"). */
export type TrustPolicy = (subject: TrustSubject, context: { from?: string }) => boolean | Promise<boolean>

export const DROP_REASONS = [
  'malformed', 'wrong-origin', 'bad-signature', 'unverifiable', 'untrusted', 'stale', 'duplicate',
  'future', 'expired', 'overflow-nodes', 'overflow-instances', 'overflow-node-instances', 'overflow-cells',
  'overflow-authority-cells', 'unknown-snapshot', 'overflow-snapshots',
  /** A member or down record reached a view whose liveness is 'heartbeat' (fleet mode). */
  'wrong-liveness',
  /**
   * A member or (under 'members' liveness) instance record of a node, or a down report from a
   * reporter or about a subject, whose full node record the view does not hold. For a correctly signed member record or down report the
   * view also dispatches 'need-node' (rate-limited) so the gossip layer can pull the record.
   */
  'unknown-node',
  /** A down report about a subject that already has LIMITS.downReporters other reporters. */
  'overflow-down',
  /**
   * 'members' liveness: an instance record of a node that is down in this view (until it refutes),
   * or a down report from a reporter that is down or silent past memberTtlMs here.
   */
  'node-down'
] as const
export type DropReason = typeof DROP_REASONS[number]

export type ApplyResult = { accepted: true, kind: FleetRecordKind } | { accepted: false, kind: FleetRecordKind, reason: DropReason }

export interface ApplyOptions extends AbortOptions {
  /** Peer that sent the record: gossipsub's signed `from` for gossip, the neighbour for a snapshot. */
  from?: string
  /** True for records relayed by a neighbour (snapshots): origin is proven by signature only. */
  relayed?: boolean
  /** How long the relaying peer had held the record; makes relayed records age correctly. */
  ageMs?: number
}

/**
 * Port to core/identity's SequenceGuard (one per record kind): the highest seq accepted per
 * `${authority} ${cell}`, persisted by the host so a replayed record stays refused after a restart.
 */
export interface SequenceFloor {
  highestSeq: (key: string) => number
  accept: (record: { cell: string, seq: number }) => boolean
}

export interface FleetChange {
  kind: FleetRecordKind
  op: 'upsert' | 'expire'
  /** nodeId (a down report: its subject), `${nodeId}/${instanceId}` or cell name. */
  key: string
  cell?: string
  nodeId?: string
}

/** How the view decides that a node (and so its replicas) is alive. */
export type Liveness = 'heartbeat' | 'members'

/** Detail of the 'need-node' event: the view lacks (an up-to-date) full node record of `nodeId`. */
export interface NeedNode {
  nodeId: string
  /** The peer the record that revealed it came from (pull the node record from it), when known. */
  from?: string
}

/** Detail of the 'down-report' event, dispatched for every accepted down report. */
export interface DownReport {
  subject: string
  reporter: string
  subjectSeq: number
  /** True when this report completed the quorum: the subject is now down in this view. */
  verdict: boolean
}

/** What the view holds of the down reports about one node (`downReportsAbout`). */
export interface DownReportsAbout {
  subject: string
  /** Distinct reporters at the subject's newest seq, sorted. */
  reporters: string[]
  /** The subject's newest node/member seq in this view (reports count only at this seq). */
  subjectSeq: number
  /** Reporters needed for a verdict now: min(downQuorum, live full nodes besides the subject), at least 1. */
  quorum: number
  down: boolean
}

export interface FleetViewInit {
  clock: Clock
  /**
   * 'heartbeat' (default, fleet mode): a node lives while its node record is younger than nodeTtlMs,
   * member and down records are dropped ('wrong-liveness'). 'members' (per-cell mode): a node lives
   * while its newest node or member record is younger than memberTtlMs and no quorum of down reports
   * stands against it; its replicas count only while it lives.
   */
  liveness?: Liveness
  /** 'members' liveness: how long a node lives after its newest node or member record (default 3 h). */
  memberTtlMs?: number
  /** 'members' liveness: distinct full-node reporters that make a node down (default 2; fewer when fewer live full nodes). */
  downQuorum?: number
  /** 'need-node' events per node at most once per this (default 5 s). */
  needNodeIntervalMs?: number
  /** 'need-node' events in all, at most this many per second (default 8). */
  maxNeedNodePerSecond?: number
  verifyRelease?: SignedRecordVerifier
  verifyDesired?: SignedRecordVerifier
  /** Without it, retire records are dropped as 'unverifiable'. */
  verifyRetire?: RetireVerifier
  /** Default: trust every correctly signed record. */
  isTrusted?: TrustPolicy
  /** Heartbeat interval the ttl defaults derive from (default 1000). */
  heartbeatMs?: number
  /** Default 3 × heartbeatMs. */
  nodeTtlMs?: number
  /** Default 3 × heartbeatMs. */
  instanceTtlMs?: number
  /** Records sent further than this in the future, or older than ttl + this, are refused (default 30 s). */
  maxClockSkewMs?: number
  maxNodes?: number
  maxInstances?: number
  maxInstancesPerNode?: number
  maxCells?: number
  /** Cells one authority may claim (releases and desired records count once per cell), default 1024. */
  maxCellsPerAuthority?: number
  /**
   * Release and desired sequence numbers are signing-time milliseconds (or one above the last seen):
   * a seq further than this past the local clock is refused as 'future' (default 1 h), so one
   * record signed with seq 2^53 cannot lock a cell against every later publish.
   */
  maxSeqAheadMs?: number
  /** Highest release / desired seq remembered across restarts (per authority and cell). */
  sequenceFloors?: { release: SequenceFloor, desired: SequenceFloor, retire?: SequenceFloor }
  /** Upper bound on one snapshot (all frames together), default 32 MiB. */
  maxSnapshotBytes?: number
  /** Bounds and ttls of snapshot and pin records (claim snapshots, issue 10). */
  snapshots?: SnapshotBookInit
}

export interface FleetStats {
  nodes: number
  instances: number
  releases: number
  desired: number
  /** Snapshot and pin records are counted in `snapshotStats()`. */
  accepted: Record<Exclude<FleetRecordKind, 'snapshot' | 'pin'>, number>
  dropped: Record<DropReason, number>
  expired: { node: number, instance: number }
  snapshotTruncated: number
  /** 'members' liveness only. */
  members?: MemberStats
  /** `digest()`: equal on two nodes when they see the same live nodes, replicas and releases. */
  digest?: number
}

export interface MergeResult { accepted: number, dropped: number }

export interface MemberStats {
  /** Member records held. */
  members: number
  /** Nodes with down reports held / nodes down now. */
  reported: number
  down: number
  /** Down verdicts reached, and nodes brought back by a newer record of their own. */
  verdicts: number
  refuted: number
  /** 'need-node' events dispatched, and ones the rate limit held back. */
  needNode: number
  needNodeSuppressed: number
}

interface HeldDown { reports: Map<string, Held<DownRecord>> }

interface Held<T> { record: T, bytes: Uint8Array, receivedMs: number }

function newer (a: { seq: number, sentMs: number }, b: { seq: number, sentMs: number }): boolean {
  return a.seq > b.seq || (a.seq === b.seq && a.sentMs > b.sentMs)
}

export class FleetView extends EventTarget {
  readonly nodeTtlMs: number
  readonly instanceTtlMs: number
  private readonly clock: Clock
  private readonly init: FleetViewInit
  private readonly maxClockSkewMs: number
  private readonly maxNodes: number
  private readonly maxInstances: number
  private readonly maxInstancesPerNode: number
  private readonly maxCells: number
  private readonly maxCellsPerAuthority: number
  private readonly maxSeqAheadMs: number
  private readonly maxSnapshotBytes: number
  private readonly nodeMap = new Map<string, Held<NodeRecord>>()
  private readonly instanceMap = new Map<string, Held<InstanceRecord>>()
  private readonly instancesPerNode = new Map<string, number>()
  private readonly releaseMap = new Map<string, Held<ReleaseRecord>>()
  /**
   * Older releases per (authority, cell) behind the newest in releaseMap, highest seq first, at most
   * RELEASE_HISTORY - 1: a node that joins after the newest was halted still learns the previous
   * release (from a neighbour's snapshot) and can fall back to it.
   */
  private readonly releaseHistory = new Map<string, Array<Held<ReleaseRecord>>>()
  private readonly desiredMap = new Map<string, Held<DesiredVersionRecord>>()
  /** Retire records per (authority, cell); only an authority that claims the cell may retire it. */
  private readonly retireMap = new Map<string, Held<RetireRecord>>()
  /** cell → authorities with a release or desired record for it; authority → its cells. Both bounded by the maps. */
  private readonly claimsByCell = new Map<string, Set<string>>()
  private readonly cellsByAuthority = new Map<string, Set<string>>()
  /** Claim snapshots and their pins (snapshot-book.ts). */
  private readonly book: SnapshotBook
  private lastRoomScanMs = Number.NEGATIVE_INFINITY
  private readonly counters: Omit<FleetStats, 'nodes' | 'instances' | 'releases' | 'desired' | 'members'>
  readonly liveness: Liveness
  readonly memberTtlMs: number
  readonly downQuorum: number
  /** How long a node lives after its newest record: nodeTtlMs, or memberTtlMs under 'members' liveness. */
  private readonly nodeLifeMs: number
  /** 'members' liveness: the newest member record of each held node (never without its node record). */
  private readonly memberMap = new Map<string, Held<MemberRecord>>()
  /** 'members' liveness: node records with member fields overlaid, as nodes()/node() return them. */
  private readonly effective = new Map<string, NodeRecord>()
  /** 'members' liveness: down reports per subject (held subjects only; at most LIMITS.downReporters each). */
  private readonly downReports = new Map<string, HeldDown>()
  private readonly downNodes = new Set<string>()
  private readonly needNodeIntervalMs: number
  private readonly maxNeedNodePerSecond: number
  /** nodeId → when 'need-node' last fired for it; bounded (oldest first out). */
  private readonly needNodeAt = new Map<string, number>()
  private needNodeWindowMs = Number.NEGATIVE_INFINITY
  private needNodeInWindow = 0
  private readonly memberCounters = { verdicts: 0, refuted: 0, needNode: 0, needNodeSuppressed: 0 }

  constructor (init: FleetViewInit) {
    super()
    this.init = init
    this.clock = init.clock
    const heartbeatMs = init.heartbeatMs ?? 1000
    this.nodeTtlMs = init.nodeTtlMs ?? 3 * heartbeatMs
    this.instanceTtlMs = init.instanceTtlMs ?? 3 * heartbeatMs
    this.maxClockSkewMs = init.maxClockSkewMs ?? 30_000
    this.maxNodes = init.maxNodes ?? 4096
    this.maxInstances = init.maxInstances ?? 65_536
    this.maxInstancesPerNode = init.maxInstancesPerNode ?? 256
    this.maxCells = init.maxCells ?? 4096
    this.maxCellsPerAuthority = init.maxCellsPerAuthority ?? 1024
    this.maxSeqAheadMs = init.maxSeqAheadMs ?? 3_600_000
    this.maxSnapshotBytes = init.maxSnapshotBytes ?? 32 * 1024 * 1024
    this.book = new SnapshotBook(init.snapshots)
    this.liveness = init.liveness ?? 'heartbeat'
    this.memberTtlMs = init.memberTtlMs ?? 3 * 3_600_000
    this.downQuorum = Math.max(1, init.downQuorum ?? 2)
    this.nodeLifeMs = this.liveness === 'members' ? this.memberTtlMs : this.nodeTtlMs
    this.needNodeIntervalMs = init.needNodeIntervalMs ?? 5000
    this.maxNeedNodePerSecond = init.maxNeedNodePerSecond ?? 8
    this.counters = {
      accepted: { node: 0, instance: 0, release: 0, desired: 0, retire: 0, member: 0, down: 0 },
      dropped: Object.fromEntries(DROP_REASONS.map(r => [r, 0])) as Record<DropReason, number>,
      expired: { node: 0, instance: 0 },
      snapshotTruncated: 0
    }
  }

  /** Applies one decoded envelope under the origin, signature, trust, ordering, time and bound rules. */
  async apply (envelope: FleetEnvelope, options: ApplyOptions = {}): Promise<ApplyResult> {
    options.signal?.throwIfAborted()
    const result = envelope.kind === 'node' || envelope.kind === 'instance'
      ? await this.applySigned(envelope, options)
      : envelope.kind === 'snapshot' || envelope.kind === 'pin'
        ? await this.applyStorage(envelope, options)
        : envelope.kind === 'member'
        ? await this.applyMember(envelope, options)
        : envelope.kind === 'down'
        ? await this.applyDown(envelope, options)
        : envelope.kind === 'retire'
        ? await this.applyRetire(envelope, options)
        : await this.applyRelease(envelope, options)
    if (result.accepted) {
      if (result.kind === 'snapshot' || result.kind === 'pin') this.book.accepted[result.kind]++
      else this.counters.accepted[result.kind]++
    } else {
      this.counters.dropped[result.reason]++
      log.trace('dropped %s record from %s: %s', result.kind, options.from, result.reason)
    }
    return result
  }

  /**
   * Decodes and applies one gossip message or sync frame. Malformed bytes are counted and
   * rethrown as MalformedFleetRecordError (the caller may penalise the sender).
   */
  async applyFrame (bytes: Uint8Array, options: ApplyOptions = {}): Promise<ApplyResult[]> {
    let entries
    try {
      entries = decodeFrame(bytes)
    } catch (err) {
      this.counters.dropped.malformed++
      throw err instanceof MalformedFleetRecordError ? err : new MalformedFleetRecordError('undecodable frame', { cause: err })
    }
    const results: ApplyResult[] = []
    for (const entry of entries) {
      results.push(await this.apply(entry.envelope, { ...options, ageMs: options.relayed === true ? entry.ageMs : 0 }))
    }
    return results
  }

  /** Applies a snapshot frame relayed by neighbour `from`: every record must carry its origin's signature. */
  async merge (frame: Uint8Array, options: { from?: string } & AbortOptions = {}): Promise<MergeResult> {
    const results = await this.applyFrame(frame, { ...options, relayed: true })
    const accepted = results.filter(r => r.accepted).length
    return { accepted, dropped: results.length - accepted }
  }

  private async applySigned (envelope: SignedNodeEnvelope | SignedInstanceEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const { kind, record } = envelope
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    if (options.relayed !== true && options.from !== record.nodeId) return drop('wrong-origin')
    const ttlMs = kind === 'node' ? this.nodeLifeMs : this.instanceTtl(record as InstanceRecord)
    const now = this.clock.now()
    if (record.sentMs > now + this.maxClockSkewMs) return drop('future')
    const ageMs = options.relayed === true ? Math.min(options.ageMs ?? 0, ttlMs) : 0
    if (record.sentMs + ttlMs + this.maxClockSkewMs < now || ageMs >= ttlMs) return drop('expired')
    const key = kind === 'node' ? record.nodeId : instanceKey(record as InstanceRecord)
    if (this.liveness === 'members' && kind === 'instance') {
      // A replica counts only with its node: pull an unknown node's record; a down node's replicas
      // wait for its refutation (not the sender's fault, so not 'untrusted').
      if (!this.nodeMap.has(record.nodeId)) return drop(await this.unknownNode(envelope, record.nodeId, options))
      if (this.downNodes.has(record.nodeId)) return drop('node-down')
    }

    // Cheap checks first so floods of stale or excess records never reach the crypto.
    const early = this.orderAndBounds(kind, key, record, now)
    if (early !== undefined) return drop(early)
    // Every record's own signature is checked, gossiped or relayed: the record is what peers relay
    // and act on, whatever the transport said about the message that carried it.
    if (!await verifyRecord(envelope, options)) return drop('bad-signature')
    if (!await this.trusted({ kind, record } as TrustSubject, options)) return drop('untrusted')
    // Re-check after the awaits: a concurrent apply may have stored a newer record meanwhile.
    const now2 = this.clock.now()
    const late = this.orderAndBounds(kind, key, record, now2)
    if (late !== undefined) return drop(late)

    const held = { record, bytes: encodeEnvelope(envelope), receivedMs: now2 - ageMs }
    if (kind === 'node') {
      const refutes = this.liveness === 'members' && record.seq > this.newestSeq(key)
      this.nodeMap.set(key, held as Held<NodeRecord>)
      if (this.liveness === 'members') {
        this.refreshEffective(key)
        if (refutes) this.refute(key, now2)
      }
      this.emitChange({ kind, op: 'upsert', key, nodeId: record.nodeId })
    } else {
      if (!this.instanceMap.has(key)) this.instancesPerNode.set(record.nodeId, (this.instancesPerNode.get(record.nodeId) ?? 0) + 1)
      this.instanceMap.set(key, held as Held<InstanceRecord>)
      const cell = (record as InstanceRecord).cell
      this.emitChange({ kind, op: 'upsert', key, cell, nodeId: record.nodeId })
    }
    return { accepted: true, kind }
  }

  /**
   * A member record ('members' liveness): origin, time and signature rules of node records; counts
   * only for a node whose full record the view holds (else 'unknown-node' and, once its signature
   * checks, a rate-limited 'need-node') and only when newer than both its member and node record
   * (one sequence per node); the trust policy judges the held node record, as for node records.
   */
  private async applyMember (envelope: SignedMemberEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const kind = 'member'
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    if (this.liveness !== 'members') return drop('wrong-liveness')
    const record = envelope.record
    const id = record.nodeId
    if (options.relayed !== true && options.from !== id) return drop('wrong-origin')
    const now = this.clock.now()
    const timing = this.timing(record, this.memberTtlMs, options, now)
    if (typeof timing === 'string') return drop(timing)
    const check = (): DropReason | undefined => {
      const node = this.nodeMap.get(id)
      if (node === undefined) return 'unknown-node'
      const existing = this.memberMap.get(id)
      if (existing !== undefined && !newer(record, existing.record)) {
        return existing.record.seq === record.seq && existing.record.sentMs === record.sentMs ? 'duplicate' : 'stale'
      }
      if (!newer(record, node.record)) return 'stale'
      return undefined
    }
    const early = check()
    if (early === 'unknown-node') return drop(await this.unknownNode(envelope, id, options))
    if (early !== undefined) return drop(early)
    if (!await verifyRecord(envelope, options)) return drop('bad-signature')
    const node = this.nodeMap.get(id)
    if (node === undefined) return drop('unknown-node')
    if (!await this.trusted({ kind: 'node', record: node.record }, options)) return drop('untrusted')
    const late = check()
    if (late !== undefined) return drop(late)
    const now2 = this.clock.now()
    const wasLive = this.nodeLive(id, now2)
    const refutes = record.seq > this.newestSeq(id)
    this.memberMap.set(id, { record, bytes: encodeEnvelope(envelope), receivedMs: now2 - timing })
    this.refreshEffective(id)
    if (refutes) this.refute(id, now2)
    this.emitChange({ kind, op: 'upsert', key: id, nodeId: id })
    // Back from a lapse or a down verdict: consumers that listen for nodes see it return.
    if (!wasLive && this.nodeLive(id, now2)) this.emitChange({ kind: 'node', op: 'upsert', key: id, nodeId: id })
    // The member record refers to a newer full record than the one held: ask for it.
    const held = this.nodeMap.get(id)
    if (held !== undefined && record.nodeSeq > held.record.seq) this.needNode(id, options.from, now2)
    return { accepted: true, kind }
  }

  /**
   * A down report ('members' liveness), signed by its reporter: the reporter's full record must be
   * held, trusted and of a 'full' node ('untrusted'), and live here ('node-down'); the subject's record must be held; the report must be
   * at the subject's newest seq in this view (older: 'stale'; newer than any record seen here:
   * 'future', so no report can outlive the subject's next record); at most LIMITS.downReporters
   * reporters per subject, the newest report per reporter. Enough reporters make the subject down.
   */
  private async applyDown (envelope: SignedDownEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const kind = 'down'
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    if (this.liveness !== 'members') return drop('wrong-liveness')
    const record = envelope.record
    const reporter = record.nodeId
    const subject = record.subject
    if (options.relayed !== true && options.from !== reporter) return drop('wrong-origin')
    const now = this.clock.now()
    const timing = this.timing(record, this.memberTtlMs, options, now)
    if (typeof timing === 'string') return drop(timing)
    const check = (nowMs: number): DropReason | undefined => {
      const by = this.nodeMap.get(reporter)
      if (by === undefined) return 'unknown-node'
      if (!by.record.roles.includes('full')) return 'untrusted'
      // Down or silent here (a race with other views, not the sender's fault).
      if (!this.nodeLive(reporter, nowMs)) return 'node-down'
      if (!this.nodeMap.has(subject)) return 'unknown-node'
      const newest = this.newestSeq(subject)
      if (record.subjectSeq < newest) return 'stale'
      if (record.subjectSeq > newest) return 'future'
      const reports = this.downReports.get(subject)
      const existing = reports?.reports.get(reporter)
      if (existing !== undefined && !newer(record, existing.record)) {
        return existing.record.seq === record.seq && existing.record.sentMs === record.sentMs ? 'duplicate' : 'stale'
      }
      if (existing === undefined && reports !== undefined && reports.reports.size >= LIMITS.downReporters) return 'overflow-down'
      if (reports === undefined && this.downReports.size >= this.maxNodes) return 'overflow-down'
      return undefined
    }
    const early = check(now)
    if (early === 'unknown-node' && !this.nodeMap.has(reporter)) return drop(await this.unknownNode(envelope, reporter, options))
    if (early !== undefined) return drop(early)
    if (!await verifyRecord(envelope, options)) return drop('bad-signature')
    const by = this.nodeMap.get(reporter)
    if (by === undefined) return drop('unknown-node')
    if (!await this.trusted({ kind: 'node', record: by.record }, options)) return drop('untrusted')
    const now2 = this.clock.now()
    const late = check(now2)
    if (late !== undefined) return drop(late)
    let reports = this.downReports.get(subject)
    if (reports === undefined) this.downReports.set(subject, reports = { reports: new Map() })
    reports.reports.set(reporter, { record, bytes: encodeEnvelope(envelope), receivedMs: now2 - timing })
    // Keyed by the subject (a node refutes reports about itself, whichever way they arrived).
    this.emitChange({ kind, op: 'upsert', key: subject, nodeId: subject })
    const verdict = this.judge(subject, now2)
    this.dispatchEvent(new CustomEvent<DownReport>('down-report', { detail: { subject, reporter, subjectSeq: record.subjectSeq, verdict } }))
    // A verdict changes the quorum of the others (one live full node fewer).
    if (verdict) this.rejudge(now2)
    return { accepted: true, kind }
  }

  /** Future/expired checks shared by member and down records; returns the relayed age or a drop reason. */
  private timing (record: { sentMs: number }, ttlMs: number, options: ApplyOptions, now: number): number | 'future' | 'expired' {
    if (record.sentMs > now + this.maxClockSkewMs) return 'future'
    const ageMs = options.relayed === true ? Math.min(options.ageMs ?? 0, ttlMs) : 0
    if (record.sentMs + ttlMs + this.maxClockSkewMs < now || ageMs >= ttlMs) return 'expired'
    return ageMs
  }

  /**
   * A record from a node the view has no full record of. When the rate limit lets a 'need-node'
   * through, the record's signature is checked first (so forged records cannot make the gossip
   * layer pull), then the event fires; either way the record is dropped as 'unknown-node'.
   */
  private async unknownNode (envelope: SignedMemberEnvelope | SignedDownEnvelope | SignedInstanceEnvelope | SignedNodeEnvelope, nodeId: string, options: ApplyOptions): Promise<DropReason> {
    if (!this.needNodeAllowed(nodeId, this.clock.now())) {
      this.memberCounters.needNodeSuppressed++
      return 'unknown-node'
    }
    if (!await verifyRecord(envelope, options)) return 'bad-signature'
    if (this.nodeMap.has(nodeId)) return 'unknown-node'
    this.needNode(nodeId, options.from, this.clock.now())
    return 'unknown-node'
  }

  private needNodeAllowed (nodeId: string, now: number): boolean {
    const last = this.needNodeAt.get(nodeId)
    if (last !== undefined && now - last < this.needNodeIntervalMs) return false
    if (now - this.needNodeWindowMs >= 1000) return true
    return this.needNodeInWindow < this.maxNeedNodePerSecond
  }

  private needNode (nodeId: string, from: string | undefined, now: number): void {
    if (!this.needNodeAllowed(nodeId, now)) {
      this.memberCounters.needNodeSuppressed++
      return
    }
    if (now - this.needNodeWindowMs >= 1000) {
      this.needNodeWindowMs = now
      this.needNodeInWindow = 0
    }
    this.needNodeInWindow++
    this.needNodeAt.delete(nodeId)
    this.needNodeAt.set(nodeId, now)
    // Bounded: entries older than the interval no longer matter; the oldest go first.
    while (this.needNodeAt.size > NEED_NODE_REMEMBERED) this.needNodeAt.delete(this.needNodeAt.keys().next().value as string)
    this.memberCounters.needNode++
    const detail: NeedNode = from !== undefined ? { nodeId, from } : { nodeId }
    this.dispatchEvent(new CustomEvent<NeedNode>('need-node', { detail }))
  }

  /** The highest node/member seq the view holds of a node (-1 when none). */
  private newestSeq (nodeId: string): number {
    return Math.max(this.nodeMap.get(nodeId)?.record.seq ?? -1, this.memberMap.get(nodeId)?.record.seq ?? -1)
  }

  /** When the view last heard from a node (its newest node or member record). */
  private lastHeardMs (nodeId: string): number | undefined {
    const node = this.nodeMap.get(nodeId)
    if (node === undefined) return undefined
    return Math.max(node.receivedMs, this.memberMap.get(nodeId)?.receivedMs ?? Number.NEGATIVE_INFINITY)
  }

  private nodeLive (nodeId: string, nowMs: number): boolean {
    const heard = this.lastHeardMs(nodeId)
    if (heard === undefined || heard + this.nodeLifeMs <= nowMs) return false
    return !this.downNodes.has(nodeId)
  }

  private refreshEffective (nodeId: string): void {
    const node = this.nodeMap.get(nodeId)
    if (node === undefined) { this.effective.delete(nodeId); return }
    const member = this.memberMap.get(nodeId)
    if (member === undefined || !newer(member.record, node.record)) { this.effective.set(nodeId, node.record); return }
    const m = member.record
    this.effective.set(nodeId, {
      ...node.record,
      capacity: { ...node.record.capacity, slots: m.slots, freeSlots: m.freeSlots },
      load: { cpuPercent: m.cpuPercent, memoryPercent: m.memoryPercent }
    })
  }

  /** A newer record of the node itself: its down reports no longer count, and a down verdict ends. */
  private refute (nodeId: string, nowMs: number): void {
    this.downReports.delete(nodeId)
    if (!this.downNodes.delete(nodeId)) return
    this.memberCounters.refuted++
    log('node %s refuted the down reports against it', nodeId)
    for (const [key, held] of this.instanceMap) {
      if (held.record.nodeId !== nodeId || held.receivedMs + this.instanceTtl(held.record) <= nowMs) continue
      this.emitChange({ kind: 'instance', op: 'upsert', key, cell: held.record.cell, nodeId })
    }
  }

  private liveFull (id: string, nowMs: number): boolean {
    return this.nodeMap.get(id)?.record.roles.includes('full') === true && this.nodeLive(id, nowMs)
  }

  private liveFullNodes (nowMs: number): number {
    let n = 0
    for (const id of this.nodeMap.keys()) if (this.liveFull(id, nowMs)) n++
    return n
  }

  /** min(downQuorum, live full nodes besides the subject), at least 1; `liveFull` may be passed in (one count per pass). */
  private quorum (subject: string, nowMs: number, liveFull = this.liveFullNodes(nowMs)): number {
    return Math.max(1, Math.min(this.downQuorum, liveFull - (this.liveFull(subject, nowMs) ? 1 : 0)))
  }

  /** Reporters whose reports count: at the subject's newest seq (all held ones are) and still held. */
  private countedReporters (subject: string): string[] {
    const reports = this.downReports.get(subject)
    if (reports === undefined) return []
    const newest = this.newestSeq(subject)
    return [...reports.reports.values()].filter(h => h.record.subjectSeq >= newest && this.nodeMap.has(h.record.nodeId)).map(h => h.record.nodeId).sort()
  }

  /** Marks the subject down when its reporters reach the quorum; true when that happened now. */
  private judge (subject: string, nowMs: number, liveFull?: number): boolean {
    if (this.downNodes.has(subject) || !this.nodeMap.has(subject)) return false
    if (this.countedReporters(subject).length < this.quorum(subject, nowMs, liveFull)) return false
    const wasLive = this.nodeLive(subject, nowMs)
    this.downNodes.add(subject)
    this.memberCounters.verdicts++
    log('node %s is down (reported by %s)', subject, this.countedReporters(subject).join(', '))
    if (wasLive) this.emitChange({ kind: 'node', op: 'expire', key: subject, nodeId: subject })
    for (const [key, held] of this.instanceMap) {
      if (held.record.nodeId !== subject || held.receivedMs + this.instanceTtl(held.record) <= nowMs) continue
      this.emitChange({ kind: 'instance', op: 'expire', key, cell: held.record.cell, nodeId: subject })
    }
    return true
  }

  /** After a verdict: other subjects may now reach their (smaller) quorum. Bounded by the subjects held. */
  private rejudge (nowMs: number): void {
    for (let changed = true; changed;) {
      changed = false
      // Counted once per pass: a verdict within the pass only makes the count too high (a later pass redoes it).
      const liveFull = this.liveFullNodes(nowMs)
      for (const subject of this.downReports.keys()) if (this.judge(subject, nowMs, liveFull)) changed = true
    }
  }

  /** Instance ttl: 3 × the host's promised refresh when the record carries one, else instanceTtlMs. */
  private instanceTtl (record: InstanceRecord): number {
    return record.refreshMs !== undefined ? 3 * record.refreshMs : this.instanceTtlMs
  }

  /** Is the instance's record fresh and (under 'members' liveness) its node live? */
  private instanceLive (held: Held<InstanceRecord>, nowMs: number): boolean {
    if (held.receivedMs + this.instanceTtl(held.record) <= nowMs) return false
    return this.liveness !== 'members' || this.nodeLive(held.record.nodeId, nowMs)
  }

  private orderAndBounds (kind: 'node' | 'instance', key: string, record: NodeRecord | InstanceRecord, now: number): DropReason | undefined {
    const existing = kind === 'node' ? this.nodeMap.get(key) : this.instanceMap.get(key)
    if (existing !== undefined) {
      if (newer(record, existing.record)) return undefined
      return existing.record.seq === record.seq && existing.record.sentMs === record.sentMs ? 'duplicate' : 'stale'
    }
    if (kind === 'node') {
      if (this.nodeMap.size >= this.maxNodes && (this.expireForRoom(now) === 0 || this.nodeMap.size >= this.maxNodes)) return 'overflow-nodes'
      return undefined
    }
    if (this.instanceMap.size >= this.maxInstances && (this.expireForRoom(now) === 0 || this.instanceMap.size >= this.maxInstances)) return 'overflow-instances'
    if ((this.instancesPerNode.get(record.nodeId) ?? 0) >= this.maxInstancesPerNode) return 'overflow-node-instances'
    return undefined
  }

  /**
   * A snapshot or pin record: the origin, time and signature rules of heartbeats (ttls from the
   * snapshot book), then order and bounds per claim (a pin must name a snapshot held here, by
   * content, and cannot come from the snapshot's owner), then the trust policy (a host grant for
   * the cell from an authority that claims it, as for heartbeats).
   */
  private async applyStorage (envelope: SignedSnapshotEnvelope | SignedPinEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const kind = envelope.kind
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    const record = envelope.record
    if (options.relayed !== true && options.from !== record.nodeId) return drop('wrong-origin')
    const ttlMs = kind === 'snapshot' ? this.book.snapshotTtlMs : this.book.pinTtlMs
    const now = this.clock.now()
    if (record.sentMs > now + this.maxClockSkewMs) return drop('future')
    const ageMs = options.relayed === true ? Math.min(options.ageMs ?? 0, ttlMs) : 0
    if (record.sentMs + ttlMs + this.maxClockSkewMs < now || ageMs >= ttlMs) return drop('expired')
    const check = (): DropReason | undefined => envelope.kind === 'snapshot' ? this.book.checkSnapshot(envelope.record, envelope.body.length + envelope.signature.length + 8) : this.book.checkPin(envelope.record)
    const early = check()
    if (early !== undefined) return drop(early)
    if (!await verifyRecord(envelope, options)) return drop('bad-signature')
    let subject: TrustSubject
    if (envelope.kind === 'snapshot') subject = { kind: 'snapshot', record: envelope.record }
    else {
      const snapshot = this.book.snapshots(envelope.record.claimId, now).find(s => s.nodeId === envelope.record.owner && s.tag === envelope.record.tag)
      if (snapshot === undefined) return drop('unknown-snapshot')
      subject = { kind: 'pin', record: envelope.record, snapshot }
    }
    if (!await this.trusted(subject, options)) return drop('untrusted')
    const late = check()
    if (late !== undefined) return drop(late)
    const now2 = this.clock.now()
    const bytes = encodeEnvelope(envelope)
    if (envelope.kind === 'snapshot') this.book.putSnapshot({ record: envelope.record, bytes, receivedMs: now2 - ageMs })
    else this.book.putPin({ record: envelope.record, bytes, receivedMs: now2 - ageMs })
    this.emitChange({ kind, op: 'upsert', key: record.claimId, cell: record.cell, nodeId: record.nodeId })
    return { accepted: true, kind }
  }

  /**
   * A retire record: same verification, replay, future-seq and floor rules as releases, keyed by
   * (authority, cell). It never claims a name: an authority with no release or desired record of
   * the cell cannot retire it (dropped as untrusted), so a rival cannot stop a cell it does not own.
   */
  private async applyRetire (envelope: SignedReleaseEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const kind = 'retire'
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    const verifier = this.init.verifyRetire
    if (verifier === undefined) return drop('unverifiable')
    let fields: RetireFields
    try {
      fields = await verifier(envelope.signed, { signal: options.signal })
    } catch (err) {
      options.signal?.throwIfAborted()
      log.trace('retire record failed verification: %e', err)
      return drop('bad-signature')
    }
    try {
      checkReleaseFields({ ...fields, version: '0', digest: '0' })
    } catch {
      return drop('malformed')
    }
    const record: RetireRecord = { cell: fields.cell, authority: fields.authority, seq: fields.seq, signed: envelope.signed }
    const key = claimKey(record.authority, record.cell)
    const floor = this.init.sequenceFloors?.retire
    if (record.seq > this.clock.now() + this.maxSeqAheadMs) return drop('future')
    const check = (): DropReason | undefined => {
      const existing = this.retireMap.get(key)
      if (existing !== undefined) {
        if (record.seq < existing.record.seq) return 'stale'
        if (record.seq === existing.record.seq) return 'duplicate'
        return undefined
      }
      if (floor !== undefined && record.seq < floor.highestSeq(key)) return 'stale'
      if (this.claimsByCell.get(record.cell)?.has(record.authority) !== true) return 'untrusted'
      if (this.retireMap.size >= this.maxCells) return 'overflow-cells'
      return undefined
    }
    const early = check()
    if (early !== undefined) return drop(early)
    if (!await this.trusted({ kind, record }, options)) return drop('untrusted')
    const late = check()
    if (late !== undefined) return drop(late)
    this.retireMap.set(key, { record, bytes: encodeEnvelope(envelope), receivedMs: this.clock.now() })
    if (floor !== undefined && record.seq > floor.highestSeq(key)) floor.accept({ cell: key, seq: record.seq })
    this.emitChange({ kind, op: 'upsert', key: record.cell, cell: record.cell })
    return { accepted: true, kind }
  }

  private async applyRelease (envelope: SignedReleaseEnvelope, options: ApplyOptions): Promise<ApplyResult> {
    const kind = envelope.kind as 'release' | 'desired'
    const drop = (reason: DropReason): ApplyResult => ({ accepted: false, kind, reason })
    const verifier = kind === 'release' ? this.init.verifyRelease : this.init.verifyDesired
    if (verifier === undefined) return drop('unverifiable')
    let fields: ReleaseFields
    try {
      fields = await verifier(envelope.signed, { signal: options.signal })
    } catch (err) {
      options.signal?.throwIfAborted()
      log.trace('%s record failed verification: %e', kind, err)
      return drop('bad-signature')
    }
    try {
      checkReleaseFields(fields)
    } catch {
      return drop('malformed')
    }
    const map = kind === 'release' ? this.releaseMap : this.desiredMap
    const record = { cell: fields.cell, version: fields.version, digest: fields.digest, authority: fields.authority, seq: fields.seq, signed: envelope.signed }
    // Keyed by (authority, cell): one authority's records never replace or outrank another's, even
    // for the same cell name (two trusted claimants of one name are a conflict, see `claimants`).
    const key = claimKey(record.authority, record.cell)
    const floor = this.init.sequenceFloors?.[kind]
    if (record.seq > this.clock.now() + this.maxSeqAheadMs) return drop('future')
    // An older release of a claim goes to its history, never in front of the newest.
    let intoHistory = false
    const check = (): DropReason | undefined => {
      const existing = map.get(key)
      intoHistory = false
      if (existing !== undefined) {
        // Highest seq per claim wins; an equal or lower one is a replay and can never roll back.
        if (record.seq === existing.record.seq) return 'duplicate'
        if (record.seq < existing.record.seq) {
          // Only from a snapshot (a joining node catching up): gossip carries the newest, and an older
          // release gossiped again is a replay as before.
          if (kind !== 'release' || options.relayed !== true) return 'stale'
          const history = this.releaseHistory.get(key) ?? []
          if (history.some(h => h.record.seq === record.seq)) return 'duplicate'
          // Full: only a record newer than the oldest kept gets in (which then drops the oldest).
          if (history.length >= RELEASE_HISTORY - 1 && record.seq < history[history.length - 1].record.seq) return 'stale'
          intoHistory = true
        }
        return undefined
      }
      // Below what this node accepted before a restart: a replay of an older record.
      if (floor !== undefined && record.seq < floor.highestSeq(key)) return 'stale'
      if (map.size >= this.maxCells) return 'overflow-cells'
      const claims = this.cellsByAuthority.get(record.authority)
      if (claims !== undefined && !claims.has(record.cell) && claims.size >= this.maxCellsPerAuthority) return 'overflow-authority-cells'
      return undefined
    }
    const early = check()
    if (early !== undefined) return drop(early)
    if (!await this.trusted({ kind, record } as TrustSubject, options)) return drop('untrusted')
    const late = check()
    if (late !== undefined) return drop(late)
    const held = { record, bytes: encodeEnvelope(envelope), receivedMs: this.clock.now() }
    if (intoHistory) {
      this.keepInHistory(key, held)
    } else {
      const previous = map.get(key)
      if (kind === 'release' && previous !== undefined) this.keepInHistory(key, previous as Held<ReleaseRecord>)
      map.set(key, held)
    }
    this.addClaim(record.authority, record.cell)
    if (floor !== undefined && record.seq > floor.highestSeq(key)) floor.accept({ cell: key, seq: record.seq })
    this.emitChange({ kind, op: 'upsert', key: record.cell, cell: record.cell })
    return { accepted: true, kind }
  }

  /** Keeps an older release of a claim, highest seq first, at most RELEASE_HISTORY - 1 of them. */
  private keepInHistory (key: string, held: Held<ReleaseRecord>): void {
    const history = this.releaseHistory.get(key) ?? []
    if (history.some(h => h.record.seq === held.record.seq)) return
    history.push(held)
    history.sort((a, b) => b.record.seq - a.record.seq)
    history.length = Math.min(history.length, RELEASE_HISTORY - 1)
    this.releaseHistory.set(key, history)
  }

  private addClaim (authority: string, cell: string): void {
    let cells = this.cellsByAuthority.get(authority)
    if (cells === undefined) this.cellsByAuthority.set(authority, cells = new Set())
    cells.add(cell)
    let authorities = this.claimsByCell.get(cell)
    if (authorities === undefined) this.claimsByCell.set(cell, authorities = new Set())
    authorities.add(authority)
  }

  private async trusted (subject: TrustSubject, options: ApplyOptions): Promise<boolean> {
    if (this.init.isTrusted === undefined) return true
    try {
      return await this.init.isTrusted(subject, { from: options.from })
    } catch (err) {
      // A failing policy must fail closed.
      log.error('trust policy threw: %e', err)
      return false
    }
  }

  /**
   * Expiry triggered by a full map, at most once per 100 ms: a flood of new keys against a full,
   * fresh map must not turn every dropped record into a scan of 65536 entries.
   */
  private expireForRoom (now: number): number {
    if (now - this.lastRoomScanMs < 100) return 0
    this.lastRoomScanMs = now
    return this.expire(now)
  }

  /** Removes nodes and instances whose last record is older than their ttl; returns how many went. */
  expire (nowMs: number = this.clock.now()): number {
    let removed = 0
    for (const [key, held] of this.nodeMap) {
      const heard = this.liveness === 'members' ? this.lastHeardMs(key) ?? held.receivedMs : held.receivedMs
      if (heard + this.nodeLifeMs > nowMs) continue
      this.nodeMap.delete(key)
      this.counters.expired.node++
      removed++
      if (this.liveness === 'members') {
        // Its member record and the reports about it go with it (a down node was announced already).
        this.memberMap.delete(key)
        this.effective.delete(key)
        this.downReports.delete(key)
        if (this.downNodes.delete(key)) continue
      }
      this.emitChange({ kind: 'node', op: 'expire', key, nodeId: key })
    }
    if (this.liveness === 'members') {
      for (const [subject, held] of this.downReports) {
        for (const [reporter, report] of held.reports) {
          if (!this.nodeMap.has(reporter) || report.receivedMs + this.memberTtlMs <= nowMs) held.reports.delete(reporter)
        }
        if (held.reports.size === 0) this.downReports.delete(subject)
      }
    }
    for (const [key, held] of this.instanceMap) {
      if (held.receivedMs + this.instanceTtl(held.record) > nowMs) continue
      this.instanceMap.delete(key)
      const n = (this.instancesPerNode.get(held.record.nodeId) ?? 1) - 1
      if (n === 0) this.instancesPerNode.delete(held.record.nodeId)
      else this.instancesPerNode.set(held.record.nodeId, n)
      this.counters.expired.instance++
      removed++
      this.emitChange({ kind: 'instance', op: 'expire', key, cell: held.record.cell, nodeId: held.record.nodeId })
    }
    for (const c of this.book.expire(nowMs)) {
      removed++
      this.emitChange({ kind: c.kind, op: 'expire', key: c.claimId, cell: c.cell })
    }
    return removed
  }

  private emitChange (detail: FleetChange): void {
    this.dispatchEvent(new CustomEvent<FleetChange>('change', { detail }))
  }

  /**
   * Nodes with a fresh record (expired ones are hidden even before `expire` runs). Under 'members'
   * liveness: nodes heard from (node or member record) within memberTtlMs and not down, with their
   * newest member record's slots, free slots and load overlaid on the node record.
   */
  nodes (nowMs: number = this.clock.now()): NodeRecord[] {
    const out: NodeRecord[] = []
    if (this.liveness === 'members') {
      for (const [id, held] of this.nodeMap) if (this.nodeLive(id, nowMs)) out.push(this.effective.get(id) ?? held.record)
      return out
    }
    for (const held of this.nodeMap.values()) if (held.receivedMs + this.nodeTtlMs > nowMs) out.push(held.record)
    return out
  }

  node (nodeId: string, nowMs: number = this.clock.now()): NodeRecord | undefined {
    if (this.liveness === 'members') return this.nodeLive(nodeId, nowMs) ? this.effective.get(nodeId) ?? this.nodeMap.get(nodeId)?.record : undefined
    const held = this.nodeMap.get(nodeId)
    return held !== undefined && held.receivedMs + this.nodeTtlMs > nowMs ? held.record : undefined
  }

  /** 'members' liveness: the newest member record of a live node. */
  member (nodeId: string, nowMs: number = this.clock.now()): MemberRecord | undefined {
    return this.nodeLive(nodeId, nowMs) ? this.memberMap.get(nodeId)?.record : undefined
  }

  /**
   * 'members' liveness: the live nodes whose member record lists `cell` among the cells they host,
   * sorted (every view lists them in the same order); empty under 'heartbeat' liveness.
   */
  hostsOf (cell: string, nowMs: number = this.clock.now()): string[] {
    const hosts: string[] = []
    for (const [id, held] of this.memberMap) if (held.record.cells.includes(cell) && this.nodeLive(id, nowMs)) hosts.push(id)
    return hosts.sort()
  }

  /** 'members' liveness: is the node down by a quorum of reports (until it refutes them)? */
  isDown (nodeId: string): boolean {
    return this.downNodes.has(nodeId)
  }

  /**
   * 'members' liveness: the down reports that count against `nodeId` (the gossip layer refutes
   * reports about its own node with a fresh member record). Undefined when the view does not hold
   * the node's record.
   */
  downReportsAbout (nodeId: string, nowMs: number = this.clock.now()): DownReportsAbout | undefined {
    if (!this.nodeMap.has(nodeId)) return undefined
    return { subject: nodeId, reporters: this.countedReporters(nodeId), subjectSeq: this.newestSeq(nodeId), quorum: this.quorum(nodeId, nowMs), down: this.downNodes.has(nodeId) }
  }

  /** Instances with a fresh heartbeat in any state, optionally of one cell ('members' liveness: of live nodes only). */
  instances (cell?: string, nowMs: number = this.clock.now()): InstanceRecord[] {
    const out: InstanceRecord[] = []
    for (const held of this.instanceMap.values()) {
      if (!this.instanceLive(held, nowMs)) continue
      if (cell === undefined || held.record.cell === cell) out.push(held.record)
    }
    return out
  }

  /** Replicas that count as running: fresh heartbeat and state 'starting' or 'ready' (draining ones are leaving). */
  liveInstances (cell: string, nowMs: number = this.clock.now()): InstanceRecord[] {
    return this.instances(cell, nowMs).filter(r => r.state === 'starting' || r.state === 'ready')
  }

  /** Local receive time of the latest record for a node or instance (dashboard "last seen"). */
  lastSeenMs (kind: 'node' | 'instance', key: string): number | undefined {
    if (kind === 'node' && this.liveness === 'members') return this.lastHeardMs(key)
    return (kind === 'node' ? this.nodeMap.get(key) : this.instanceMap.get(key))?.receivedMs
  }

  /**
   * The newest release of `cell`, when exactly one trusted authority claims the name; undefined when
   * none or several do (see `claimants`: callers and hosts refuse a conflicted name by name).
   */
  release (cell: string): ReleaseRecord | undefined {
    const authority = this.soleClaimant(cell)
    return authority !== undefined ? this.releaseMap.get(claimKey(authority, cell))?.record : undefined
  }

  desired (cell: string): DesiredVersionRecord | undefined {
    const authority = this.soleClaimant(cell)
    return authority !== undefined ? this.desiredMap.get(claimKey(authority, cell))?.record : undefined
  }

  /**
   * The retire record of `cell` from its sole claimant (whether it is still in force, i.e. newer than
   * the cell's release and desired records, core/biology decides).
   */
  retired (cell: string): RetireRecord | undefined {
    const authority = this.soleClaimant(cell)
    return authority !== undefined ? this.retireMap.get(claimKey(authority, cell))?.record : undefined
  }

  retiredOf (authority: string, cell: string): RetireRecord | undefined {
    return this.retireMap.get(claimKey(authority, cell))?.record
  }

  /**
   * The releases of `cell` the view keeps from its sole claimant, newest (highest seq) first: the
   * newest and up to RELEASE_HISTORY - 1 older ones. Empty when none or several authorities claim it.
   */
  releases (cell: string): ReleaseRecord[] {
    const authority = this.soleClaimant(cell)
    return authority !== undefined ? this.releasesOf(authority, cell) : []
  }

  releasesOf (authority: string, cell: string): ReleaseRecord[] {
    const key = claimKey(authority, cell)
    const newest = this.releaseMap.get(key)
    return newest === undefined ? [] : [newest.record, ...(this.releaseHistory.get(key) ?? []).map(h => h.record)]
  }

  releaseOf (authority: string, cell: string): ReleaseRecord | undefined {
    return this.releaseMap.get(claimKey(authority, cell))?.record
  }

  desiredOf (authority: string, cell: string): DesiredVersionRecord | undefined {
    return this.desiredMap.get(claimKey(authority, cell))?.record
  }

  /** Authorities (each trusted by this peer's verifier) that signed a release or desired record for `cell`, sorted. */
  claimants (cell: string): string[] {
    return [...(this.claimsByCell.get(cell) ?? [])].sort()
  }

  private soleClaimant (cell: string): string | undefined {
    const claims = this.claimsByCell.get(cell)
    if (claims === undefined || claims.size !== 1) return undefined
    return claims.values().next().value
  }

  /** Every cell known from a release, a desired-version record or a fresh instance, sorted. */
  cells (nowMs: number = this.clock.now()): string[] {
    const set = new Set<string>(this.claimsByCell.keys())
    for (const r of this.instances(undefined, nowMs)) set.add(r.cell)
    return [...set].sort()
  }

  /** Claim ids (`<cell>/<ordinal>`) with snapshot records, optionally of one cell, sorted. */
  snapshotClaims (cell?: string): string[] {
    return this.book.claimIds(cell)
  }

  /** Fresh snapshot records of a claim, newest first: a higher epoch before any lower one, whatever the times. */
  snapshots (claimId: string, nowMs: number = this.clock.now()): SnapshotRecord[] {
    return this.book.snapshots(claimId, nowMs)
  }

  /**
   * The signed envelope (encoded, as gossip carries it) of `owner`'s snapshot `tag` of the claim, while
   * the view holds it: what a holder keeps on disk to vouch for the snapshot after a restart.
   */
  snapshotEnvelope (claimId: string, owner: string, tag: string, nowMs: number = this.clock.now()): Uint8Array | undefined {
    return this.book.envelope(claimId, owner, tag, nowMs)
  }

  /** Nodes other than the owner holding a fresh pin of exactly this snapshot (same epoch and manifest), sorted. */
  snapshotHolders (snapshot: SnapshotRecord, nowMs: number = this.clock.now()): string[] {
    return this.book.holders(snapshot, nowMs)
  }

  /** Nodes other than its owner that must hold a snapshot before it is safe (default 2). */
  get safeHolders (): number { return this.book.safeHolders }

  /** Is the snapshot pinned by at least `safeHolders` (default 2) nodes other than its owner? */
  isSafeSnapshot (snapshot: SnapshotRecord, nowMs: number = this.clock.now()): boolean {
    return this.book.holders(snapshot, nowMs).length >= this.book.safeHolders
  }

  /** The claim's safe snapshots, newest first (a higher epoch before any lower one). */
  safeSnapshots (claimId: string, nowMs: number = this.clock.now()): SnapshotRecord[] {
    return this.book.snapshots(claimId, nowMs).filter(s => this.isSafeSnapshot(s, nowMs))
  }

  /**
   * The snapshot to restore the claim from: the newest safe one, never one of a lower epoch while a
   * safe one of a higher epoch exists; with `minEpoch`, none below that epoch (a fenced owner's);
   * with `maxEpoch` (the highest epoch the claim's register granted), none above it: a host of the
   * cell announcing a snapshot of an epoch it was never granted cannot make it the one restored.
   */
  newestSafe (claimId: string, options: { minEpoch?: number, maxEpoch?: number, nowMs?: number } = {}): SnapshotRecord | undefined {
    const safe = this.safeSnapshots(claimId, options.nowMs ?? this.clock.now())
    return safe.find(s => s.epoch >= (options.minEpoch ?? 0) && s.epoch <= (options.maxEpoch ?? Number.MAX_SAFE_INTEGER))
  }

  /** Counts of the snapshot book (claims, records, evictions, expiries). */
  snapshotStats (): SnapshotBookStats {
    return this.book.stats()
  }

  stats (): FleetStats {
    return {
      nodes: this.nodeMap.size,
      instances: this.instanceMap.size,
      releases: this.releaseMap.size,
      desired: this.desiredMap.size,
      accepted: { ...this.counters.accepted },
      dropped: { ...this.counters.dropped },
      expired: { ...this.counters.expired },
      snapshotTruncated: this.counters.snapshotTruncated,
      digest: this.digest(),
      ...(this.liveness === 'members'
        ? {
            members: {
              members: this.memberMap.size,
              reported: this.downReports.size,
              down: this.downNodes.size,
              ...this.memberCounters
            }
          }
        : {})
    }
  }

  /**
   * A 32-bit FNV-1a hash of what this view holds that every node should agree on once gossip has
   * settled: the live nodes, the live replicas with their node and state, the current release of
   * each cell. Load figures and heartbeat times are left out. Two nodes with equal digests see the
   * same fleet (tests of partitions heal by it; an operator can compare it across nodes).
   */
  digest (nowMs: number = this.clock.now()): number {
    const lines: string[] = []
    for (const n of this.nodes(nowMs)) lines.push(`n ${n.nodeId}`)
    for (const i of this.instances(undefined, nowMs)) if (i.endedMs === undefined) lines.push(`i ${i.instanceId} ${i.nodeId} ${i.state}`)
    for (const cell of this.cells(nowMs)) { const r = this.release(cell); if (r !== undefined) lines.push(`r ${cell} ${r.version} ${r.digest}`) }
    lines.sort()
    let h = 0x811c9dc5
    for (const line of lines) {
      for (let k = 0; k < line.length; k++) { h ^= line.charCodeAt(k); h = Math.imul(h, 0x01000193) >>> 0 }
      h ^= 0x0a; h = Math.imul(h, 0x01000193) >>> 0
    }
    return h
  }

  /**
   * A range digest for anti-entropy (per-cell mode): `buckets` (a power of two, 1..RANGE_DIGEST_MAX_BUCKETS)
   * 64-bit sums, 8 bytes each (big-endian high then low word), of the entries of `scope` that fall in
   * each bucket by a hash of their key. 'members': every node whose record the view holds and has not
   * expired (live or down), entry (nodeId, newest node/member seq, down or not), keyed by node id.
   * 'releases': release (newest and history), desired, retire, snapshot and pin records, each entry
   * (kind, claim, seq), keyed by cell. A cell: its live instances, entry (host/instanceId, seq).
   * Order-independent: two views holding the same entries have equal digests whatever the order they
   * learned them in. See diffRangeDigests.
   */
  rangeDigest (scope: RangeScope, buckets: number, nowMs: number = this.clock.now()): Uint8Array {
    checkBucketCount(buckets)
    const sums = new Uint32Array(buckets * 2)
    for (const { key, entry } of this.rangeEntries(scope, nowMs)) {
      const b = rangeBucket(key, buckets)
      const [hi, lo] = entryHash(entry)
      sums[2 * b] = (sums[2 * b] + hi) >>> 0
      sums[2 * b + 1] = (sums[2 * b + 1] + lo) >>> 0
    }
    const out = new Uint8Array(buckets * 8)
    const dv = new DataView(out.buffer)
    for (let i = 0; i < buckets * 2; i++) dv.setUint32(i * 4, sums[i])
    return out
  }

  /** Entries a range digest of `scope` covers (see rangeDigest). */
  rangeSize (scope: RangeScope, nowMs: number = this.clock.now()): number {
    let n = 0
    for (const _ of this.rangeEntries(scope, nowMs)) n++
    return n
  }

  /**
   * The records behind the entries of `scope` in the buckets `which` (of `buckets`), as snapshot
   * items (origin-signed bytes with their age): 'members': each such node's node record, member
   * record and the down reports about it; 'releases': the records themselves; a cell: its instance
   * records. Each item names its bucket. What anti-entropy sends for the buckets whose digests differ.
   */
  rangeRecords (scope: RangeScope, buckets: number, which: ReadonlySet<number>, nowMs: number = this.clock.now()): Array<BundleItem & { bucket: number }> {
    checkBucketCount(buckets)
    const items: Array<BundleItem & { bucket: number }> = []
    for (const { key, records } of this.rangeEntries(scope, nowMs)) {
      const bucket = rangeBucket(key, buckets)
      if (!which.has(bucket)) continue
      for (const { held, ttlMs } of records()) {
        const ageMs = Math.max(0, nowMs - held.receivedMs)
        if (ttlMs === undefined) items.push({ bytes: held.bytes, ageMs: 0, bucket })
        else if (ageMs < ttlMs) items.push({ bytes: held.bytes, ageMs, bucket })
      }
    }
    return items
  }

  private * rangeEntries (scope: RangeScope, nowMs: number): Generator<{ key: string, entry: string, records: () => Array<{ held: Held<unknown>, ttlMs: number | undefined }> }> {
    if (scope.kind === 'cell') {
      for (const [key, held] of this.instanceMap) {
        if (held.record.cell !== scope.cell || !this.instanceLive(held, nowMs)) continue
        yield { key, entry: `${key} ${held.record.seq}`, records: () => [{ held, ttlMs: this.instanceTtl(held.record) }] }
      }
      return
    }
    if (scope.kind === 'releases') {
      // Releases, desired and retire records never expire (ttl undefined: sent with age 0, as snapshot() does).
      const claims: Array<[string, Map<string, Held<{ cell: string, authority: string, seq: number }>>]> = [['r', this.releaseMap], ['d', this.desiredMap], ['x', this.retireMap]]
      for (const [kind, map] of claims) {
        for (const [claim, held] of map) yield { key: held.record.cell, entry: `${kind} ${claim} ${held.record.seq}`, records: () => [{ held, ttlMs: undefined }] }
      }
      for (const [claim, history] of this.releaseHistory) {
        for (const held of history) yield { key: held.record.cell, entry: `h ${claim} ${held.record.seq}`, records: () => [{ held, ttlMs: undefined }] }
      }
      for (const { held, ttlMs } of this.book.held()) {
        if (held.receivedMs + ttlMs <= nowMs) continue
        const r = held.record
        const entry = 'owner' in r ? `p ${r.nodeId} ${r.owner} ${r.claimId} ${r.epoch} ${r.seq}` : `s ${r.nodeId} ${r.claimId} ${r.epoch} ${r.seq}`
        yield { key: r.cell, entry, records: () => [{ held, ttlMs }] }
      }
      return
    }
    for (const [id, held] of this.nodeMap) {
      const heard = this.liveness === 'members' ? this.lastHeardMs(id) ?? held.receivedMs : held.receivedMs
      if (heard + this.nodeLifeMs <= nowMs) continue
      yield {
        key: id,
        entry: `${id} ${this.newestSeq(id)} ${this.downNodes.has(id) ? 1 : 0}`,
        records: () => {
          const out: Array<{ held: Held<unknown>, ttlMs: number }> = [{ held, ttlMs: this.nodeLifeMs }]
          const member = this.memberMap.get(id)
          if (member !== undefined) out.push({ held: member, ttlMs: this.memberTtlMs })
          for (const report of this.downReports.get(id)?.reports.values() ?? []) out.push({ held: report, ttlMs: this.memberTtlMs })
          return out
        }
      }
    }
  }

  /**
   * The current records as originally received (origin-signed bytes), packed into standalone
   * frames of at most `maxFrameBytes`; each frame can be passed to `merge` on its own. Releases
   * come first (they matter most), then nodes, then instances. Bounded by maxSnapshotBytes.
   */
  snapshot (options: { maxFrameBytes?: number, nowMs?: number, cells?: (cell: string) => boolean, nodes?: (nodeId: string) => boolean, withHosts?: boolean } = {}): Uint8Array[] {
    const now = options.nowMs ?? this.clock.now()
    const items: BundleItem[] = []
    let total = 0
    let truncated = false
    const add = (held: Held<unknown>, ttlMs: number | undefined): void => {
      const ageMs = Math.max(0, now - held.receivedMs)
      if (ttlMs !== undefined && ageMs >= ttlMs) return
      if (total + held.bytes.length + 16 > this.maxSnapshotBytes) { truncated = true; return }
      total += held.bytes.length + 16
      items.push({ bytes: held.bytes, ageMs: ttlMs === undefined ? 0 : ageMs })
    }
    // `cells` narrows releases, desired records and instances to some cells (node records, which
    // say nothing of cells, always go): the public-only snapshot a peer without a grant gets.
    const wanted = options.cells ?? (() => true)
    for (const held of this.releaseMap.values()) if (wanted(held.record.cell)) add(held, undefined)
    for (const history of this.releaseHistory.values()) for (const held of history) if (wanted(held.record.cell)) add(held, undefined)
    for (const held of this.desiredMap.values()) if (wanted(held.record.cell)) add(held, undefined)
    for (const held of this.retireMap.values()) if (wanted(held.record.cell)) add(held, undefined)
    // `nodes` narrows node and member records to some nodes, and down reports to those about them: a
    // filtered pull's records, without encoding the whole fleet's for them to be thrown away;
    // `withHosts` adds the nodes hosting the instances this snapshot carries.
    let node = options.nodes ?? (() => true)
    if (options.nodes !== undefined && options.withHosts === true) {
      const named = options.nodes
      const hosts = new Set<string>()
      for (const held of this.instanceMap.values()) {
        if (wanted(held.record.cell) && now - held.receivedMs < this.instanceTtl(held.record)) hosts.add(held.record.nodeId)
      }
      node = (id) => named(id) || hosts.has(id)
    }
    for (const [nodeId, held] of this.nodeMap) if (node(nodeId)) add(held, this.nodeLifeMs)
    // Member records and down reports after the node records they need (a pull brings a new node up to date).
    for (const [nodeId, held] of this.memberMap) if (node(nodeId)) add(held, this.memberTtlMs)
    for (const [subject, { reports }] of this.downReports) if (node(subject)) for (const held of reports.values()) add(held, this.memberTtlMs)
    // Snapshots before their pins (a pin counts only for a snapshot the receiver holds).
    for (const { held, ttlMs } of this.book.held()) if (wanted(held.record.cell)) add(held, ttlMs)
    for (const held of this.instanceMap.values()) if (wanted(held.record.cell)) add(held, this.instanceTtl(held.record))
    if (truncated) this.counters.snapshotTruncated++
    return encodeBundles(items, options.maxFrameBytes ?? MAX_MESSAGE_BYTES)
  }
}

function claimKey (authority: string, cell: string): string {
  // Authority ids and cell names are spaceless tokens (records.ts), so the space cannot be ambiguous.
  return `${authority} ${cell}`
}

function instanceKey (r: InstanceRecord): string {
  // Keyed by host too, so one node can never overwrite another node's instance by reusing its id.
  return `${r.nodeId}/${r.instanceId}`
}

/**
 * What a range digest covers: the members layer (node/member records, down verdicts), the release
 * layer (release, desired, retire, snapshot and pin records of every cell) or one cell's instances.
 */
export type RangeScope = { kind: 'members' } | { kind: 'releases' } | { kind: 'cell', cell: string }

/** Most buckets of one range digest (8 bytes each). */
export const RANGE_DIGEST_MAX_BUCKETS = 1024

/** Throws RangeError unless `buckets` is a power of two in 1..RANGE_DIGEST_MAX_BUCKETS. */
export function checkBucketCount (buckets: number): void {
  if (!Number.isSafeInteger(buckets) || buckets < 1 || buckets > RANGE_DIGEST_MAX_BUCKETS || (buckets & (buckets - 1)) !== 0) {
    throw new RangeError(`a range digest of ${String(buckets)} buckets (a power of two, 1..${RANGE_DIGEST_MAX_BUCKETS})`)
  }
}

/** murmur3's 32-bit finaliser. */
function fmix32 (h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

function fnv1a (s: string, seed: number): number {
  let h = seed
  for (let k = 0; k < s.length; k++) { h ^= s.charCodeAt(k); h = Math.imul(h, 0x01000193) }
  return h >>> 0
}

/** The bucket of a key among `buckets` (a power of two). */
export function rangeBucket (key: string, buckets: number): number {
  return fmix32(fnv1a(key, 0x811c9dc5)) & (buckets - 1)
}

/** A 64-bit hash of an entry as two words (two differently seeded FNV-1a runs, each finalised). */
function entryHash (entry: string): [number, number] {
  return [fmix32(fnv1a(entry, 0x9e3779b9)), fmix32(fnv1a(entry, 0x811c9dc5) ^ 0x5bd1e995)]
}

/** The buckets whose 8-byte digests differ between two range digests of the same bucket count, ascending. */
export function diffRangeDigests (a: Uint8Array, b: Uint8Array): number[] {
  if (a.length !== b.length || a.length % 8 !== 0) throw new RangeError('range digests of different bucket counts')
  const out: number[] = []
  for (let i = 0; i < a.length; i += 8) {
    for (let k = 0; k < 8; k++) {
      if (a[i + k] !== b[i + k]) { out.push(i / 8); break }
    }
  }
  return out
}
