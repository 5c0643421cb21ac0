// Test helpers for fleet (browser-safe so the core bundle check stays green): a manual clock and
// record factories with valid defaults.
import type { InstanceRecord, NodeRecord } from './records.ts'
import type { PinRecord, SnapshotRecord } from './snapshots.ts'

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

/** A valid snapshot record of claim `claimId` (default `ledger/0`) at `epoch` (default 1). */
export function makeSnapshotRecord (nodeId: string, overrides: Partial<SnapshotRecord> = {}): SnapshotRecord {
  const epoch = overrides.epoch ?? 1
  const manifest = 'sha256:' + '11'.repeat(32)
  return {
    nodeId,
    cell: 'ledger',
    claimId: 'ledger/0',
    epoch,
    tag: `snapshot-e${epoch}-20261130T120000Z`,
    takenMs: 1_700_000_000_000,
    sizeBytes: 4096,
    plainManifestDigest: manifest,
    blobs: [manifest, 'sha256:' + '22'.repeat(32), 'sha256:' + '33'.repeat(32)],
    seq: 1,
    sentMs: 1_700_000_000_000,
    ...overrides
  }
}

/** A pin of `snapshot` by `holder`. */
export function makePinRecord (holder: string, snapshot: SnapshotRecord, overrides: Partial<PinRecord> = {}): PinRecord {
  return {
    nodeId: holder,
    owner: snapshot.nodeId,
    cell: snapshot.cell,
    claimId: snapshot.claimId,
    epoch: snapshot.epoch,
    tag: snapshot.tag,
    manifestDigest: snapshot.plainManifestDigest,
    seq: 1,
    sentMs: snapshot.sentMs,
    ...overrides
  }
}

/**
 * Resolves once `check()` holds, re-checking on each `event` from `targets`; rejects after
 * `timeoutMs` of real time (for tests over real libp2p nodes).
 */
export async function until (what: string, check: () => boolean, targets: EventTarget | EventTarget[], event: string, timeoutMs = 10_000): Promise<void> {
  if (check()) return
  const list = Array.isArray(targets) ? targets : [targets]
  await new Promise<void>((resolve, reject) => {
    const onEvent = (): void => { if (check()) { cleanup(); resolve() } }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)) }, timeoutMs)
    const cleanup = (): void => {
      clearTimeout(timer)
      for (const t of list) t.removeEventListener(event, onEvent)
    }
    for (const t of list) t.addEventListener(event, onEvent)
  })
}
