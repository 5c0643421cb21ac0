// `cell restore`'s command line (the restore itself, its operator gate and a caller-only refusal are
// in test/integration/stateful-handover.test.ts).
import { describe, expect, it } from 'vitest'
import { describeCommandLine } from './cli-harness.ts'
import { makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { chooseSnapshot } from './restore.ts'
import { snapshotName } from './snapshots.ts'

describeCommandLine('restore', {
  usage: /^usage: cell restore <cell> <snapshot>/,
  usageErrors: [
      [['restore'], /argument/],
      [['restore', 'ledger'], /argument/],
      [['restore', 'ledger', 'snapshot-e1-20261130T123436Z', 'extra'], /argument/],
      [['restore', 'ledger', 'snapshot-e1-20261130T123436Z', '--output', 'yaml'], /--output must be text or json/]
  ]
})

describe('which snapshot a name chooses', () => {
  // Two claims snapshotted in the same second, and an older one of claim 0.
  const at = Date.UTC(2026, 10, 30, 12, 0, 0)
  const s0 = makeSnapshotRecord('n1', { claimId: 'ledger/0', epoch: 3, tag: 'snapshot-e3-20261130T120000Z', takenMs: at })
  const s1 = makeSnapshotRecord('n2', { claimId: 'ledger/1', epoch: 1, tag: 'snapshot-e1-20261130T120000Z', takenMs: at })
  const old = makeSnapshotRecord('n1', { claimId: 'ledger/0', epoch: 2, tag: 'snapshot-e2-20261130T115000Z', takenMs: at - 600_000 })
  const records = [s0, s1, old]

  it('takes every spelling `cell snapshots` prints: the name (on the old code refused), the tag, the tag\'s time', () => {
    // The name as the SNAPSHOT column shows it.
    expect(chooseSnapshot('ledger', snapshotName('ledger', old.takenMs), records)).toBe(old)
    expect(chooseSnapshot('ledger', 'ledger@snapshot-2026-11-30T11:50:00Z', records)).toBe(old)
    expect(chooseSnapshot('ledger', 'snapshot-2026-11-30T11:50:00Z', records)).toBe(old)
    expect(chooseSnapshot('ledger', 'snapshot-e2-20261130T115000Z', records)).toBe(old)
    expect(chooseSnapshot('ledger', 'ledger@snapshot-e2-20261130T115000Z', records)).toBe(old)
    expect(chooseSnapshot('ledger', 'ledger@snapshot-20261130T115000Z', records)).toBe(old)
    // A tag names one claim's snapshot even when the time is shared.
    expect(chooseSnapshot('ledger', 'snapshot-e1-20261130T120000Z', records)).toBe(s1)
  })

  it('refuses a name two claims share unless --claim picks one, and names what exists when nothing matches', () => {
    expect(() => chooseSnapshot('ledger', 'ledger@snapshot-2026-11-30T12:00:00Z', records)).toThrow(/names snapshots of 2 claims \(ledger\/0, ledger\/1\): pass --claim/)
    expect(chooseSnapshot('ledger', 'ledger@snapshot-2026-11-30T12:00:00Z', records, 'ledger/1')).toBe(s1)
    expect(chooseSnapshot('ledger', 'ledger@snapshot-2026-11-30T12:00:00Z', records, 'ledger/0')).toBe(s0)
    const none = (() => { try { chooseSnapshot('ledger', 'ledger@snapshot-2026-11-30T12:00:01Z', records) } catch (err) { return err as Error } })()
    expect(none?.name).toBe('RestoreRefusedError')
    expect(none?.message).toBe('the fleet knows no snapshot "ledger@snapshot-2026-11-30T12:00:01Z" of ledger (newest: ledger@snapshot-2026-11-30T12:00:00Z of ledger/0, ledger@snapshot-2026-11-30T12:00:00Z of ledger/1, ledger@snapshot-2026-11-30T11:50:00Z of ledger/0; `cell snapshots ledger` lists them all)')
    expect(() => chooseSnapshot('ledger', 'snapshot-e3-20261130T120000Z', records, 'ledger/7')).toThrow(/no snapshot of claim ledger\/7 \(claims with snapshots: ledger\/0, ledger\/1\)/)
    expect(() => chooseSnapshot('ledger', 'snapshot-e3-20261130T120000Z', records, 'ledger/1')).toThrow(/no snapshot "snapshot-e3-20261130T120000Z" of ledger in claim ledger\/1/)
    // Another cell's snapshot is never chosen.
    expect(() => chooseSnapshot('billing', 'snapshot-e3-20261130T120000Z', records)).toThrow(/the fleet knows no snapshot/)
  })
})
