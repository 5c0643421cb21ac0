// Issue 8 points 1 and 2: a fleet stays one fleet. Five `cell up` processes with compressed link
// timers (bootstrap tags expire after 3 s instead of 2 min, peers re-checked every second,
// anti-entropy every 3 s) have every TCP connection of one node cut by force (`ss -K`) again and
// again; each time the fleet must heal within 10 s (every node connected to the other four, a
// client joining through any node sees all five and the same release). Then a node frozen
// (SIGSTOP) while a release is published: `cell publish` names it as not having prepared the
// release, and after it thaws it pulls the release by anti-entropy and prepares it.
//
// On the code before this change the first step already fails: nodes printed no "peer joined"
// lines; and with them added but no keeper, nothing re-dials a cut connection, so the cut node
// stays at 0 fleet peers and a client joining through it sees only that node (the split).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { cellRun, fleetLogs, startFleet, stopProc, type Proc } from './processes.ts'
import { stageVersion, CELL } from './versioned.ts'
import { cutConnections, fleetPeers, seenThrough, tcpAddr, until } from './fleet-links.ts'
import { createClient, waitForView } from '../../node-host/client.ts'

const NODES = ['n1', 'n2', 'n3', 'n4', 'n5']
const HEAL_MS = 10_000
const LINK_FLAGS = ['--peer-check', '1s', '--redial-max', '2s', '--anti-entropy', '3s', '--bootstrap-tag-ttl', '3s']
// Each round of the cut test lasts three bootstrap tag lifetimes.
const ROUND_MS = 9_000

describe('a fleet stays whole', () => {
  let root = ''
  let keyPath = ''
  let key: AuthorityKey
  const nodes: Proc[] = []
  const ids: string[] = []
  let bootstrap = ''
  let version = ''

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-whole-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    bootstrap = await startFleet(nodes, root, keyPath, NODES, LINK_FLAGS)
    for (const p of nodes) ids.push(/cell node (\w+)/.exec(p.stdout())![1])
  }, 120_000)

  afterAll(async () => {
    for (const p of nodes) if (p.child.pid !== undefined) { try { process.kill(p.child.pid, 'SIGCONT') } catch {} }
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  const allConnected = (): boolean => nodes.every(p => fleetPeers(p) === NODES.length - 1)
  const counts = (): string => nodes.map((p, i) => `${NODES[i]}=${fleetPeers(p) ?? '?'}`).join(' ')

  const publish = async (tag: string, v: string): Promise<{ stdout: string, digest: string }> => {
    const dir = await stageVersion(root, tag, authorityIdOf(key.publicKey))
    const r = await cellRun(['publish', v, '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--wait', '1', '--timeout', '60'], 90_000)
    expect(r.stderr, fleetLogs(nodes)).toBe('')
    expect(r.code, fleetLogs(nodes)).toBe(0)
    version = v
    return { stdout: r.stdout, digest: /digest ([0-9a-f]{64})/.exec(r.stdout)![1] }
  }

  /** Every node, seen through a client joining there, shows all five nodes and the current release. */
  const expectOneFleet = async (): Promise<void> => {
    for (const p of nodes) {
      const seen = await seenThrough(tcpAddr(p), key, [CELL], NODES.length, HEAL_MS, { [CELL]: version })
      expect(seen.nodes, `through ${tcpAddr(p)}`).toEqual([...ids].sort())
      expect(seen.releases[CELL], `through ${tcpAddr(p)}`).toBe(version)
    }
  }

  it('connects every node to the other four and says so at the default level', async () => {
    await until(allConnected, () => `fleet peers: ${counts()}\n${fleetLogs(nodes)}`, 60_000)
    expect(nodes[0].stdout()).toMatch(/^peer joined …\w{6} \(1 fleet peer\)$/m)
  }, 90_000)

  it('publish names every node that prepared the release', async () => {
    const { stdout } = await publish('v1', '1.0.0')
    expect(stdout).toMatch(/prepared on 5 of 5 nodes/)
    for (const id of ids) expect(stdout).toContain(`node …${id.slice(-6)} prepared`)
    await expectOneFleet()
  }, 120_000)

  it('stays whole while many short-lived callers come and go from the same machine', async () => {
    // Each `cell call` or `cell publish` is a new peer id from 127.0.0.1. With gossipsub's default
    // IP colocation penalty (scores of departed peers, and their IPs, retained for an hour) a dozen
    // of them pushed every fleet peer on this address below the graylist threshold: gossip stopped,
    // node records expired, and on the code before this change every node printed "peer left" for
    // all its peers within seconds of the 14th caller (seen by hand: clients then saw 0 nodes).
    for (let i = 0; i < 20; i++) {
      const caller = await createClient({ bootstrap: [bootstrap], authorityKey: key })
      try {
        await waitForView(caller, () => caller.view.nodes().length >= NODES.length ? true : undefined, `the fleet (caller ${i + 1})`, {
          timeoutMs: 10_000, seen: () => `${caller.view.nodes().length} nodes, ${caller.libp2p.getConnections().length} connections; fleet peers ${counts()}`
        })
      } finally {
        await caller.stop()
      }
    }
    const started = Date.now()
    while (Date.now() - started < 10_000) {
      expect(allConnected(), counts()).toBe(true)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    await expectOneFleet()
  }, 120_000)

  it('heals within 10 s each time every connection of a node is cut, over compressed time', async () => {
    // Two rounds of 9 s, on two nodes: with the bootstrap tag ttl at 3 s, every round runs past it,
    // as a real fleet runs past libp2p's 2 minutes; the original split needed nothing more than that.
    const heals: number[] = []
    for (let round = 0; round < 2; round++) {
      const started = Date.now()
      const victim = nodes[round % nodes.length]
      const mark = victim.stdout().length
      const cutMs = Date.now()
      const cut = cutConnections(victim.child.pid!)
      expect(cut).toBeGreaterThan(0)
      await until(() => /^peer left /m.test(victim.stdout().slice(mark)), () => `no leave line after the cut: ${counts()}`, 5_000)
      await until(allConnected, () => `not healed: ${counts()}\n${fleetLogs(nodes)}`, HEAL_MS)
      heals.push(Date.now() - cutMs)
      await expectOneFleet()
      // The rest of the round: the fleet must stay whole while time passes (checked, not slept).
      while (Date.now() - started < ROUND_MS) {
        expect(allConnected(), counts()).toBe(true)
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }
    console.log(`fleet-stays-whole: heal times ${heals.join(', ')} ms`)
    expect(Math.max(...heals)).toBeLessThan(HEAL_MS)
  }, 150_000)

  it('a node frozen during a publish is named in the report, then pulls and prepares the release', async () => {
    const frozen = nodes[2]
    const frozenId = ids[2]
    const pid = frozen.child.pid!
    process.kill(pid, 'SIGSTOP')
    let thawed = false
    try {
      cutConnections(pid)
      const { stdout, digest } = await publish('v2', '1.1.0')
      // The frozen node's record may have expired from the publisher's view (4 nodes) or not (5).
      expect(stdout).toMatch(/prepared on 4 of (4|5) nodes/)
      if (/of 5 nodes/.test(stdout)) expect(stdout).toMatch(new RegExp(`node …${frozenId.slice(-6)} has not reported it`))
      else expect(stdout).not.toContain(`…${frozenId.slice(-6)}`)
      process.kill(pid, 'SIGCONT')
      thawed = true
      await until(allConnected, () => `not healed after thaw: ${counts()}\n${fleetLogs(nodes)}`, HEAL_MS)
      // Gossip of the release is long gone; only anti-entropy can bring it to the thawed node.
      const seen = await seenThrough(tcpAddr(frozen), key, [CELL], NODES.length, 15_000, { [CELL]: '1.1.0' })
      expect(seen.releases[CELL]).toBe('1.1.0')
      const client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
      try {
        await waitForView(client, () => client.view.node(frozenId)?.prepared?.some(p => p.digest === digest && p.state === 'prepared') === true ? true : undefined,
          'the thawed node to report the release prepared', { timeoutMs: 30_000 })
      } finally {
        await client.stop()
      }
    } finally {
      if (!thawed) process.kill(pid, 'SIGCONT')
    }
  }, 180_000)
})
