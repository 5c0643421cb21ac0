// The one thing the dashboard is fed by: a tab's own fleet view and its own calls. The browser
// light peer (browser-host/) satisfies this interface; nothing here polls a server.
// Only types are imported from core, so the dashboard bundle carries none of core's code.
import type { FleetChange, FleetStats } from '../../core/fleet/view.ts'
import type { DesiredVersionRecord, InstanceRecord, NodeRecord, ReleaseRecord } from '../../core/fleet/records.ts'
import type { SnapshotRecord } from '../../core/fleet/snapshots.ts'

export type { FleetChange, FleetStats, DesiredVersionRecord, InstanceRecord, NodeRecord, ReleaseRecord, SnapshotRecord }

/** The subset of core/fleet/view.ts `FleetView` the dashboard reads; a real FleetView satisfies it. */
export interface FleetViewLike extends EventTarget {
  nodes: () => NodeRecord[]
  instances: (cell?: string) => InstanceRecord[]
  liveInstances: (cell: string) => InstanceRecord[]
  release: (cell: string) => ReleaseRecord | undefined
  /** Optional (FleetView has it): the newest release and the older ones the view keeps, so a halted release's fallback is known. */
  releases?: (cell: string) => ReleaseRecord[]
  desired: (cell: string) => DesiredVersionRecord | undefined
  cells: () => string[]
  stats: () => FleetStats
  /** Optional (FleetView has them): a stateful cell's claims with snapshots, each claim's snapshots newest first, and who holds one. */
  snapshotClaims?: (cell: string) => string[]
  snapshots?: (claimId: string) => SnapshotRecord[]
  isSafeSnapshot?: (snapshot: SnapshotRecord) => boolean
  snapshotHolders?: (snapshot: SnapshotRecord) => string[]
  /** Optional: local receive time of a node's or instance's latest record (FleetView has it). */
  lastSeenMs?: (kind: 'node' | 'instance', key: string) => number | undefined
}

/** 'connecting' before the first fleet record; 'stale' when showing a cached view or heartbeats stopped. */
export type SourceStatus = 'connecting' | 'live' | 'stale' | 'error'
export const SOURCE_STATUSES: readonly SourceStatus[] = ['connecting', 'live', 'stale', 'error']

/** Replication and rollout policy from a release's Cell.toml (core/manifest `BiologyPolicy` fields). */
export interface CellPolicy {
  minReplicas: number
  maxReplicas: number
  canaryWeight: number
  maxSurge: number
  healthGraceMs: number
  update?: string
}

/** Which replica answered a call, when the source can tell. */
export interface CallRoute {
  nodeId: string
  instanceId?: string
  version: string
  digest: string
}

export interface CallResult {
  result: unknown
  route?: CallRoute
}

export interface SourceCallOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

export interface FleetSource extends EventTarget {
  readonly view: FleetViewLike
  /** This tab's peer id (string form). */
  readonly peerId: string
  /** Current status; a 'status' event fires on every change. */
  readonly status: SourceStatus
  /** Why the status is 'error' (or 'stale'), in words, when known. */
  readonly statusReason?: string
  /** Same contract as core/mesh `Mesh.call`: JSON in, JSON out, named errors. */
  call: (cell: string, method: string, request: unknown, options?: SourceCallOptions) => Promise<unknown>
  /**
   * Optional: like `call`, plus which replica answered. When present the dashboard counts the
   * calls it makes per version; without it they are counted as "unattributed".
   */
  callRouted?: (cell: string, method: string, request: unknown, options?: SourceCallOptions) => Promise<CallResult>
  /** Optional: peer ids of the full nodes this tab is connected to (for the topology view). */
  connections?: () => string[]
  /** Optional: the policy of the cell's current release (the light peer may not have Cell.toml). */
  policy?: (cell: string) => CellPolicy | undefined
  /**
   * Optional: warnings about what this tab sees, in words (e.g. connected full nodes of the other
   * dissemination mode, so part of the fleet is missing); a 'warnings' event fires when they change.
   * Empty when all is well. The dashboard shows at most MAX_WARNINGS of them beside the fleet.
   */
  warnings?: () => string[]
}

/** Event a source dispatches when `status` changes. */
export const STATUS_EVENT = 'status'
/** Event a source with `warnings` dispatches when they change. */
export const WARNINGS_EVENT = 'warnings'
/** Warnings the dashboard shows at most (a source bounds its own list first, e.g. "and N more"), and characters of each. */
export const MAX_WARNINGS = 5
export const MAX_WARNING_CHARS = 400
/** Event FleetViewLike dispatches on every record change (detail: FleetChange). */
export const CHANGE_EVENT = 'change'
