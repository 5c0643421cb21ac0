// Issue 10 point 7: a partition never yields two writers of one epoch. Five `cell up` processes,
// each in a network namespace of its own with a veth on a bridge of the test's namespace, run the
// ledger (dir driver). The test moves the owner's link and one other node's to a second bridge with
// no way to the first: a 2 | 3 partition. The owner, cut from the majority of its claim's voters,
// cannot renew; the majority side grants the claim's next epoch to a node of its own only after the
// owner's lease is over, and the owner says it stopped serving before that. Then the links go back.
// Every node logs when it opened a claim at which epoch and when it stopped serving (their clocks
// are this machine's one clock): no epoch has two owners, and the old owner's stop comes first.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cellRun, fleetLogs, projectRoot, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'
import { NetnsFleet } from './netns-fleet.ts'

/** "claim ledger/0 opened by …x at epoch N" and "lost the lease … (epoch N)" lines, with their times. */
function claimEvents (nodes: Proc[]): { opened: Array<{ node: number, epoch: number, atMs: number, voters: string[] }>, fenced: Array<{ node: number, epoch: number, atMs: number }> } {
  const opened: Array<{ node: number, epoch: number, atMs: number, voters: string[] }> = []
  const fenced: Array<{ node: number, epoch: number, atMs: number }> = []
  for (const [i, p] of nodes.entries()) {
    for (const line of p.stderr().split('\n')) {
      const at = Date.parse(line.slice(0, 24))
      const o = / claim ledger\/0 opened by \S+ with voters (\S+) at epoch (\d+)/.exec(line)
      if (o !== null) opened.push({ node: i, epoch: Number(o[2]), atMs: at, voters: o[1].split(',').map(v => v.replace('…', '')) })
      const f = /claim ledger\/0 \(epoch (\d+)\): the lease ended without a renewal|claim ledger\/0 \(epoch (\d+)\) is no longer ours/.exec(line)
      if (f !== null) fenced.push({ node: i, epoch: Number(f[1] ?? f[2]), atMs: at })
    }
  }
  return { opened, fenced }
}

// In `npm test` (network namespaces need root, as CI runs) and alone as `npm run test:partition`.
// It found a real split (a cut-off owner created the claim a second time from its own view; fixed:
// only known voters are ever asked). CELL_PARTITION=0 skips it.
describe.skipIf(process.env.CELL_PARTITION === '0' || process.getuid?.() !== 0)('a stateful cell across a 2 | 3 partition', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const fleet = new NetnsFleet({ tag: 'sp', octet: 233, count: 5 })
  const { nodes, ids } = fleet
  let client: Mesh | undefined

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-partition-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    fleet.create()
    await fleet.start(i => ['--data', join(root, `n${i}`), '--authority', keyPath, '--drain-grace', '2s'], { DEBUG: process.env.CELL_PARTITION_DEBUG ?? 'cell:volumes*,cell:*:error' })
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/snapshot_every = "[^"]+"/, 'snapshot_every = "3s"'))
    const r = await cellRun(['publish', '--dir', dir, '--bootstrap', fleet.addresses[0], '--key', keyPath, '--timeout', '90'], 120_000)
    expect(r.code, `${r.stdout}\n${r.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    // The test's client knows every node: with only node 1, a partition that cuts node 1 off would
    // leave the client's view frozen on the minority side.
    client = await createClient({ bootstrap: fleet.addresses, authorityKey: key })
  }, 240_000)

  afterAll(async () => {
    // CELL_TEST_LOGS=DIR keeps every node's stderr there (CELL_PARTITION_DEBUG=cell:* says more).
    const keep = process.env.CELL_TEST_LOGS
    if (keep !== undefined && keep !== '') for (const [i, p] of nodes.entries()) await writeFile(join(keep, `partition-n${i + 1}.log`), p.stderr())
    await client?.stop()
    await fleet.stop()
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 120_000)

  it('never has two writers of one epoch: the cut-off owner stops before the majority takes the claim', async () => {
    const c = client!
    const ownerId = (await waitForView(c, () => c.view.liveInstances('ledger').find(i => i.state === 'ready'), 'a ready ledger replica', { timeoutMs: 60_000 })).nodeId
    const owner = ids.indexOf(ownerId)
    expect(owner).toBeGreaterThanOrEqual(0)
    const before = claimEvents(nodes).opened.filter(e => e.node === owner).at(-1)!
    // The minority holds exactly one of the three votes, the majority two (the hard case: a quorum
    // with no vote to spare). With two the owner could go on renewing, rightly, and nothing would
    // move. An owner that is a voter goes with a node that is not; one that is not, with a voter.
    const voters = before.voters
    const isVoter = (i: number): boolean => voters.some(v => ids[i].endsWith(v))
    const companion = [0, 1, 2, 3, 4].find(i => i !== owner && isVoter(i) !== isVoter(owner))!
    const minority = [owner, companion]
    const majority = [0, 1, 2, 3, 4].filter(i => !minority.includes(i))
    process.stdout.write(`stateful partition: nodes ${ids.map((n, i) => `${i + 1}=…${n.slice(-6)}`).join(' ')}\n`)
    process.stdout.write(`stateful partition: voters ${voters.join(', ')}; minority nodes ${minority.map(i => ids[i].slice(-6)).join(', ')}; majority ${majority.map(i => ids[i].slice(-6)).join(', ')}\n`)
    fleet.cut(minority)
    // The majority side (where the test's client is) gets the claim at a higher epoch.
    const next = await waitForView(c, () => c.view.liveInstances('ledger').find(i => i.state === 'ready' && majority.includes(ids.indexOf(i.nodeId))), 'a ledger replica on the majority side', { timeoutMs: 120_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}\n${fleetLogs(nodes, 2500)}`) })
    const answer = await c.call<{ entries: number }>('ledger', 'balance', { account: 'x' }, { timeoutMs: 15_000 })
    expect(answer.entries).toBe(0)
    fleet.heal()

    const { opened, fenced } = claimEvents(nodes)
    const taken = opened.find(e => e.node === ids.indexOf(next.nodeId) && e.epoch > before.epoch)!
    const stop = fenced.find(e => e.node === owner && e.epoch === before.epoch)
    process.stdout.write(`stateful partition: owner …${ownerId.slice(-6)} (epoch ${before.epoch}) cut off with one other node; it stopped serving at +${stop !== undefined ? stop.atMs - before.atMs : '?'} ms, node …${next.nodeId.slice(-6)} opened epoch ${taken?.epoch} at +${taken !== undefined ? taken.atMs - before.atMs : '?'} ms\n`)
    expect(taken).toBeDefined()
    // One owner per epoch, across every node's log.
    const byEpoch = new Map<number, Set<number>>()
    for (const e of opened) byEpoch.set(e.epoch, new Set([...(byEpoch.get(e.epoch) ?? []), e.node]))
    for (const [epoch, owners] of byEpoch) expect(owners.size, `epoch ${epoch} opened by nodes ${[...owners].join(', ')}`).toBe(1)
    // The cut-off owner said it stopped serving before the majority's owner opened the next epoch.
    expect(stop, fleetLogs(nodes, 2500)).toBeDefined()
    expect(stop!.atMs).toBeLessThanOrEqual(taken.atMs)
  }, 300_000)
})
