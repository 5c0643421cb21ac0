import { describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { registerVolumeMetrics } from './volume-metrics.ts'
import type { VolumeManager } from './volume-manager.ts'
import type { ClaimVoters } from './voter-health.ts'

describe('volume metrics', () => {
  it('exports each owned claim\'s snapshot age and size, and the claim events, at scrape time', async () => {
    const registry = new Registry()
    const claims = [{ claimId: 'ledger/0', epoch: 3, serving: true, lastSnapshot: 'snapshot-e3-20261130T120000Z', lastSnapshotMs: 1_000_000, lastSnapshotBytes: 4096 }]
    const manager = { claims: () => claims, counters: { opened: 2, restored: 1, snapshots: 7, handovers: 1, renewFailures: 0 } } as unknown as VolumeManager
    const voters: ClaimVoters[] = [
      { claimId: 'ledger/0', epoch: 3, voters: [{ peerId: 'a', live: true }, { peerId: 'b', live: false, goneMs: 90_000 }, { peerId: 'c', live: true }] },
      { claimId: 'ledger/1', epoch: 1, voters: [{ peerId: 'a', live: true }, { peerId: 'b', live: false, goneMs: 90_000 }, { peerId: 'c', live: false, silent: true, goneMs: 40_000 }] }
    ]
    registerVolumeMetrics(registry, manager, { now: () => 1_030_000, claimVoters: () => voters })
    registerVolumeMetrics(registry, manager, { now: () => 1_030_000, claimVoters: () => voters })
    const text = await registry.metrics()
    expect(text).toMatch(/cell_storage_snapshot_age_seconds\{claim="ledger\/0",epoch="3"\} 30\n/)
    expect(text).toMatch(/cell_storage_snapshot_bytes\{claim="ledger\/0",epoch="3"\} 4096\n/)
    expect(text).toMatch(/cell_storage_claim_events_total\{event="snapshots"\} 7\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/0",state="live"\} 2\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/0",state="gone"\} 1\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/0",state="silent"\} 0\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/1",state="live"\} 1\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/1",state="gone"\} 1\n/)
    expect(text).toMatch(/cell_claim_voters\{claim="ledger\/1",state="silent"\} 1\n/)
    claims.length = 0
    voters.length = 0
    const after = await registry.metrics()
    expect(after).not.toMatch(/cell_storage_snapshot_age_seconds\{/)
    expect(after).not.toMatch(/cell_claim_voters\{/)
  })
})
