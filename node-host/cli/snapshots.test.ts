// `cell snapshots`'s command line and report (the fleet behaviour, with a real run against four
// nodes, is in test/integration/snapshot-pins.test.ts). On the old code `snapshots` was an unknown
// command: exit 2 and not in `cell --help`.
import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { FleetView, signRecord } from '../../core/fleet/index.ts'
import { ManualClock, makePinRecord, makeSnapshotRecord } from '../../core/fleet/testing.ts'
import { describeCommandLine } from './cli-harness.ts'
import { cellSnapshots, formatSnapshots, snapshotName } from './snapshots.ts'

describeCommandLine('snapshots', {
  usage: /^usage: cell snapshots <cell>/,
  usageErrors: [
      [['snapshots'], /expected at least 1 argument/],
      [['snapshots', 'a', 'b'], /argument/],
      [['snapshots', 'ledger', '--bogus'], /UsageError/],
      [['snapshots', 'ledger', '--output', 'yaml'], /--output must be text or json/]
  ]
})

describe('the snapshots report', () => {
  interface Key { key: PrivateKey, id: string }
  const mk = async (): Promise<Key> => { const key = await generateKeyPair('Ed25519'); return { key, id: peerIdFromPrivateKey(key).toString() } }

  it('lists claims newest first (epoch before time), safe or not, with holders; a cell without any says so', async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 30, 12, 0, 0))
    const view = new FleetView({ clock })
    const [owner, newOwner, h1, h2] = [await mk(), await mk(), await mk(), await mk()]
    const old = makeSnapshotRecord(owner.id, { epoch: 1, tag: 'snapshot-e1-20261130T115500Z', takenMs: clock.now() - 5 * 60_000, sentMs: clock.now() })
    // The new owner's clock is behind: its epoch-2 snapshot is still the newer one.
    const fresh = makeSnapshotRecord(newOwner.id, { epoch: 2, tag: 'snapshot-e2-20261130T115000Z', takenMs: clock.now() - 10 * 60_000, sentMs: clock.now(), sizeBytes: 3 * 1024 * 1024 })
    await view.apply(await signRecord(owner.key, 'snapshot', old), { from: owner.id })
    await view.apply(await signRecord(newOwner.key, 'snapshot', fresh), { from: newOwner.id })
    for (const h of [h1, h2]) await view.apply(await signRecord(h.key, 'pin', makePinRecord(h.id, old, { sentMs: clock.now() })), { from: h.id })
    await view.apply(await signRecord(h1.key, 'pin', makePinRecord(h1.id, fresh, { sentMs: clock.now() })), { from: h1.id })

    const report = cellSnapshots(view, 'ledger')
    expect(report.claims).toHaveLength(1)
    expect(report.claims[0].newestSafe).toBe(old.tag)
    expect(report.claims[0].snapshots.map(s => [s.epoch, s.safe, s.holders.length])).toEqual([[2, false, 1], [1, true, 2]])
    expect(report.claims[0].snapshots[1].name).toBe('ledger@snapshot-2026-11-30T11:55:00Z')
    const text = formatSnapshots(report).join('\n')
    expect(text).toMatch(/^ledger: 2 snapshot\(s\) of 1 claim\(s\)/)
    expect(text).toMatch(/claim ledger\/0: newest safe ledger@snapshot-2026-11-30T11:55:00Z \(epoch 1\)/)
    expect(text).toMatch(/2026-11-30 11:50:00\s+2\s+3\.0 MiB\s+no\s+ledger@snapshot-2026-11-30T11:50:00Z/)
    expect(text).toMatch(/tag snapshot-e1-20261130T115500Z/)
    expect(formatSnapshots(cellSnapshots(view, 'billing'))).toEqual(['billing: no snapshots in the fleet (none taken yet, or the cell keeps no state)'])
    expect(snapshotName('ledger', Date.UTC(2026, 0, 2, 3, 4, 5))).toBe('ledger@snapshot-2026-01-02T03:04:05Z')
  })
})
