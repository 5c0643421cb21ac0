// Issue 13 points 1 and 3 over real libp2p and real capsids (in-process nodes): `/cell/logs/1` reads
// every replica's stdout/stderr across nodes; following survives broken streams with no gap and no
// duplicate (each line's text carries its own number); `/cell/status/1` explains a cell from each
// node; both refuse anyone but an operator of the cell's authority, by name.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { generateAuthority, authorityIdOf, issueGrant, encodeChain, type AuthorityKey } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { createClient, waitForReplicas, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { readLogs, followLogs, type LogEntry } from '../../node-host/logs/log-follower.ts'
import { LOGS_PROTOCOL } from '../../node-host/logs/log-protocol.ts'
import { STATUS_PROTOCOL, fetchStatus } from '../../node-host/introspect/status-protocol.ts'
import { openOperatorStream, encodeOperatorRequest } from '../../node-host/introspect/operator-wire.ts'
import { NotAuthorizedError } from '../../node-host/introspect/operator-gate.ts'
import { meshGate } from '../../node-host/artifacts/artifact-exchange.ts'
import { TestFleet } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'

const CELL = 'chatty'
const fixture = join(import.meta.dirname, 'fixtures', 'chatty')

/** Every line of each replica: consecutive sequence numbers, and `tick k` always k lines after `tick 0` would be. */
function expectWhole (lines: Array<Extract<LogEntry, { kind: 'line' }>>): void {
  const byReplica = new Map<string, typeof lines>()
  for (const l of lines) byReplica.set(l.replica, [...(byReplica.get(l.replica) ?? []), l])
  for (const [replica, own] of byReplica) {
    for (let i = 1; i < own.length; i++) {
      if (own[i].seq !== own[i - 1].seq + 1) throw new Error(`${replica}: line ${own[i - 1].seq} then ${own[i].seq}`)
    }
    const ticks = own.filter(l => /^tick \d+$/.test(l.msg)).map(l => Number(l.msg.slice(5)))
    for (let i = 1; i < ticks.length; i++) if (ticks[i] !== ticks[i - 1] + 1) throw new Error(`${replica}: tick ${ticks[i - 1]} then tick ${ticks[i]}`)
  }
}

describe('cell logs and cell status protocols', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  let key: AuthorityKey
  let other: AuthorityKey
  let operator: Mesh
  let root = ''
  let publisher: Publisher

  beforeAll(async () => {
    key = await generateAuthority()
    other = await generateAuthority()
    // The nodes also trust `other`, which claims no cell here: its operators see nothing of chatty.
    root = await fleet.start('cell-logs-', 2, { authorityKeys: [key], trust: [authorityIdOf(other.publicKey)] })
    operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true, keep: 2 })
    clients.push(operator)
    const dir = await stageCell(fixture, join(root, 'chatty-v1'), authorityIdOf(key.publicKey))
    publisher = new Publisher(operator)
    await publisher.publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    await waitForReplicas(operator, CELL, { count: 2, timeoutMs: 30_000 })
  }, 120_000)

  afterAll(async () => { await fleet.stop() }, 60_000)

  it('reads every replica of the cell across nodes, stdout and stderr, with --tail', async () => {
    await operator.call(CELL, 'say', { text: 'hello' })
    const entries = await readLogs(operator, { cell: CELL, follow: false })
    const lines = entries.filter(e => e.kind === 'line')
    const replicas = new Set(lines.map(l => l.replica))
    expect(replicas.size).toBe(2)
    expect(new Set(lines.map(l => l.node)).size).toBe(2)
    expect(lines.filter(l => l.msg === 'chatty v1 up')).toHaveLength(2)
    expect(lines.some(l => l.stream === 'stderr' && l.msg === 'said: hello')).toBe(true)
    expect(lines.every(l => l.cell === CELL && l.version === '1.0.0')).toBe(true)
    expectWhole(lines)
    // A read is bounded: past maxChars of lines it stops, with what it had and a warning.
    const warnings: string[] = []
    // One character short of what the first read held (the replicas' rings only grow since).
    const budget = lines.reduce((n, l) => n + l.msg.length, 0) - 1
    const bounded = (await readLogs(operator, { cell: CELL, follow: false }, { maxChars: budget, onWarning: (w) => warnings.push(w) })).filter(e => e.kind === 'line')
    expect(bounded.length).toBeGreaterThan(0)
    expect(bounded.reduce((n, l) => n + l.msg.length, 0)).toBeLessThanOrEqual(budget)
    expect(warnings).toEqual([`stopped reading at ${budget} characters of log lines: narrow it with --replica, --tail or --since`])
    const tail = (await readLogs(operator, { cell: CELL, follow: false, tail: 3 })).filter(e => e.kind === 'line')
    expect(tail).toHaveLength(6)
    // --since from the time of a line in the middle of the first read: the lines before it are left
    // out, it and those after it (and any newer) are in. (A cut at `now - 500 ms` once took in more
    // lines than the whole first read held, the replicas having started only moments before.)
    const times = [...new Set(lines.map(l => l.ts))].sort((a, b) => a - b)
    expect(times.length).toBeGreaterThan(1)
    const cut = times[Math.floor(times.length / 2)]
    const since = (await readLogs(operator, { cell: CELL, follow: false, sinceMs: cut })).filter(e => e.kind === 'line')
    const key = (l: { replica: string, seq: number }): string => `${l.replica}#${l.seq}`
    const got = new Set(since.map(key))
    expect(since.length).toBeGreaterThan(0)
    expect(since.every(l => l.ts >= cut)).toBe(true)
    for (const l of lines) expect(got.has(key(l)), `line ${key(l)} at ${l.ts} with --since ${cut}`).toBe(l.ts >= cut)
  }, 30_000)

  it('follows, and a stream that breaks resumes from its cursor with no gap and no duplicate', async () => {
    const entries: LogEntry[] = []
    const controller = new AbortController()
    let wake = (): void => {}
    const onEntry = (e: LogEntry): void => { entries.push(e); wake() }
    const following = followLogs(operator, { cell: CELL, follow: true, tail: 5 }, onEntry, { signal: controller.signal, minBackoffMs: 50 })
    const lines = (): Array<Extract<LogEntry, { kind: 'line' }>> => entries.filter((e): e is Extract<LogEntry, { kind: 'line' }> => e.kind === 'line')
    const until = async (test: () => boolean, what: string): Promise<void> => {
      const deadline = Date.now() + 20_000
      while (!test()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${entries.length} entries`)
        await new Promise<void>((resolve) => { wake = resolve; setTimeout(resolve, 500) })
      }
    }
    const perReplica = (n: number) => (): boolean => {
      const counts = new Map<string, number>()
      for (const l of lines()) counts.set(l.replica, (counts.get(l.replica) ?? 0) + 1)
      return counts.size === 2 && [...counts.values()].every(c => c >= n)
    }
    await until(perReplica(20), '20 lines of each replica')
    expect(entries.filter(e => e.kind === 'started')).toHaveLength(2)
    // Break every stream: the nodes hang up on the operator; the follower asks again with its cursors.
    const before = lines().length
    for (const n of nodes) await n.mesh.libp2p.hangUp(operator.peerId)
    await until(() => lines().length >= before + 80, '80 more lines after the break')
    controller.abort()
    await following
    expectWhole(lines())
    expect(entries.filter(e => e.kind === 'gap')).toHaveLength(0)
    // Tail 5 at the start, then everything: no line twice.
    const keys = lines().map(l => `${l.replica}#${l.seq}`)
    expect(new Set(keys).size).toBe(keys.length)
  }, 60_000)

  it('explains the cell from each node through /cell/status/1', async () => {
    const gate = meshGate(operator.libp2p)!
    const reports = await Promise.all(nodes.map(async n => await fetchStatus(operator.libp2p, peerIdFromString(n.peerId), gate.chain(authorityIdOf(key.publicKey)), CELL)))
    for (const r of reports) {
      const c = r.cells.find(x => x.cell === CELL)!
      expect(c.prepared.map(p => p.version)).toEqual(['1.0.0'])
      expect(c.prepared[0].authority).toBe(authorityIdOf(key.publicKey))
      expect(c.policy).toEqual({ minReplicas: 2, maxReplicas: 2, update: 'live', canaryWeight: 5 })
      expect(c.desiredReplicas).toBe(2)
      expect(c.replicas.some(x => x.state === 'ready')).toBe(true)
      expect(c.reasons.join('\n')).toMatch(/1\.0\.0/)
    }
    // Node-wide: every cell of the requester's authority.
    const all = await fetchStatus(operator.libp2p, peerIdFromString(nodes[0].peerId), gate.chain(authorityIdOf(key.publicKey)), undefined)
    expect(all.cells.map(c => c.cell)).toEqual([CELL])
  }, 30_000)

  it('refuses a stranger, a caller-only grant, an expired grant, another authority and a stolen chain', async () => {
    const peerKey = await generateKeyPair('Ed25519')
    const me = peerIdFromPrivateKey(peerKey).toString()
    // Connected under a caller grant of `other` (trusted, claims nothing); each case presents its own chain.
    const membership = await issueGrant(other, { subject: me, roles: ['caller'], notBeforeMs: Date.now() - 60_000, notAfterMs: Date.now() + 3_600_000 })
    const stranger = await createClient({ bootstrap: [nodes[0].addresses()[0]], privateKey: peerKey, grant: membership, trust: [authorityIdOf(key.publicKey)] })
    clients.push(stranger)
    await waitForView(stranger, () => stranger.libp2p.getPeers().length > 0 ? true : undefined, 'a connection')
    const now = Date.now()
    const grant = async (k: AuthorityKey, roles: Array<'caller' | 'operator'>, subject = me, notAfterMs = now + 3_600_000): Promise<Uint8Array> =>
      encodeChain([await issueGrant(k, { subject, roles, notBeforeMs: now - 7_200_000, notAfterMs })])
    const otherPeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['no grant', new Uint8Array(0), /no grant presented/],
      ['caller-only grant', await grant(key, ['caller']), /operator role is required/],
      ['expired operator grant', await grant(key, ['caller', 'operator'], me, now - 3_600_000), /CertificateExpiredError/],
      ['operator grant of an untrusted authority', await grant(await generateAuthority(), ['operator']), /UnknownAuthorityError/],
      ['operator grant of a trusted authority that does not claim the cell', await grant(other, ['operator']), /does not claim cell "chatty"/],
      ['operator chain issued to another peer', await grant(key, ['operator'], otherPeer), /WrongSubjectError/]
    ]
    const node = peerIdFromString(nodes[0].peerId)
    const refusedBefore = nodes[0].introspection.logs.refused
    for (const [what, chain, reason] of cases) {
      for (const [protocol, body] of [[LOGS_PROTOCOL, { cell: CELL, follow: true }], [STATUS_PROTOCOL, { cell: CELL }]] as const) {
        const read = async (): Promise<void> => { for await (const frame of openOperatorStream(stranger.libp2p, node, protocol, chain, body, { signal: AbortSignal.timeout(10_000) })) throw new Error(`${what} got a frame: ${JSON.stringify(frame)}`) }
        const err = await read().then(() => undefined, (e: unknown) => e)
        expect(err, `${what} on ${protocol}`).toBeInstanceOf(NotAuthorizedError)
        expect((err as Error).name).toBe('NotAuthorizedError')
        expect((err as Error).message, what).toMatch(reason)
      }
    }
    expect(nodes[0].introspection.logs.refused - refusedBefore).toBe(cases.length)
    expect(await nodes[0].metrics.text()).toMatch(new RegExp(`cell_operator_requests_total\\{[^}]*protocol="logs"[^}]*outcome="refused"[^}]*\\} ${nodes[0].introspection.logs.refused}\\b`))
    // The same operator grant that is refused for chatty is fine node-wide: it just sees none of its cells.
    const chain = await grant(other, ['operator'])
    const report = await fetchStatus(stranger.libp2p, node, chain, undefined)
    expect(report.cells).toEqual([])
  }, 60_000)

  it('a crashed replica: its last words, its end with the reason, and each node\'s status says why', async () => {
    const entries: LogEntry[] = []
    const controller = new AbortController()
    const following = followLogs(operator, { cell: CELL, follow: true, tail: 0 }, (e) => { entries.push(e) }, { signal: controller.signal })
    await waitForView(operator, () => entries.filter(e => e.kind === 'started').length >= 2 ? true : undefined, 'both replicas followed', { timeoutMs: 20_000, tickMs: 200 })
    await operator.call(CELL, 'crash', {}, { timeoutMs: 10_000 }).catch(() => {})
    const ended = await waitForView(operator, () => entries.find(e => e.kind === 'ended'), 'a replica to end', { timeoutMs: 20_000, tickMs: 200 })
    controller.abort()
    await following
    expect(ended).toMatchObject({ kind: 'ended', reason: 'crashed: exited with code 3' })
    expect(entries.some(e => e.kind === 'line' && e.replica === ended.replica && e.stream === 'stderr' && e.msg === 'crashing on purpose')).toBe(true)
    const gate = meshGate(operator.libp2p)!
    const report = await fetchStatus(operator.libp2p, peerIdFromString(ended.node), gate.chain(authorityIdOf(key.publicKey)), CELL)
    const crashed = report.cells[0].replicas.find(r => r.replica === ended.replica)!
    expect(crashed).toMatchObject({ state: 'crashed', exitReason: 'exited with code 3' })
    expect(crashed.stderrTail).toContain('crashing on purpose')
  }, 60_000)

  it('drops garbage and oversized requests without answering them', async () => {
    const node = peerIdFromString(nodes[1].peerId)
    const malformedBefore = nodes[1].introspection.logs.malformed
    const send = async (bytes: Uint8Array): Promise<number> => {
      const stream = await operator.libp2p.dialProtocol(node, LOGS_PROTOCOL)
      stream.send(bytes)
      await stream.close().catch(() => {})
      let got = 0
      try { for await (const chunk of stream) got += chunk.byteLength } catch { /* reset: refused */ }
      return got
    }
    expect(await send(Uint8Array.of(9, 9, 9))).toBe(0)
    expect(await send(new Uint8Array(64 * 1024).fill(1))).toBe(0)
    const chain = meshGate(operator.libp2p)!.chain(authorityIdOf(key.publicKey))
    // A well-framed request whose body is wrong: refused as malformed before the gate.
    const bad = encodeOperatorRequest(chain, { cell: CELL, follow: 'yes' })
    expect(await send(bad)).toBeGreaterThan(0)
    expect(nodes[1].introspection.logs.malformed - malformedBefore).toBe(3)
    expect(nodes[1].introspection.logs.refused).toBe(0)
  }, 30_000)

  it('a replica that dies before it is ready shows why in its logs', async () => {
    const dir = await stageCell(fixture, join(root, 'crashy'), authorityIdOf(key.publicKey))
    await writeFile(join(dir, 'Cell.toml'), (await readFile(join(dir, 'Cell.toml'), 'utf8')).replace('name = "chatty"', 'name = "crashy"').replace('min_replicas = 2', 'min_replicas = 1'))
    await writeFile(join(dir, 'cell.ts'), (await readFile(join(dir, 'cell.ts'), 'utf8')).replace("const VERSION = 'v1'", "const VERSION: string = (() => { throw new Error('DATABASE_URL is not set') })()"))
    await publisher.publish(dir, '1.0.0', key, { setAuthority: true, waitReplicas: 0 })
    // Once a crashed replica is in the view, the node that ran it holds what it said on stderr.
    await waitForView(operator, () => operator.view.instances('crashy').some(i => i.state === 'crashed') ? true : undefined, 'a crashed replica of crashy', { timeoutMs: 30_000 })
    const lines = await readLogs(operator, { cell: 'crashy', follow: false })
    expect(lines.some(l => l.kind === 'line' && l.stream === 'stderr' && l.msg.includes('DATABASE_URL is not set')), JSON.stringify(lines)).toBe(true)
  }, 60_000)
})
