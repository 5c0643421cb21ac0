// Test helpers for fleet (browser-safe so the core bundle check stays green): a manual clock and
// record factories with valid defaults.
import type { InstanceRecord, NodeRecord } from './records.ts'

export { ManualClock } from '../testing/manual-clock.ts'

export function makeNodeRecord (nodeId: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return {
    nodeId,
    addrs: ['/ip4/127.0.0.1/tcp/4001'],
    capacity: { slots: 8, freeSlots: 6, cpuCores: 4, memoryBytes: 8 * 2 ** 30, freeMemoryBytes: 4 * 2 ** 30, diskFreeBytes: 100 * 2 ** 30 },
    load: { cpuPercent: 37.5, memoryPercent: 50 },
    roles: ['host'],
    startedMs: 1_700_000_000_000,
    seq: 1,
    sentMs: 1_700_000_000_000,
    ...overrides
  }
}

export function makeInstanceRecord (nodeId: string, overrides: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    instanceId: 'i-1',
    cell: 'billing',
    version: '1.2.3',
    digest: 'sha256:' + 'ab'.repeat(32),
    nodeId,
    startedMs: 1_700_000_000_000,
    state: 'ready',
    cpuPercent: 12.5,
    memoryBytes: 64 * 2 ** 20,
    memoryPercent: 3.25,
    qps: 120.5,
    p99Ms: 8.75,
    inflight: 3,
    sentMs: 1_700_000_000_000,
    seq: 1,
    ...overrides
  }
}
