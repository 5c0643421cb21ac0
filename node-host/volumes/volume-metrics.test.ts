import { describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { registerVolumeMetrics } from './volume-metrics.ts'
import type { VolumeManager } from './volume-manager.ts'

describe('volume metrics', () => {
  it('exports each owned claim\'s snapshot age and size, and the claim events, at scrape time', async () => {
    const registry = new Registry()
    const claims = [{ claimId: 'ledger/0', epoch: 3, serving: true, lastSnapshot: 'snapshot-e3-20261130T120000Z', lastSnapshotMs: 1_000_000, lastSnapshotBytes: 4096 }]
    const manager = { claims: () => claims, counters: { opened: 2, restored: 1, snapshots: 7, handovers: 1, renewFailures: 0 } } as unknown as VolumeManager
    registerVolumeMetrics(registry, manager, () => 1_030_000)
    registerVolumeMetrics(registry, manager, () => 1_030_000)
    const text = await registry.metrics()
    expect(text).toMatch(/cell_storage_snapshot_age_seconds\{claim="ledger\/0",epoch="3"\} 30\n/)
    expect(text).toMatch(/cell_storage_snapshot_bytes\{claim="ledger\/0",epoch="3"\} 4096\n/)
    expect(text).toMatch(/cell_storage_claim_events_total\{event="snapshots"\} 7\n/)
    claims.length = 0
    expect(await registry.metrics()).not.toMatch(/cell_storage_snapshot_age_seconds\{/)
  })
})
