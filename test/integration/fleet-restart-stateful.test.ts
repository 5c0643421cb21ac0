// A known gap, reproduced (docs/storage.md, "Not done yet"): three `cell up` nodes run the ledger; six
// appends are acknowledged after the claim's first safe snapshot; every node gets SIGINT at once
// (an operator stopping the fleet); the two nodes that did not own the claim start again first, the
// former owner after them. Every acknowledged append should still be in the ledger. Today it is not:
// after a whole-fleet restart no node knows any snapshot (snapshot and pin records live only in the
// views), so the node that takes the claim starts it from an empty volume while the former owner's
// copy waits on its disk, unused (found by hand on 2026-12-02: balance 0 entries of 6).
// Not in `npm test`: it fails until that is fixed. `npm run test:fleet-restart`.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { cell, cellRun, fleetLogs, projectRoot, startFleet, stopProc, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'

const NAMES = ['n1', 'n2', 'n3']

describe.skipIf(process.env.CELL_FLEET_RESTART !== '1')('a whole fleet with a stateful cell stopped at once and started again, its owner last', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const nodes: Proc[] = []

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-fleet-restart-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
  })

  afterAll(async () => {
    await Promise.all(nodes.map(async p => await stopProc(p, 20_000)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('keeps every acknowledged append', async () => {
    const bootstrap = await startFleet(nodes, root, keyPath, NAMES)
    const ids = await Promise.all(nodes.map(async p => (await p.waitFor(/cell node (\w+)/, 30_000))[1]))
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const published = await cellRun(['publish', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '90'], 120_000)
    expect(published.code, `${published.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    const client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    let ownerId: string
    try {
      ownerId = (await waitForView(client, () => client.view.liveInstances('ledger').find(i => i.state === 'ready'), 'a ready ledger replica', { timeoutMs: 60_000 })).nodeId
      await waitForView(client, () => client.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 60_000 })
      for (let i = 1; i <= 6; i++) await client.call('ledger', 'append', { account: 'ada', amount: i }, { timeoutMs: 10_000 })
    } finally {
      await client.stop()
    }
    const owner = ids.indexOf(ownerId)
    expect(owner).toBeGreaterThanOrEqual(0)

    // Ctrl-C on every node at once; then the two others, then (once one of them runs the ledger, or
    // 30 s on) the former owner, each on its own data directory.
    for (const p of nodes) p.child.kill('SIGINT')
    await Promise.all(nodes.map(async p => await p.exited))
    const up = (i: number): Proc => cell(['up', '--data', join(root, NAMES[i]), '--authority', keyPath])
    for (const i of [0, 1, 2]) if (i !== owner) nodes[i] = up(i)
    const first = nodes.find((_p, i) => i !== owner)!
    const again = (await first.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 60_000))[1]
    const after = await createClient({ bootstrap: [again], authorityKey: key })
    try {
      await waitForView(after, () => after.view.liveInstances('ledger').find(i => i.state === 'ready'), 'the ledger ready on a restarted node', { timeoutMs: 30_000 })
        .catch(() => undefined)
      nodes[owner] = up(owner)
      await nodes[owner].waitFor(/listening \/ip4/, 60_000)
      const balance = await after.call<{ entries: number, balance: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 30_000 })
      const said = nodes.map((p, i) => `--- node ${i + 1}${i === owner ? ' (the former owner)' : ''} ---\n${p.stdout().slice(-1500)}${p.stderr().slice(-1500)}`).join('\n')
      expect(balance, said).toEqual({ account: 'ada', entries: 6, balance: 21 })
    } finally {
      await after.stop()
    }
  }, 300_000)
})
