// Input and output types of the autonomic loop's decision functions.
//
// These are deliberately narrow: the gossiped fleet view (core/fleet) carries more, and the node
// host maps it onto a `BiologyView` before each tick. Keeping the decisions on this small shape is
// what lets the deterministic simulator (test/sim) drive the very same code.

import type { UpdateStrategy } from '../manifest/schema.ts'

export type InstanceState = 'starting' | 'ready' | 'draining' | 'crashed'

export interface NodeCapacity {
  /** Replica slots the node still offers. */
  freeSlots: number
  /** Idle CPU of the node, percent of all its cores. */
  cpuFreePercent: number
  memoryFreeBytes: number
}

export interface NodeRecord {
  id: string
  capacity: NodeCapacity
  /** Hex ed25519 public keys of the authorities whose releases this node will run. */
  trustsAuthorities: readonly string[]
  /** False once the fleet view expired the node (heartbeats stopped). */
  alive: boolean
}

export interface InstanceRecord {
  id: string
  cell: string
  version: string
  digest: string
  nodeId: string
  startedMs: number
  /** When the replica turned ready; absent while starting (and from hosts that do not track it). */
  readyMs?: number
  state: InstanceState
  cpuPercent: number
  memoryPercent: number
  qps: number
  p99Ms: number
  /** Send time of the freshest heartbeat that carried this instance. */
  lastHeartbeatMs: number
}

export interface ReleaseRecord {
  cell: string
  version: string
  digest: string
  /** Per-cell sequence number shared with desired-version records. */
  seq: number
  /** Hex ed25519 public key that signed the release. */
  authority: string
}

/** Written by `cell rollback` (or an operator pin): run exactly this release. */
export interface DesiredVersionRecord {
  cell: string
  version: string
  digest: string
  seq: number
}

export interface HealthEvent {
  /** Unique per event, so the same event gossiped twice counts once. */
  id: string
  kind: 'crash' | 'health-failed'
  cell: string
  version: string
  digest: string
  instanceId: string
  nodeId: string
  atMs: number
}

/** A release some node halted; gossiped so every node stops it even if it missed the crashes. */
export interface HaltRecord {
  cell: string
  version: string
  digest: string
  atMs: number
  reason: string
  /** The node that decided the halt (absent in older records). */
  nodeId?: string
}

/**
 * Written by `cell retire`: the cell runs nowhere until a release or desired record with a higher
 * seq (a later publish or rollback) brings it back.
 */
export interface RetireRecord {
  cell: string
  seq: number
  /** Hex ed25519 public key that signed it (the view keeps only the cell's own authority's). */
  authority: string
}

export interface BiologyView {
  nodes: readonly NodeRecord[]
  instances: readonly InstanceRecord[]
  releases: readonly ReleaseRecord[]
  desired: readonly DesiredVersionRecord[]
  events: readonly HealthEvent[]
  halts: readonly HaltRecord[]
  /** Retire records of the cell's authority (absent: none). */
  retired?: readonly RetireRecord[]
}

/**
 * The biology part of a cell's manifest. Field names match core/manifest's `BiologyPolicy`, so the
 * host can pass `manifest.biology` as is. Percent fields are 0–100.
 */
export interface Policy {
  minReplicas: number
  maxReplicas: number
  /** Percent of a CPU per replica to aim for. */
  cpuTarget: number
  /** Percent of the memory limit per replica to aim for. */
  memoryTarget: number
  update: UpdateStrategy
  /** Percent of the desired replicas that may be new and not yet proven at once. */
  maxSurge: number
  healthGraceMs: number
  /** Percent of new channels routed to the newest release. */
  canaryWeight: number
}

/** Tuning of the loop itself (not in Cell.toml): the host's configuration, the simulator's knobs. */
export interface BiologyParams {
  /** An instance whose last heartbeat is older than this is not counted. */
  heartbeatStaleMs: number
  /** Scale-down waits until no higher recommendation was made within this window (HPA-style). */
  stabilisationWindowMs: number
  /** Scale down only when observed utilisation is under this fraction of the target. */
  scaleDownFraction: number
  /** Scale up only when observed utilisation exceeds the target by more than this fraction. */
  scaleUpTolerance: number
  /**
   * Utilisation is read only from heartbeats sent at least this long after the newest replica
   * turned ready: earlier figures do not yet show the load spreading onto it (gossiped figures are
   * of mixed age, and summing them overshoots). Roughly the host's CPU averaging window.
   */
  metricsSettleMs: number
  /** Upper bound of the random delay between volunteering and re-checking the view. */
  volunteerJitterMs: number
  /** Crashes or failed health checks of one release, fleet-wide, that halt it... */
  haltThreshold: number
  /** ...when they happen within this window. */
  haltWindowMs: number
  /**
   * A node's own crashed replica is restarted no sooner than this after its first crash; the delay
   * doubles with every further crash of the release on this node (CrashLoopBackOff)...
   */
  restartBackoffMs: number
  /** ...up to this... */
  maxRestartBackoffMs: number
  /** ...counting the node's crashes of the release within this window (older ones are forgiven). */
  restartResetMs: number
  /** A node volunteers only with at least this much idle CPU... */
  minCpuFreePercent: number
  /** ...and this much free memory. */
  minMemoryFreeBytes: number
  /** Bound on the recommendations kept for the stabilisation window. */
  maxRecommendations: number
  /** Bound on the halted releases remembered per cell (oldest forgotten first). */
  maxHalts: number
  /**
   * Bound on the failure events of an unproven target a node remembers (CellState.evidence; the
   * newest are kept). Must be at least haltThreshold.
   */
  maxEvidence: number
}

export interface ReleaseRef {
  cell: string
  version: string
  digest: string
}

export type VolunteerPurpose = 'replicate' | 'surge'

export type Action =
  | { kind: 'spawn', cell: string, version: string, digest: string, purpose: VolunteerPurpose, reason: string }
  /** Phase one of a spawn: wait `delayMs`, then call `confirmSpawn` with a fresh view. */
  | { kind: 'volunteer', cell: string, version: string, digest: string, purpose: VolunteerPurpose, delayMs: number, reason: string }
  | { kind: 'drain', cell: string, instanceId: string, reason: string }
  /** Start a fresh replica in place of this node's own crashed one (same release, same slot). */
  | { kind: 'restart', cell: string, instanceId: string, version: string, digest: string, reason: string }
  | { kind: 'halt-release', cell: string, version: string, digest: string, reason: string, metric: string }

export interface Recommendation {
  atMs: number
  replicas: number
}

/** What a node remembers about one cell between ticks. Treat as immutable; decisions return a new one. */
export interface CellState {
  cell: string
  /** Highest-seq desired-version record seen, so a replayed older one cannot win. */
  desired?: DesiredVersionRecord
  /** Recent recommendations, oldest first, bounded by `maxRecommendations`. */
  recommendations: readonly Recommendation[]
  /** The stabilised desired replica count of the last tick. */
  desiredReplicas?: number
  /** Releases this node halted or learnt were halted, oldest first, bounded by `maxHalts`. */
  halts: readonly HaltRecord[]
  /**
   * Digest of the target once this node saw a replica of it proven (ready for healthGraceMs without
   * a failure): from then on only failures within haltWindowMs count toward its halt.
   */
  proven?: string
  /**
   * Failure events of the target while it has not proven itself, oldest first, bounded by
   * `maxEvidence`: until then they all count toward the halt, however long ago they happened (the
   * fleet view keeps events only for a while, and a paused rollout may outlast the halt window).
   * Cleared once the target proves itself, changes or is halted. Absent: none.
   */
  evidence?: readonly HealthEvent[]
  /**
   * An old replica this node retired to start the target in its slot (a rollout on a fleet with no
   * free slot); kept until the node runs a replica of the target.
   */
  replacing?: string
}

export interface Decision {
  actions: Action[]
  /** Human-readable notes for the log, including why nothing was done. */
  reasons: string[]
  state: CellState
  desiredReplicas: number
  target?: ReleaseRef
}
