// Prometheus figures of the claim volumes a node owns, read at each scrape: age and size of each
// claim's last snapshot, its epoch, and the manager's counters (opens, restores, snapshots,
// hand-overs, unsafe hand-overs, failed renewals).
import { Counter, Gauge, type Registry } from 'prom-client'
import type { VolumeManager } from './volume-manager.ts'
import type { ClaimVoters } from './voter-health.ts'

export function registerVolumeMetrics (registry: Registry, manager: VolumeManager, options: { now?: () => number, claimVoters?: () => ClaimVoters[] } = {}): void {
  const now = options.now ?? Date.now
  if (registry.getSingleMetric('cell_storage_snapshot_age_seconds') !== undefined) return
  const age = new Gauge({
    name: 'cell_storage_snapshot_age_seconds',
    help: 'Seconds since the last snapshot of each claim this node owns was taken (what a crash now could lose).',
    labelNames: ['claim', 'epoch'],
    registers: [registry],
    collect () {
      age.reset()
      for (const c of manager.claims()) if (c.lastSnapshotMs !== undefined) age.set({ claim: c.claimId, epoch: String(c.epoch) }, Math.max(0, (now() - c.lastSnapshotMs) / 1000))
    }
  })
  const size = new Gauge({
    name: 'cell_storage_snapshot_bytes',
    help: 'Bytes of file data in the last snapshot of each claim this node owns.',
    labelNames: ['claim', 'epoch'],
    registers: [registry],
    collect () {
      size.reset()
      for (const c of manager.claims()) if (c.lastSnapshotBytes !== undefined) size.set({ claim: c.claimId, epoch: String(c.epoch) }, c.lastSnapshotBytes)
    }
  })
  const voters = new Gauge({
    name: 'cell_claim_voters',
    help: 'Voters of each claim this node owns: live (in its view and answering), gone (out of its view) or silent (in its view, not answering the claim\'s rounds: it cannot vote): the claim renews and moves only while a majority is live (alert when live is down to a majority).',
    labelNames: ['claim', 'state'],
    registers: [registry],
    collect () {
      voters.reset()
      for (const c of options.claimVoters?.() ?? []) {
        const live = c.voters.filter(v => v.live).length
        const silent = c.voters.filter(v => !v.live && v.silent === true).length
        voters.set({ claim: c.claimId, state: 'live' }, live)
        voters.set({ claim: c.claimId, state: 'gone' }, c.voters.length - live - silent)
        voters.set({ claim: c.claimId, state: 'silent' }, silent)
      }
    }
  })
  const events = new Counter({
    name: 'cell_storage_claim_events_total',
    help: 'Claim volumes on this node: opened, restored from a snapshot, snapshots taken, planned hand-overs, hand-overs before two other nodes held the final snapshot, closes that kept the claim because no other node was left to hold it (keptForReturn), failed lease renewals, waits for a former owner given up (ownerWaitsGivenUp), voters gone or silent for good replaced (voterMoves: the claim moved to its next generation) and tries at it that failed (voterMoveFailures).',
    labelNames: ['event'],
    registers: [registry],
    collect () {
      events.reset()
      for (const [event, n] of Object.entries(manager.counters)) events.inc({ event }, n)
    }
  })
}
