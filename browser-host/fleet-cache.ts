// What the page shows of the fleet: the live view once gossip has refreshed it, else the last
// view saved before the reload (stale, with each record's last-seen time). Pure functions of the
// view and the cache, so the page and tests read the same summary.
import type { FleetView, NodeRecord, InstanceRecord } from '../core/fleet/index.ts'
import { LIMITS, type CachedFleet, type CachedCell } from './keystore.ts'

export interface FleetSummary {
  /** True until a record arrived from a live peer since this tab started. */
  stale: boolean
  /** When the shown data was saved (stale) or read (live). */
  asOfMs: number
  nodes: Array<{ record: NodeRecord, lastSeenMs: number }>
  instances: Array<{ record: InstanceRecord, lastSeenMs: number }>
  cells: CachedCell[]
}

/** The view as a cache entry: the lists to show plus the signed frames to re-verify on load. */
export function captureFleet (view: FleetView, nowMs: number): CachedFleet {
  return { ...captureLists(view, nowMs), frames: view.snapshot({ nowMs }).slice(0, LIMITS.frames) }
}

function captureLists (view: FleetView, nowMs: number): Omit<CachedFleet, 'frames'> {
  const nodes = view.nodes(nowMs).slice(0, LIMITS.cachedNodes).map(record => ({ record, lastSeenMs: view.lastSeenMs('node', record.nodeId) ?? nowMs }))
  const instances = view.instances(undefined, nowMs).slice(0, LIMITS.cachedInstances)
    .map(record => ({ record, lastSeenMs: view.lastSeenMs('instance', `${record.nodeId}/${record.instanceId}`) ?? nowMs }))
  const cells: CachedCell[] = []
  for (const cell of view.cells(nowMs).slice(0, LIMITS.cachedCells)) {
    const release = view.desired(cell) ?? view.release(cell)
    cells.push({ cell, version: release?.version ?? '', authority: release?.authority ?? '' })
  }
  return { savedMs: nowMs, nodes, instances, cells }
}

export function summarise (view: FleetView, cache: CachedFleet | undefined, live: boolean, nowMs: number): FleetSummary {
  if (!live && cache != null) {
    return { stale: true, asOfMs: cache.savedMs, nodes: cache.nodes, instances: cache.instances, cells: cache.cells }
  }
  const now = captureLists(view, nowMs)
  return { stale: !live, asOfMs: nowMs, nodes: now.nodes, instances: now.instances, cells: now.cells }
}
