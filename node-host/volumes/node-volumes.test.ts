import { describe, expect, it } from 'vitest'
import { claimSeen } from './node-volumes.ts'
import type { InstanceRecord, SnapshotRecord } from '../../core/fleet/index.ts'

// A view's two lookups, as the fleet would answer them (FleetView's own are tested in core/fleet).
const view = (snapshots: Record<string, number>, instances: Array<{ cell: string, claim?: { ordinal: number, epoch: number } }>) => ({
  snapshots: (claimId: string) => Array.from({ length: snapshots[claimId] ?? 0 }, () => ({}) as SnapshotRecord),
  instances: (cell?: string) => instances.filter(i => i.cell === cell).map(i => i as unknown as InstanceRecord)
})

describe('whether the fleet shows that a claim exists', () => {
  it('says yes for snapshot records of it, and for a replica that holds it before any snapshot', () => {
    expect(claimSeen(view({}, []), 'ledger/0')).toBe(false)
    expect(claimSeen(view({ 'ledger/0': 2 }, []), 'ledger/0')).toBe(true)
    // The creator's replica, seconds after it took the claim: no snapshot yet.
    expect(claimSeen(view({}, [{ cell: 'ledger', claim: { ordinal: 0, epoch: 1 } }]), 'ledger/0')).toBe(true)
    // Another ordinal, another cell, a stateless replica of the cell: not this claim.
    expect(claimSeen(view({}, [{ cell: 'ledger', claim: { ordinal: 1, epoch: 1 } }]), 'ledger/0')).toBe(false)
    expect(claimSeen(view({}, [{ cell: 'ledgers', claim: { ordinal: 0, epoch: 1 } }]), 'ledger/0')).toBe(false)
    expect(claimSeen(view({}, [{ cell: 'ledger' }]), 'ledger/0')).toBe(false)
    expect(claimSeen(view({ 'ledger/1': 1 }, []), 'ledger/0')).toBe(false)
    expect(claimSeen(view({}, [{ cell: 'ledger', claim: { ordinal: 12, epoch: 3 } }]), 'ledger/12')).toBe(true)
  })
})
