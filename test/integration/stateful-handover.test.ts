// Issue 10 in one process: the example ledger cell on 3 full nodes (dir driver), real claim register,
// real snapshots (OCI layouts), real pins over libp2p. The owner of ledger/0 snapshots, two other
// nodes pin the snapshot, and a planned stop of the owner hands the claim over: the new owner
// restores the final snapshot and every acknowledged append is still there. Without the volume
// manager (a plain directory per replica) the balance after the move is 0.
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { projectRoot } from './processes.ts'
import { TestFleet } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'

describe('a stateful cell handed over by a planned stop', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('keeps every acknowledged append, restored on another node from the final snapshot', async () => {
    const key = await generateAuthority()
    const storage = { tuning: { firstSnapshotMs: 500, handoverSafeMs: 20_000 } }
    const root = await fleet.start('cell-stateful-', 3, { authorityKeys: [key], storage, drainGraceMs: 2_000 })
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/class = "[a-z]+"/, 'class = "dir"').replace(/snapshot_every = "[^"]+"/, 'snapshot_every = "2s"'))
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key })
    clients.push(operator)
    await new Publisher(operator).publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })

    const acked: number[] = []
    for (let i = 1; i <= 20; i++) {
      await operator.call('ledger', 'append', { account: 'ada', amount: i }, { timeoutMs: 10_000 })
      acked.push(i)
    }
    const owner = nodes.find(n => n.replicas.list('ledger').some(r => r.state === 'ready'))!
    expect(owner).toBeDefined()
    const claim = owner.volumes.manager!.claims()[0]
    expect(claim.claimId).toBe('ledger/0')
    // A snapshot of the owner's becomes safe: two other nodes pinned it.
    await waitForView(operator, () => operator.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 30_000 })

    // Planned stop of the owner: final snapshot, hand-over, restore elsewhere.
    await owner.stop()
    const others = nodes.filter(n => n !== owner)
    const next = await waitForView(operator, () => others.find(n => n.replicas.list('ledger').some(r => r.state === 'ready')), 'ledger ready on another node', { timeoutMs: 60_000 })
    const moved = next.volumes.manager!.claims()[0]
    expect(moved.claimId).toBe('ledger/0')
    expect(moved.epoch).toBeGreaterThan(claim.epoch)
    expect(moved.restoredFrom).toMatch(/^snapshot-e\d+-/)
    const balance = await operator.call<{ balance: number, entries: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 15_000 })
    expect(balance.entries).toBe(acked.length)
    expect(balance.balance).toBe(acked.reduce((a, b) => a + b, 0))
  }, 180_000)
})
