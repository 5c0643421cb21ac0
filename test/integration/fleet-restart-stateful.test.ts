// A whole fleet stopped at once and started again (docs/storage.md, "Claims and epochs" and "What
// is lost"): three `cell up` nodes run the ledger; six appends are acknowledged after the claim's
// first safe snapshot; every node gets SIGINT, the owner last (its final snapshot is pinned by
// nobody, so it keeps the claim instead of handing it over). The two nodes that did not own the claim start
// again first: they know the claim's snapshots again (records kept on disk, pins announced again)
// and leave the claim to its owner, which they have not seen since they started; the owner comes
// back last and serves all six appends from its own copy. Then the fleet stops at once again, with
// one append younger than the newest safe snapshot, and the owner never returns: after
// `--owner-wait` the others take the claim from that snapshot (the younger append lost, as
// documented). Before the fix the first restart served an empty ledger (0 of 6).
// `npm run test:fleet-restart` (about a minute and a half; not in `npm test`, for its time).
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

  it('the owner back last serves every acknowledged append; one that never returns is replaced from the newest safe snapshot after --owner-wait', async () => {
    const bootstrap = await startFleet(nodes, root, keyPath, NAMES)
    const ids = await Promise.all(nodes.map(async p => (await p.waitFor(/cell node (\w+)/, 30_000))[1]))
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const published = await cellRun(['publish', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '90'], 120_000)
    expect(published.code, `${published.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    const client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    let ownerId: string
    let firstEpoch: number
    try {
      ownerId = (await waitForView(client, () => client.view.liveInstances('ledger').find(i => i.state === 'ready'), 'a ready ledger replica', { timeoutMs: 60_000 })).nodeId
      firstEpoch = (await waitForView(client, () => client.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 60_000 })).epoch
      for (let i = 1; i <= 6; i++) await client.call('ledger', 'append', { account: 'ada', amount: i }, { timeoutMs: 10_000 })
    } finally {
      await client.stop()
    }
    const owner = ids.indexOf(ownerId)
    expect(owner).toBeGreaterThanOrEqual(0)
    const others = [0, 1, 2].filter(i => i !== owner)
    const said = (): string => nodes.map((p, i) => `--- node ${i + 1}${i === owner ? ' (the former owner)' : ''} ---\n${p.stdout().slice(-1500)}${p.stderr().slice(-2500)}`).join('\n')
    const up = (i: number, extra: string[] = []): Proc => cell(['up', '--data', join(root, NAMES[i]), '--authority', keyPath, ...extra])
    const stopAll = async (): Promise<void> => {
      // Ctrl-C on the two others at once, then on the owner: no node is left that could pin its
      // final snapshot. (All three at once races the others' pinners against their own stop.)
      await Promise.all(others.map(async i => { nodes[i].child.kill('SIGINT'); await nodes[i].exited }))
      nodes[owner].child.kill('SIGINT')
      await nodes[owner].exited
      expect(nodes[owner].stderr(), said()).toMatch(/claim ledger\/0: no other node is left that could hold its final snapshot/)
    }

    // 1. Everyone stops, the owner last; the two others start again first.
    await stopAll()
    for (const i of others) nodes[i] = up(i)
    const again = (await nodes[others[0]].waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 60_000))[1]
    // One of them tries the claim and leaves it to the owner it has not seen since it started.
    const awaited = await Promise.any(others.map(async i => await nodes[i].waitFor(/claim ledger\/0: its last owner …(\w{6}) \(epoch (\d+)\) ended without a hand-over/, 60_000, 'stderr')))
      .catch(() => { throw new Error(`no node left the claim to its owner\n${said()}`) })
    expect(awaited[1]).toBe(ownerId.slice(-6))
    // An operator sees why the ledger is not running, and for how long more, in `cell status`.
    const status = await cellRun(['status', 'ledger', '--bootstrap', again, '--key', keyPath], 60_000)
    expect(status.stdout, status.stderr).toMatch(new RegExp(`declined to start ledger .*ClaimOwnerAwaitedError: ledger/0 was last owned by …${ownerId.slice(-6)} .*Left to it for \\d+ s more`))
    const after = await createClient({ bootstrap: [again], authorityKey: key })
    try {
      // The snapshot records of the last run are known again (kept on disk, pins announced again):
      // a client that just joined sees ledger/0's snapshot as safe, and no replica runs meanwhile.
      await waitForView(after, () => after.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0 after the restart', { timeoutMs: 30_000 })
      expect(after.view.liveInstances('ledger')).toEqual([])
      const before = new Set(after.view.snapshots('ledger/0').map(s => s.tag))
      // 2. The owner comes back: it takes its claim with its own copy (at the same epoch when the
      // voters, restarted, still count its old lease; else at the next).
      nodes[owner] = up(owner)
      await nodes[owner].waitFor(/listening \/ip4/, 60_000)
      const ready = await waitForView(after, () => after.view.liveInstances('ledger').find(i => i.state === 'ready'), 'the ledger ready again', { timeoutMs: 60_000 })
      expect(ready.nodeId, said()).toBe(ownerId)
      const balance = await after.call<{ entries: number, balance: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 30_000 })
      expect(balance, said()).toEqual({ account: 'ada', entries: 6, balance: 21 })
      // Its first snapshot since it came back (all six appends) becomes safe; one more append after it.
      await waitForView(after, () => after.view.safeSnapshots('ledger/0').find(s => !before.has(s.tag) && s.epoch >= firstEpoch), 'a safe snapshot the owner took since it came back', {
        timeoutMs: 60_000, seen: () => `${after.view.snapshots('ledger/0').map(s => `${s.tag} by …${s.nodeId.slice(-6)} held by ${after.view.snapshotHolders(s).length}`).join(', ')}\n${said()}`
      })
      await after.call('ledger', 'append', { account: 'ada', amount: 7 }, { timeoutMs: 10_000 })
    } finally {
      await after.stop()
    }

    // 3. Everyone stops again (the owner last), and this time the owner does not come back: after --owner-wait (3 s
    // here) one of the others takes the claim from the newest safe snapshot.
    await stopAll()
    for (const i of others) nodes[i] = up(i, ['--owner-wait', '3s'])
    const third = (await nodes[others[0]].waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 60_000))[1]
    await Promise.any(others.map(async i => await nodes[i].waitFor(/claim ledger\/0: its last owner …\w{6} \(epoch \d+\) has not come back in \d+ s; taking the claim/, 60_000, 'stderr')))
      .catch(() => { throw new Error(`no node took the claim after --owner-wait\n${said()}`) })
    const last = await createClient({ bootstrap: [third], authorityKey: key })
    try {
      const ready = await waitForView(last, () => last.view.liveInstances('ledger').find(i => i.state === 'ready'), 'the ledger ready on another node', { timeoutMs: 60_000 })
      expect(others.map(i => ids[i])).toContain(ready.nodeId)
      const balance = await last.call<{ entries: number, balance: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 30_000 })
      expect(balance, said()).toEqual({ account: 'ada', entries: 6, balance: 21 })
    } finally {
      await last.stop()
    }
  }, 300_000)
})
