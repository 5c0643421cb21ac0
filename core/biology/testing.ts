// Builders for tests of the decision functions (and the simulator's unit tests). Plain data, no
// Node built-ins, so this file is as portable as the rest of core.

import type { Random } from '../ports.ts'
import type { BiologyView, InstanceRecord, NodeRecord, Policy, ReleaseRecord } from './types.ts'

export const AUTHORITY = 'a1'

export function policy (overrides: Partial<Policy> = {}): Policy {
  return { minReplicas: 2, maxReplicas: 10, cpuTarget: 60, memoryTarget: 70, update: 'live', maxSurge: 25, healthGraceMs: 10_000, canaryWeight: 5, ...overrides }
}

export function node (id: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return { id, capacity: { freeSlots: 4, cpuFreePercent: 80, memoryFreeBytes: 4 * 2 ** 30 }, trustsAuthorities: [AUTHORITY], alive: true, ...overrides }
}

export function release (version: string, seq: number, overrides: Partial<ReleaseRecord> = {}): ReleaseRecord {
  return { cell: 'billing', version, digest: `d-${version}`, seq, authority: AUTHORITY, ...overrides }
}

export function instance (id: string, nodeId: string, overrides: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    id,
    cell: 'billing',
    version: '1.0.0',
    digest: 'd-1.0.0',
    nodeId,
    startedMs: 0,
    readyMs: 0,
    state: 'ready',
    cpuPercent: 45,
    memoryPercent: 20,
    qps: 10,
    p99Ms: 20,
    lastHeartbeatMs: 100_000,
    ...overrides
  }
}

export function view (overrides: Partial<BiologyView> = {}): BiologyView {
  return { nodes: [], instances: [], releases: [release('1.0.0', 1)], desired: [], events: [], halts: [], ...overrides }
}

/** A Random that replays the given values (cycling), for decisions that must go one way. */
export function fixedRandom (...values: number[]): Random {
  let i = 0
  return {
    next: () => values[i++ % values.length],
    bytes: (n) => new Uint8Array(n)
  }
}
