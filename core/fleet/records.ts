// Fleet record types and the field rules every decoded (untrusted) record must satisfy.
// The same rules run before encoding so a node never gossips a record its peers would refuse.
import { MalformedFleetRecordError } from './errors.ts'

/** Largest gossip message / sync frame, in bytes (gossipsub's default max is 1 MiB; we stay far below). */
export const MAX_MESSAGE_BYTES = 64 * 1024
/** Wire format version, first byte of every envelope and bundle. */
export const FLEET_WIRE_VERSION = 1
export const FLEET_TOPIC = '/cell/fleet/1'
/** Releases and desired-version records travel on their own topic: rare, precious, separately scored. */
export const FLEET_RELEASE_TOPIC = '/cell/fleet-releases/1'
export const FLEET_SYNC_PROTOCOL = '/cell/fleet-sync/1'
/** Per-cell dissemination: full node records, member records and down reports of every full node. */
export const MEMBERS_TOPIC = '/cell/members/1'
/** Per-cell dissemination: the instance records of one cell, followed by its hosts and callers. */
export function cellTopic (cell: string): string {
  return `/cell/c/${cell}/1`
}
/** Cells one peer follows at most in per-cell dissemination (FleetGossip `maxFollowedCells`'s default): one topic each. */
export const DEFAULT_MAX_FOLLOWED_CELLS = 1024
/** How node and instance liveness reach other nodes (docs/biology.md, "Scale"). */
export type Dissemination = 'fleet' | 'per-cell'

export const LIMITS = {
  peerIdChars: 128,
  addrs: 16,
  addrChars: 256,
  roles: 8,
  roleChars: 32,
  idChars: 128,
  versionChars: 64,
  digestChars: 160,
  authorityChars: 256,
  signatureBytes: 512,
  signedReleaseBytes: 60 * 1024,
  bundleEntries: 4096,
  /** cpu % is per core summed, so a 100-core box may report 10000. */
  cpuPercent: 100_000,
  /** Bound on qps / latency fields: anything larger is a bug or an attack. */
  metric: 1e12,
  methods: 64,
  grants: 4,
  grantBytes: 2048,
  /** Halted releases a node repeats in its heartbeat. */
  halts: 8,
  haltReasonChars: 200,
  /** Recent releases a node reports as prepared or not (cell publish prints them per node). */
  prepared: 8,
  preparedReasonChars: 200,
  /** Cells a member record lists. */
  memberCells: 64,
  /** Distinct reporters kept per down subject. */
  downReporters: 8,
  refreshMsMin: 1000,
  refreshMsMax: 3_600_000
} as const

export const INSTANCE_STATES = ['starting', 'ready', 'draining', 'stopped', 'crashed'] as const
export type InstanceState = typeof INSTANCE_STATES[number]

export const NODE_ROLES_PATTERN = /^[a-z][a-z0-9-]*$/

export interface NodeCapacity {
  slots: number
  freeSlots: number
  cpuCores: number
  memoryBytes: number
  freeMemoryBytes: number
  diskFreeBytes?: number
}

export interface NodeLoad {
  /** Summed over cores: 0..100 × cpuCores. */
  cpuPercent: number
  /** 0..100 of capacity.memoryBytes. */
  memoryPercent: number
}

export interface NodeRecord {
  /** libp2p peer id (string form) of the node; the record must be signed by this key. */
  nodeId: string
  /** Multiaddrs the node listens on, at most 16. */
  addrs: string[]
  capacity: NodeCapacity
  load: NodeLoad
  roles: string[]
  startedMs: number
  /** Per-node monotonic sequence number. */
  seq: number
  sentMs: number
  /** Encoded host grants (core/identity certificates) the node holds, at most LIMITS.grants. */
  grants?: Uint8Array[]
  /**
   * Releases this node halted or adopted a halt of, newest last, at most LIMITS.halts. They count
   * only for releases whose authority granted this node the host role (checked by the reader).
   */
  halts?: NodeHalt[]
  /**
   * What became of the releases this node was asked to run (the newest release and desired record
   * of each cell), newest first, at most LIMITS.prepared: fetched, verified and unpacked, still
   * preparing, or failed with a short reason. Read by `cell publish` and `cell rollback`.
   */
  prepared?: NodePrepared[]
}

export const PREPARED_STATES = ['prepared', 'preparing', 'failed'] as const
export type PreparedState = typeof PREPARED_STATES[number]

export interface NodePrepared {
  cell: string
  version: string
  digest: string
  state: PreparedState
  /** Why not (the error's name and message), for `failed`; at most LIMITS.preparedReasonChars. */
  reason?: string
}

/** A release some node stopped running because it kept crashing (see core/biology's HaltRecord). */
export interface NodeHalt {
  cell: string
  version: string
  digest: string
  atMs: number
  reason: string
}

export interface InstanceRecord {
  instanceId: string
  cell: string
  version: string
  digest: string
  /** The node hosting the instance; the record must be signed by this node's key. */
  nodeId: string
  startedMs: number
  state: InstanceState
  cpuPercent: number
  memoryBytes: number
  memoryPercent: number
  qps: number
  p99Ms: number
  inflight: number
  sentMs: number
  /** Per-instance monotonic sequence number. */
  seq: number
  /** When the replica turned ready (the rollout's health-grace timer starts here). */
  readyMs?: number
  /** Methods the cell marked safe to retry on another replica. */
  idempotent?: string[]
  /** When the replica stopped or crashed (tombstones keep being gossiped for a while). */
  endedMs?: number
  /** Why a crashed replica ended: exit code, signal or the limit that killed it, in words. */
  exitReason?: string
  /** Its last stderr lines (see `boundStderrTail`): the crash reason without access to the host. */
  stderrTail?: string[]
  /**
   * A stateful replica's claim (`<cell>/<ordinal>`) and the epoch it holds it at: callers route only
   * to the highest epoch they have seen of a claim and refuse a late answer from a lower one.
   */
  claim?: InstanceClaim
  /**
   * Per-cell dissemination: the host resends this record within this many ms (1,000..3,600,000);
   * receivers count it live for 3 × this while its node is live. Absent: the view's instanceTtlMs.
   */
  refreshMs?: number
}

/**
 * Per-cell dissemination: the compact, often-changing part of a node's state, gossiped on the
 * members topic on change and otherwise rarely. Signed by nodeId; accepted only by a view that
 * holds a full NodeRecord of the node (grants, addresses), which it overlays.
 */
export interface MemberRecord {
  nodeId: string
  /** Per-node monotonic; shares the node's sequence with its node records. */
  seq: number
  sentMs: number
  /** Seq of the node's newest full NodeRecord: a receiver holding an older one pulls it. */
  nodeSeq: number
  slots: number
  freeSlots: number
  /** NodeRecord.load, as published. */
  cpuPercent: number
  memoryPercent: number
  /** The node is leaving the fleet (drains, takes no new replicas). */
  leaving: boolean
  /** Cells with a replica on this node, sorted, at most LIMITS.memberCells. */
  cells: string[]
}

/**
 * Per-cell dissemination: `nodeId` (the reporter, who signs it) lost its connection to `subject`
 * and could not redial it. Enough distinct reporters at the subject's current seq make the
 * subject down until it publishes a record with a higher seq.
 */
export interface DownRecord {
  nodeId: string
  subject: string
  /** The newest node/member seq the reporter had seen of the subject. */
  subjectSeq: number
  seq: number
  sentMs: number
}

export interface InstanceClaim { ordinal: number, epoch: number }

/** Bounds of an instance's claim: ordinals as core/claims allows them, epochs well inside 2^53. */
export const CLAIM_LIMITS = { ordinal: 999_999, epoch: 2 ** 48 } as const

/** Bounds of a crashed replica's report in its heartbeat. */
export const EXIT_LIMITS = {
  exitReasonChars: 200,
  stderrLines: 5,
  /** Total UTF-8 bytes of the stderr lines. */
  stderrBytes: 512
} as const

/** Fields core/identity decodes from a verified release or desired-version record. */
export interface ReleaseFields {
  cell: string
  version: string
  digest: string
  authority: string
  seq: number
}

/** A release as produced by core/identity: opaque signed bytes plus the fields they vouch for. */
export interface ReleaseRecord extends ReleaseFields {
  signed: Uint8Array
}

/** "cell X should run version V" (issued by publish and rollback), signed by the authority. */
export interface DesiredVersionRecord extends ReleaseFields {
  signed: Uint8Array
}

/** Fields core/identity decodes from a verified retire record (`cell retire`). */
export interface RetireFields {
  cell: string
  authority: string
  seq: number
}

/** "cell X runs nowhere" until a release or desired record of a higher seq, signed by the authority. */
export interface RetireRecord extends RetireFields {
  signed: Uint8Array
}

export type FleetRecordKind = 'node' | 'instance' | 'release' | 'desired' | 'retire' | 'snapshot' | 'pin' | 'member' | 'down'

function fail (what: string): never {
  throw new MalformedFleetRecordError(`invalid ${what}`)
}

// Printable ASCII without spaces: keeps ids safe to log, to use as map keys and in metric labels.
const TOKEN = /^[\x21-\x7e]+$/
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@/:+-]*$/

export function checkToken (value: unknown, maxChars: number, what: string, pattern: RegExp = TOKEN): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > maxChars || !pattern.test(value)) fail(what)
  return value
}

export function checkUint (value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail(what)
  return value
}

export function checkFloat (value: unknown, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max || Object.is(value, -0)) fail(what)
  return value
}

export function checkPeerId (value: unknown, what = 'nodeId'): string {
  // base58btc or multibase CIDv1 peer ids: alphanumeric only.
  return checkToken(value, LIMITS.peerIdChars, what, /^[A-Za-z0-9]+$/)
}

export function checkNodeRecord (r: NodeRecord): NodeRecord {
  if (r == null || typeof r !== 'object') fail('node record')
  checkPeerId(r.nodeId)
  if (!Array.isArray(r.addrs) || r.addrs.length > LIMITS.addrs) fail('addrs')
  for (const a of r.addrs) {
    checkToken(a, LIMITS.addrChars, 'addr')
    if (!a.startsWith('/')) fail('addr')
  }
  const c = r.capacity
  if (c == null || typeof c !== 'object') fail('capacity')
  checkUint(c.slots, 'capacity.slots')
  checkUint(c.freeSlots, 'capacity.freeSlots')
  if (c.freeSlots > c.slots) fail('capacity.freeSlots')
  checkUint(c.cpuCores, 'capacity.cpuCores')
  checkUint(c.memoryBytes, 'capacity.memoryBytes')
  checkUint(c.freeMemoryBytes, 'capacity.freeMemoryBytes')
  if (c.freeMemoryBytes > c.memoryBytes) fail('capacity.freeMemoryBytes')
  if (r.grants !== undefined && (!Array.isArray(r.grants) || r.grants.length > LIMITS.grants || r.grants.some(g => !(g instanceof Uint8Array) || g.byteLength > LIMITS.grantBytes))) fail('grants')
  if (c.diskFreeBytes !== undefined) checkUint(c.diskFreeBytes, 'capacity.diskFreeBytes')
  if (r.halts !== undefined) {
    if (!Array.isArray(r.halts) || r.halts.length > LIMITS.halts) fail('halts')
    for (const h of r.halts) {
      if (h == null || typeof h !== 'object') fail('halt')
      checkToken(h.cell, LIMITS.idChars, 'halt.cell', NAME)
      checkToken(h.version, LIMITS.versionChars, 'halt.version')
      checkToken(h.digest, LIMITS.digestChars, 'halt.digest')
      checkUint(h.atMs, 'halt.atMs')
      if (typeof h.reason !== 'string' || h.reason.length > LIMITS.haltReasonChars || /[\x00-\x1f\x7f]/.test(h.reason)) fail('halt.reason')
    }
  }
  if (r.prepared !== undefined) {
    if (!Array.isArray(r.prepared) || r.prepared.length > LIMITS.prepared) fail('prepared')
    for (const p of r.prepared) {
      if (p == null || typeof p !== 'object') fail('prepared entry')
      checkToken(p.cell, LIMITS.idChars, 'prepared.cell', NAME)
      checkToken(p.version, LIMITS.versionChars, 'prepared.version')
      checkToken(p.digest, LIMITS.digestChars, 'prepared.digest')
      if (!(PREPARED_STATES as readonly string[]).includes(p.state)) fail('prepared.state')
      if (p.reason !== undefined && (typeof p.reason !== 'string' || p.reason.length === 0 || p.reason.length > LIMITS.preparedReasonChars || /[\x00-\x1f\x7f]/.test(p.reason))) fail('prepared.reason')
    }
  }
  if (r.load == null || typeof r.load !== 'object') fail('load')
  checkFloat(r.load.cpuPercent, LIMITS.cpuPercent, 'load.cpuPercent')
  checkFloat(r.load.memoryPercent, 100, 'load.memoryPercent')
  if (!Array.isArray(r.roles) || r.roles.length > LIMITS.roles) fail('roles')
  for (const role of r.roles) checkToken(role, LIMITS.roleChars, 'role', NODE_ROLES_PATTERN)
  checkUint(r.startedMs, 'startedMs')
  checkUint(r.seq, 'seq')
  checkUint(r.sentMs, 'sentMs')
  return r
}

export function checkInstanceRecord (r: InstanceRecord): InstanceRecord {
  if (r == null || typeof r !== 'object') fail('instance record')
  checkToken(r.instanceId, LIMITS.idChars, 'instanceId', NAME)
  checkCellName(r.cell)
  checkToken(r.version, LIMITS.versionChars, 'version')
  checkToken(r.digest, LIMITS.digestChars, 'digest')
  checkPeerId(r.nodeId)
  checkUint(r.startedMs, 'startedMs')
  if (!(INSTANCE_STATES as readonly string[]).includes(r.state)) fail('state')
  checkFloat(r.cpuPercent, LIMITS.cpuPercent, 'cpuPercent')
  checkUint(r.memoryBytes, 'memoryBytes')
  checkFloat(r.memoryPercent, 100, 'memoryPercent')
  checkFloat(r.qps, LIMITS.metric, 'qps')
  checkFloat(r.p99Ms, LIMITS.metric, 'p99Ms')
  checkUint(r.inflight, 'inflight')
  checkUint(r.sentMs, 'sentMs')
  checkUint(r.seq, 'seq')
  if (r.readyMs !== undefined) checkUint(r.readyMs, 'readyMs')
  if (r.endedMs !== undefined) checkUint(r.endedMs, 'endedMs')
  if (r.idempotent !== undefined) {
    if (!Array.isArray(r.idempotent) || r.idempotent.length > LIMITS.methods) fail('idempotent')
    for (const m of r.idempotent) checkToken(m, LIMITS.idChars, 'idempotent method', NAME)
  }
  checkExitFields(r)
  if (r.claim !== undefined) {
    if (r.claim === null || typeof r.claim !== 'object') fail('claim')
    if (!Number.isSafeInteger(r.claim.ordinal) || r.claim.ordinal < 0 || r.claim.ordinal > CLAIM_LIMITS.ordinal) fail('claim.ordinal')
    if (!Number.isSafeInteger(r.claim.epoch) || r.claim.epoch < 1 || r.claim.epoch > CLAIM_LIMITS.epoch) fail('claim.epoch')
  }
  if (r.refreshMs !== undefined && (checkUint(r.refreshMs, 'refreshMs') < LIMITS.refreshMsMin || r.refreshMs > LIMITS.refreshMsMax)) fail('refreshMs')
  return r
}

/** A member record's field rules (also run before encoding). */
export function checkMemberRecord (r: MemberRecord): MemberRecord {
  if (r == null || typeof r !== 'object') fail('member record')
  checkPeerId(r.nodeId)
  checkUint(r.seq, 'seq')
  checkUint(r.sentMs, 'sentMs')
  checkUint(r.nodeSeq, 'nodeSeq')
  // The node record it refers to was published before it, under the same per-node sequence.
  if (r.nodeSeq > r.seq) fail('nodeSeq')
  checkUint(r.slots, 'slots')
  checkUint(r.freeSlots, 'freeSlots')
  if (r.freeSlots > r.slots) fail('freeSlots')
  checkFloat(r.cpuPercent, LIMITS.cpuPercent, 'cpuPercent')
  checkFloat(r.memoryPercent, 100, 'memoryPercent')
  if (typeof r.leaving !== 'boolean') fail('leaving')
  if (!Array.isArray(r.cells) || r.cells.length > LIMITS.memberCells) fail('cells')
  let previous: string | undefined
  for (const cell of r.cells) {
    checkCellName(cell)
    // Sorted and distinct: one encoding per value, and no cell counted twice.
    if (previous !== undefined && !(previous < cell)) fail('cells order')
    previous = cell
  }
  return r
}

/** A down report's field rules (also run before encoding). */
export function checkDownRecord (r: DownRecord): DownRecord {
  if (r == null || typeof r !== 'object') fail('down record')
  checkPeerId(r.nodeId)
  checkPeerId(r.subject, 'subject')
  if (r.subject === r.nodeId) fail('subject')
  checkUint(r.subjectSeq, 'subjectSeq')
  checkUint(r.seq, 'seq')
  checkUint(r.sentMs, 'sentMs')
  return r
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g
const utf8 = new TextEncoder()

/**
 * The stderr lines a crash report carries: ANSI escapes and control characters stripped, blank lines,
 * stack frames (`    at …`) and Node's version footer dropped (the message is what people need),
 * the last EXIT_LIMITS.stderrLines kept within EXIT_LIMITS.stderrBytes (oldest lines go first; one
 * long line is cut to fit).
 */
export function boundStderrTail (lines: readonly string[]): string[] {
  const kept: string[] = []
  for (const raw of lines) {
    // eslint-disable-next-line no-control-regex
    const line = raw.replace(ANSI, '').replace(/[\x00-\x1f\x7f]/g, ' ').trimEnd()
    if (line.trim() === '' || /^\s+at\s/.test(line) || /^Node\.js v\d/.test(line)) continue
    kept.push(line)
  }
  const out = kept.slice(-EXIT_LIMITS.stderrLines)
  const size = (): number => out.reduce((n, l) => n + utf8.encode(l).length, 0)
  while (out.length > 1 && size() > EXIT_LIMITS.stderrBytes) out.shift()
  while (out.length === 1 && utf8.encode(out[0]).length > EXIT_LIMITS.stderrBytes) out[0] = out[0].slice(0, -1)
  return out
}

/** An exit reason as a heartbeat may carry it: one line, bounded. */
export function boundExitReason (reason: string): string {
  // eslint-disable-next-line no-control-regex
  return reason.replace(ANSI, '').replace(/[\x00-\x1f\x7f]/g, ' ').trim().slice(0, EXIT_LIMITS.exitReasonChars)
}

function checkExitFields (r: InstanceRecord): void {
  // Present means non-empty: the encoding of an empty report would not survive a round trip.
  if (r.exitReason !== undefined && (typeof r.exitReason !== 'string' || r.exitReason.length === 0 || r.exitReason.length > EXIT_LIMITS.exitReasonChars || CONTROL.test(r.exitReason))) fail('exitReason')
  if (r.stderrTail !== undefined) {
    if (!Array.isArray(r.stderrTail) || r.stderrTail.length === 0 || r.stderrTail.length > EXIT_LIMITS.stderrLines) fail('stderrTail')
    let bytes = 0
    for (const l of r.stderrTail) {
      if (typeof l !== 'string' || CONTROL.test(l)) fail('stderrTail line')
      bytes += utf8.encode(l).length
    }
    if (bytes > EXIT_LIMITS.stderrBytes) fail('stderrTail')
  }
}

export function checkCellName (value: unknown): string {
  return checkToken(value, LIMITS.idChars, 'cell', NAME)
}

/** Validates what an injected verifier returned: the verifier is trusted code, but its output still keys bounded maps. */
export function checkReleaseFields (f: ReleaseFields): ReleaseFields {
  if (f == null || typeof f !== 'object') fail('release fields')
  checkCellName(f.cell)
  checkToken(f.version, LIMITS.versionChars, 'version')
  checkToken(f.digest, LIMITS.digestChars, 'digest')
  checkToken(f.authority, LIMITS.authorityChars, 'authority')
  checkUint(f.seq, 'seq')
  return f
}
