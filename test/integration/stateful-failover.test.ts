// Issue 10 point 9: five `cell up` processes, each on its own zfs-fuse pool, run the example ledger
// (class "zfs", a snapshot every 2 s) under continuous appends, with a history of every acknowledged
// append (which node answered, when). Then, in turn:
//  (a) SIGTERM of the claim's owner: the planned hand-over loses nothing acknowledged;
//  (b) kill -9 of the owner: another node restores the newest safe snapshot; every acknowledged
//      append that is missing is younger than that snapshot; the time from the kill to a ready
//      replica is printed (goal: 30 s);
//  (c) SIGSTOP of the owner past its lease, then SIGCONT: no append is acknowledged by the stale
//      owner after the new owner took the claim (every append acknowledged after the stop is in the
//      final log).
// Without fencing (c) fails: the resumed owner answers the calls it held, into a volume nobody restores.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cell, cellRun, fleetLogs, projectRoot, stopProc, startFleet, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'
import { createTestPools, type TestPool } from '../storage/zfs-pool.ts'

interface Ack { n: number, atMs: number, nodeId: string }
interface Entry { seq: number, account: string, amount: number, memo?: string, at: string }

/** Appends `n`, `n+1`, … one at a time until stopped; remembers every acknowledged one and who answered. */
class Appender {
  readonly acks: Ack[] = []
  failures = 0
  private n = 0
  private stopped = false
  private readonly done: Promise<void>
  private readonly client: Mesh
  constructor (client: Mesh) {
    this.client = client
    this.done = this.run()
  }

  private async run (): Promise<void> {
    while (!this.stopped) {
      const n = ++this.n
      let nodeId = ''
      try {
        await this.client.call('ledger', 'append', { account: 'acc', amount: 1, memo: String(n) }, { timeoutMs: 4_000, onAnswer: (r) => { nodeId = r.nodeId } })
        this.acks.push({ n, atMs: Date.now(), nodeId })
      } catch {
        this.failures++
        // No replica for a moment (a hand-over, a failover): try the next number after a beat.
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.done
  }
}

// Not in `npm test` (2–3 minutes): `npm run test:stateful`. (c) used to fail in about one run of
// five with one acknowledged append "lost". Caught with logs, it was the newest acknowledgement (#1124,
// the log ending at #1123): the appender goes on while the test reads the log, and an append
// acknowledged during that list call was counted as lost. The acknowledgements are now taken before
// the log is read (docs/storage.md).
describe.skipIf(process.env.CELL_STATEFUL_FAILOVER !== '1')('a stateful cell on five zfs nodes: hand-over, crash and a paused owner', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const pools: TestPool[] = []
  const nodes: Proc[] = []
  const ids: string[] = []
  let bootstrap = ''
  let client: Mesh | undefined
  let appender: Appender | undefined

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-failover-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    pools.push(...await createTestPools(5, { sizeBytes: 1024 ** 3, prefix: 'cellfo' }))
    bootstrap = await startFleet(nodes, root, keyPath, ['n1', 'n2', 'n3', 'n4', 'n5'], (_name, i) => ['--zfs-pool', pools[i].name, '--drain-grace', '2s'])
    for (const p of nodes) ids.push((await p.waitFor(/cell node (\w+)/, 30_000))[1])
  }, 180_000)

  afterAll(async () => {
    // CELL_TEST_LOGS=DIR keeps every node's stderr there (run with DEBUG=cell:* to see why).
    const keep = process.env.CELL_TEST_LOGS
    if (keep !== undefined && keep !== '') for (const [i, p] of nodes.entries()) await writeFile(join(keep, `failover-n${i + 1}.log`), p.stderr())
    await appender?.stop()
    await client?.stop()
    for (const p of nodes) if (p.child.signalCode === null && p.child.exitCode === null) p.child.kill('SIGCONT')
    await Promise.all(nodes.map(async p => await stopProc(p, 20_000)))
    for (const pool of pools) await pool.destroy()
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 120_000)

  const owner = (c: Mesh): { nodeId: string, proc: Proc } | undefined => {
    const ready = c.view.liveInstances('ledger').find(i => i.state === 'ready')
    if (ready === undefined) return undefined
    const i = ids.indexOf(ready.nodeId)
    return i < 0 ? undefined : { nodeId: ready.nodeId, proc: nodes[i] }
  }

  /** Starts node `i` again on its data dir and pool (its claim votes and snapshots are still there). */
  const restart = async (i: number): Promise<void> => {
    // The old process first: its data directory takes one node at a time (a SIGTERMed node may
    // still be handing its claims over).
    const old = nodes[i]
    if (old.child.exitCode === null && old.child.signalCode === null) {
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([old.exited, new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`node ${i + 1} did not exit within 60 s`)) }, 60_000) })])
        .finally(() => { clearTimeout(timer) })
    }
    const alive = nodes.find((p, j) => j !== i && p.child.exitCode === null && p.child.signalCode === null)!
    const via = alive.stdout().match(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/)![1]
    const p = cell(['up', '--data', join(root, `n${i + 1}`), '--authority', keyPath, '--zfs-pool', pools[i].name, '--drain-grace', '2s', '--bootstrap', via])
    nodes[i] = p
    await p.waitFor(/listening \/ip4/, 60_000)
    await waitForView(client!, () => client!.view.node(ids[i]) !== undefined ? true : undefined, `node ${i + 1} back in the view`, { timeoutMs: 60_000 })
  }

  const log = async (c: Mesh): Promise<Entry[]> => {
    const out: Entry[] = []
    for (;;) {
      const page = await c.call<Entry[]>('ledger', 'list', { fromSeq: (out.at(-1)?.seq ?? 0) + 1, limit: 1000 }, { timeoutMs: 15_000 })
      out.push(...page)
      if (page.length < 1000) return out
    }
  }

  const nextOwner = async (c: Mesh, not: string, timeoutMs: number): Promise<{ nodeId: string, proc: Proc }> =>
    await waitForView(c, () => { const o = owner(c); return o !== undefined && o.nodeId !== not ? o : undefined }, `ledger ready on a node other than …${not.slice(-6)}`, { timeoutMs })
      .catch((err) => { throw new Error(`${(err as Error).message}\n${fleetLogs(nodes, 2000)}`) })

  /** Appends acknowledged so far reach the log count: wait for a few more after a move. */
  const moreAcks = async (a: Appender, count: number, timeoutMs: number): Promise<void> => {
    const target = a.acks.length + count
    const until = Date.now() + timeoutMs
    while (a.acks.length < target) {
      if (Date.now() > until) throw new Error(`only ${a.acks.length} of ${target} appends acknowledged in ${timeoutMs} ms (${a.failures} failed)\n${fleetLogs(nodes, 2000)}`)
      await waitForView(client!, () => undefined, 'appends', { timeoutMs: 200 }).catch(() => {})
    }
  }

  it('publishes ledger on zfs and appends', async () => {
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/class = "[a-z]+"/, 'class = "zfs"').replace(/snapshot_every = "[^"]+"/, 'snapshot_every = "2s"').replace(/claim = "[^"]+"/, 'claim = "64MiB"'))
    const r = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '90'], 120_000)
    expect(r.code, `${r.stdout}\n${r.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    const c = client
    await waitForView(c, () => owner(c), 'a ready ledger replica', { timeoutMs: 60_000 })
    appender = new Appender(c)
    await moreAcks(appender, 30, 60_000)
    // A snapshot of ledger/0 is safe: held by two nodes besides its owner.
    await waitForView(c, () => c.view.safeSnapshots('ledger/0')[0], 'a safe snapshot of ledger/0', { timeoutMs: 60_000 })
  }, 240_000)

  it('(a) SIGTERM of the owner hands the claim over with every acknowledged append', async () => {
    const c = client!
    const a = appender!
    const before = owner(c)!
    before.proc.child.kill('SIGTERM')
    const after = await nextOwner(c, before.nodeId, 90_000)
    await moreAcks(a, 10, 60_000)
    // Acknowledged before the log is read (the appender goes on meanwhile): each must be in it.
    const acked = a.acks.slice()
    const entries = new Set((await log(c)).map(e => e.memo))
    const lost = acked.filter(x => !entries.has(String(x.n)))
    process.stdout.write(`stateful (a) SIGTERM: claim moved …${before.nodeId.slice(-6)} → …${after.nodeId.slice(-6)}, ${a.acks.length} acknowledged, ${lost.length} lost, ${a.failures} failed calls\n`)
    expect(lost.map(x => x.n)).toEqual([])
    // Back on its data dir: a voter of the claim again.
    await restart(ids.indexOf(before.nodeId))
  }, 240_000)

  it('(b) kill -9 of the owner: restored elsewhere, losing only appends younger than the restored snapshot', async () => {
    const c = client!
    const a = appender!
    const before = owner(c)!
    await moreAcks(a, 20, 60_000)
    const safeBefore = c.view.safeSnapshots('ledger/0')[0]
    const killedAt = Date.now()
    before.proc.child.kill('SIGKILL')
    const after = await nextOwner(c, before.nodeId, 90_000)
    const restoreMs = Date.now() - killedAt
    await moreAcks(a, 10, 60_000)
    const acked = a.acks.slice()
    const entries = new Set((await log(c)).map(e => e.memo))
    const lost = acked.filter(x => !entries.has(String(x.n)))
    process.stdout.write(`stateful (b) kill -9: ready again on …${after.nodeId.slice(-6)} ${restoreMs} ms after the kill; ${lost.length} acknowledged appends lost, all after the last safe snapshot before the kill (${safeBefore?.tag ?? 'none'})\n`)
    expect(restoreMs).toBeLessThan(90_000)
    // Lost appends were acknowledged by the dead owner after its newest safe snapshot was taken.
    for (const x of lost) {
      expect(x.nodeId).toBe(before.nodeId)
      expect(x.atMs).toBeGreaterThan(safeBefore?.takenMs ?? 0)
    }
    await restart(ids.indexOf(before.nodeId))
  }, 240_000)

  it('(c) a paused owner acknowledges nothing after the claim moved', async () => {
    const c = client!
    const a = appender!
    const before = owner(c)!
    await moreAcks(a, 20, 60_000)
    before.proc.child.kill('SIGSTOP')
    // Answers already on their way when the process stopped may still arrive for a moment.
    const stoppedAt = Date.now() + 500
    const after = await nextOwner(c, before.nodeId, 90_000)
    await moreAcks(a, 10, 60_000)
    before.proc.child.kill('SIGCONT')
    // The resumed owner finds its lease over: it stops its replica and answers nothing more.
    await moreAcks(a, 20, 60_000)
    // Only appends acknowledged before the log is read must be in it: the appender goes on, and an
    // append acknowledged while the list call ran was counted lost (the "one in five runs" loss).
    const acked = a.acks.slice()
    const listed = await log(c)
    const entries = new Set(listed.map(e => e.memo))
    const staleAcks = a.acks.filter(x => x.atMs > stoppedAt && x.nodeId === before.nodeId)
    const lostAfterStop = acked.filter(x => x.atMs > stoppedAt && !entries.has(String(x.n)))
    process.stdout.write(`stateful (c) SIGSTOP: claim moved …${before.nodeId.slice(-6)} → …${after.nodeId.slice(-6)}; ${staleAcks.length} appends acknowledged by the paused owner after the stop, ${lostAfterStop.length} acknowledged and lost\n`)
    const who = (x: Ack): string => `#${x.n} by …${x.nodeId.slice(-6)} at ${new Date(x.atMs).toISOString()}`
    expect(staleAcks.map(who)).toEqual([])
    // On failure: the acknowledgements around each lost one, and the log's last entries.
    const around = lostAfterStop.flatMap(l => a.acks.filter(x => Math.abs(x.n - l.n) <= 3)).map(who)
    const tail = listed.slice(-5).map(e => `seq ${e.seq} memo ${e.memo ?? '-'} at ${e.at}`)
    expect(lostAfterStop.map(who), `acknowledged around it: ${around.join('; ')}\nthe log's last entries (${listed.length} in all): ${tail.join('; ')}\n${acked.length} acknowledged before the log was read, ${a.acks.length} now\n${fleetLogs(nodes, 4000)}`).toEqual([])
    expect(owner(c)?.nodeId).toBe(after.nodeId)
  }, 240_000)
})
