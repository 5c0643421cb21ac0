// Garbage on every listener (issue 14 point 7), against a real `cell up` process with its metrics
// port and dashboard: random bytes, half multistream and half Noise handshakes, silent connections
// on TCP; random frames over a real WebSocket and junk HTTP on the WebSockets port; random UDP
// datagrams on WebRTC-direct; random bytes, bad request lines and oversized headers on the metrics
// and dashboard HTTP ports. Afterwards the process is still running, answers a `cell call`, and its
// /metrics counts the garbage in cell_listener_garbage_total{listener, reason}. The last two cases
// hold established connections under fresh peer ids (core/mesh/guest-connections.ts).
// CELL_GARBAGE_ROUNDS (default 6) sets how many paced rounds are sent (the node admits 5 inbound
// connections per second per host; a final burst over that is refused and counted too).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { readAuthorityKey, writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { cell, cellRun, stopProc, projectRoot, type Proc } from '../integration/processes.ts'
import { stageCell } from '../integration/stage-cell.ts'
import { stunRequest } from './stun.ts'
import { until } from '../integration/fleet-links.ts'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MESH_GUEST_PLACES } from '../../core/fleet/gossip-score.ts'

const ROUNDS = Number(process.env.CELL_GARBAGE_ROUNDS ?? 6)
/** The node's guest limits, set in its node.toml. */
const GUESTS = { perHost: 24, total: 200 }

/** A multistream-select message: varint length, the line, a newline. */
function msLine (text: string): Uint8Array {
  const body = new TextEncoder().encode(`${text}\n`)
  return Uint8Array.from([body.length, ...body])
}

/** Opens a TCP connection, writes `parts` (with a pause between them), and resolves when the peer closes it (or after `ms`). */
async function tcpGarbage (port: number, parts: Uint8Array[], ms = 15_000): Promise<string> {
  return await new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1')
    let got = ''
    const timer = setTimeout(() => { socket.destroy(); resolve(`${got}[timeout]`) }, ms)
    socket.on('data', (d: Buffer) => { got += d.toString('latin1').slice(0, 200) })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(got) })
    socket.on('connect', () => {
      void (async () => {
        for (const p of parts) {
          if (socket.destroyed) return
          socket.write(p)
          await new Promise(resolve => setTimeout(resolve, 50))
        }
        // A half-closed socket is how a half handshake ends: the peer must time out or refuse it.
        if (parts.length > 0) socket.end()
      })()
    })
  })
}

async function wsGarbage (port: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`)
    ws.binaryType = 'arraybuffer'
    const timer = setTimeout(() => { ws.close(); resolve() }, 10_000)
    ws.addEventListener('open', () => {
      for (let i = 0; i < 3; i++) ws.send(randomBytes(1 + Math.floor(Math.random() * 4096)))
      setTimeout(() => { ws.close() }, 100)
    })
    ws.addEventListener('close', () => { clearTimeout(timer); resolve() })
    ws.addEventListener('error', () => {})
  })
}

/** `n` TCP connections from `from` (a loopback address) that send nothing; each records when the node closed it. */
async function silent (port: number, from: string, n: number, paceMs = 0): Promise<Array<{ socket: Socket, closed: boolean }>> {
  const out: Array<{ socket: Socket, closed: boolean }> = []
  for (let i = 0; i < n; i++) {
    const h = { socket: connect({ port, host: '127.0.0.1', localAddress: from }), closed: false }
    h.socket.on('error', () => {})
    h.socket.once('close', () => { h.closed = true })
    await new Promise<void>((resolve) => { h.socket.once('connect', resolve); h.socket.once('close', resolve) })
    out.push(h)
    if (paceMs > 0) await new Promise(resolve => setTimeout(resolve, paceMs))
  }
  return out
}

/**
 * `n` libp2p peers, each under a fresh key pair, that dial `target` over TCP from `from` (a loopback
 * address), one every `paceMs` (under the node's 5 new connections per host per second), and keep
 * their connection open. Dials that fail are counted, not thrown.
 */
async function freshPeers (target: string, from: string, n: number, paceMs: number, into: Libp2p[]): Promise<{ from: string, peers: Libp2p[], failed: number }> {
  const peers: Libp2p[] = []
  let failed = 0
  for (let i = 0; i < n; i++) {
    const p = await createLibp2p({ transports: [tcp({ dialOpts: { localAddress: from } as never })], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    peers.push(p)
    into.push(p)
    await p.dial(multiaddr(target), { signal: AbortSignal.timeout(10_000) }).catch(() => { failed++ })
    await new Promise(resolve => setTimeout(resolve, paceMs))
  }
  return { from, peers, failed }
}

const openCount = (peers: Libp2p[]): number => peers.filter(p => p.getConnections().some(c => c.status === 'open')).length

function httpJunk (): Uint8Array[][] {
  return [
    [randomBytes(512)],
    [new TextEncoder().encode('GARBAGE \u0001\u0002 HTTP/9.9\r\n\r\n')],
    [new TextEncoder().encode(`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(128 * 1024)}\r\n\r\n`)],
    [new TextEncoder().encode('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n')]
  ]
}

function garbageCounts (metricsText: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const m of metricsText.matchAll(/^cell_listener_garbage_total\{listener="([^"]+)",reason="([^"]+)"\} (\d+)/gm)) {
    out[m[1]] = (out[m[1]] ?? 0) + Number(m[3])
  }
  return out
}

describe('garbage on every listener', () => {
  let root = ''
  let keyPath = ''
  let node: Proc | undefined
  const ports = { tcp: 0, ws: 0, webrtc: 0, metrics: 0, dashboard: 0 }
  let bootstrap = ''
  let metricsUrl = ''

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-garbage-'))
    const key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    // Guest limits from the node config (defaults 32 and 256), so the cases below show they reach the node.
    await writeFile(join(root, 'node.toml'), `guests_per_host = ${GUESTS.perHost}\nguests_total = ${GUESTS.total}\n`)
    node = cell(['up', '--data', join(root, 'n1'), '--authority', keyPath, '--dashboard', '--config', join(root, 'node.toml')])
    await node.waitFor(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\//m, 180_000)
    const out = node.stdout()
    bootstrap = out.match(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/)![1]
    ports.tcp = Number(out.match(/listening \/ip4\/127\.0\.0\.1\/tcp\/(\d+)\/p2p/)![1])
    ports.ws = Number(out.match(/listening \/ip4\/127\.0\.0\.1\/tcp\/(\d+)\/ws\/p2p/)![1])
    ports.webrtc = Number(out.match(/listening \/ip4\/127\.0\.0\.1\/udp\/(\d+)\/webrtc-direct/)![1])
    metricsUrl = out.match(/^metrics (http:\/\/\S+)/m)![1]
    ports.metrics = Number(new URL(metricsUrl).port)
    ports.dashboard = Number(out.match(/^dashboard http:\/\/127\.0\.0\.1:(\d+)\//m)![1])
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authorityIdOf(key.publicKey))
    const published = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 120_000)
    expect(published.code, published.stderr).toBe(0)
  }, 300_000)

  afterAll(async () => {
    if (node !== undefined) await stopProc(node)
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('survives garbage on TCP, WebSockets, WebRTC-direct, metrics and dashboard ports, answers calls and counts it', async () => {
    const call = async (): Promise<{ code: number | null, stdout: string, stderr: string }> =>
      await cellRun(['call', 'billing', 'charge', '{"amount":5,"currency":"EUR"}', '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    const first = await call()
    expect(first.code, first.stderr).toBe(0)

    const sent = { tcp: 0, websockets: 0, udp: 0, metrics: 0, dashboard: 0 }
    const udp = createSocket('udp4')
    const work: Array<Promise<unknown>> = []
    for (let round = 0; round < ROUNDS; round++) {
      // At most 4 libp2p connections a second from this host, under the node's inbound rate limit,
      // so these reach the multistream and Noise parsers rather than the limiter.
      const kind = round % 3
      const tcpParts = kind === 0
        ? [randomBytes(1 + Math.floor(Math.random() * 2048))]
        : kind === 1
          ? [msLine('/multistream/1.0.0'), randomBytes(64)]
          : [msLine('/multistream/1.0.0'), msLine('/noise'), randomBytes(200)]
      work.push(tcpGarbage(ports.tcp, tcpParts))
      // A silent connection: the node must time the upgrade out, not wait forever.
      if (round === 0) work.push(tcpGarbage(ports.tcp, [], 20_000))
      sent.tcp += round === 0 ? 2 : 1
      work.push(wsGarbage(ports.ws))
      sent.websockets++
      work.push(tcpGarbage(ports.ws, [randomBytes(300)]))
      for (let i = 0; i < 20; i++) udp.send(randomBytes(1 + Math.floor(Math.random() * 1200)), ports.webrtc, '127.0.0.1')
      sent.udp += 20
      for (const parts of httpJunk()) {
        work.push(tcpGarbage(ports.metrics, parts))
        work.push(tcpGarbage(ports.dashboard, parts))
      }
      sent.metrics += 4
      sent.dashboard += 4
      await new Promise(resolve => setTimeout(resolve, 1_100))
    }
    // A burst over the inbound limit: refused before any parser, still counted.
    for (let i = 0; i < 12; i++) work.push(tcpGarbage(ports.tcp, [randomBytes(100)]))
    sent.tcp += 12
    await Promise.all(work)
    udp.close()

    // Still alive, and still answering.
    expect(node!.child.exitCode).toBeNull()
    await new Promise(resolve => setTimeout(resolve, 1_100))
    const after = await call()
    expect(after.code, after.stderr).toBe(0)
    expect(JSON.parse(after.stdout)).toMatchObject({ amount: 5, currency: 'EUR' })

    const text = await (await fetch(metricsUrl)).text()
    const counts = garbageCounts(text)
    console.log(`garbage sent ${JSON.stringify(sent)}; counted ${JSON.stringify(counts)}\n${text.split('\n').filter(l => l.startsWith('cell_listener_garbage_total')).join('\n')}`)
    // Every garbage TCP connection failed its upgrade (parsers, the silent one's timeout, the limiter).
    expect(counts.tcp ?? 0).toBeGreaterThanOrEqual(sent.tcp)
    // Every WebSocket that carried random frames failed its upgrade (junk HTTP on that port is Node's parser's, uncounted).
    expect(counts.websockets ?? 0).toBeGreaterThanOrEqual(sent.websockets)
    // Each junk request the HTTP parser refused (the header overflow, the bad line, the bad length, most random bytes).
    expect(counts['metrics-http'] ?? 0).toBeGreaterThanOrEqual(sent.metrics * 3 / 4)
    expect(counts['dashboard-http'] ?? 0).toBeGreaterThanOrEqual(sent.dashboard * 3 / 4)
    expect(node!.child.exitCode).toBeNull()
  }, 300_000)

  it('keeps answering while one host holds connections that never finish their handshake', async () => {
    const fds = async (): Promise<number> => (await readdir(`/proc/${node!.child.pid}/fd`)).length
    const threads = async (): Promise<number> => Number((await readFile(`/proc/${node!.child.pid}/status`, 'utf8')).match(/^Threads:\s+(\d+)/m)![1])
    const baseline = await fds()
    const baseThreads = await threads()
    // WebRTC-direct: STUN requests with made-up ufrags from one address. Before, each made a native
    // peer connection (3,000 in 6 s: 2,922 threads, 514 MiB RSS); now 8 per address are taken.
    const udp = createSocket('udp4')
    await new Promise<void>(resolve => { udp.bind(0, '127.0.0.4', resolve) })
    for (let i = 0; i < 400; i++) udp.send(stunRequest(), ports.webrtc, '127.0.0.1')
    // TCP, paced under the node's rate limit (5 new connections per host per second): before, ten
    // such connections held every inbound upgrade slot and the node refused every other peer.
    const tcpHeld = await silent(ports.tcp, '127.0.0.2', 12, 260)
    // The WebSockets port, all at once: before, every one stayed open (1,500 held 1,529 descriptors).
    const wsHeld = await silent(ports.ws, '127.0.0.3', 300)
    await until(() => tcpHeld.filter(h => !h.closed).length <= 8 && wsHeld.filter(h => !h.closed).length <= 8, () => 'the node to close the connections past each host\'s cap', 10_000, 50)
    const held = await fds()
    const heldThreads = await threads()
    udp.close()
    const during = await cellRun(['call', 'billing', 'charge', '{"amount":7,"currency":"EUR"}', '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(during.code, during.stderr).toBe(0)
    // Each host holds at most 8 per port until the handshake deadline (10 s), then none.
    expect(held - baseline).toBeLessThanOrEqual(16 + 8 + 8 + 8)
    expect(heldThreads - baseThreads).toBeLessThanOrEqual(8 + 16)
    await until(() => tcpHeld.every(h => h.closed) && wsHeld.every(h => h.closed), () => 'the handshake deadlines to close the rest', 30_000, 50)
    const text = await (await fetch(metricsUrl)).text()
    console.log(`node fds: ${baseline} before, ${held} while held; threads ${baseThreads} before, ${heldThreads} while held; garbage counted ${JSON.stringify(garbageCounts(text))}`)
    // Past the host's 8: refused, or (on a machine slow enough that a connection waited 2 s) taking a stale one's place.
    const wsCount = (reason: string): number => Number(text.match(new RegExp(`^cell_listener_garbage_total\\{listener="websockets",reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0)
    expect(wsCount('TooManyPendingFromHost') + wsCount('Evicted')).toBeGreaterThanOrEqual(292)
    expect(text).toMatch(/cell_listener_garbage_total\{listener="websockets",reason="HandshakeTimeout"\} [1-9]/)
    expect(text).toMatch(/cell_listener_garbage_total\{listener="tcp",reason="InboundUpgradeSlotsError"\} [1-9]/)
    const rtcCount = (reason: string): number => Number(text.match(new RegExp(`^cell_listener_garbage_total\\{listener="webrtc-direct",reason="${reason}"\\} (\\d+)`, 'm'))?.[1] ?? 0)
    expect(rtcCount('TooManyPendingFromHost') + rtcCount('Evicted')).toBeGreaterThanOrEqual(300)
    expect(node!.child.exitCode).toBeNull()
  }, 300_000)

  it('keeps room for others while hosts hold established connections under fresh peer ids', async () => {
    // Before: libp2p admitted 300 connections and refused every inbound one past that; one host
    // that completed a Noise handshake under a fresh key every 210 ms held all 300 in 67 s, and
    // 3 of 3 honest dials were refused. Now non-members keep GUESTS.perHost per host and
    // GUESTS.total in all (core/mesh/guest-connections.ts; 32 and 256 by default, here from
    // node.toml), and 128 more stay for fleet members.
    const peers: Libp2p[] = []
    try {
      const before = await (await fetch(metricsUrl)).text()
      expect(before).toContain(`cell_guest_connections_limit{scope="per_host"} ${GUESTS.perHost}`)
      expect(before).toContain(`cell_guest_connections_limit{scope="total"} ${GUESTS.total}`)
      expect(before).toContain(`cell_gossip_guest_places{state="limit"} ${MESH_GUEST_PLACES}`)
      const one = await freshPeers(bootstrap, '127.0.0.5', GUESTS.perHost + 16, 210, peers)
      expect(one.failed).toBe(0)
      await until(() => openCount(one.peers) <= GUESTS.perHost, () => `host 127.0.0.5 to keep ${GUESTS.perHost} connections, not ${openCount(one.peers)}`, 10_000, 50)
      expect(openCount(one.peers)).toBe(GUESTS.perHost)
      // Nine more hosts at once, 28 each: 24 + 252 guests is past 200, so the fullest host loses its oldest.
      const many = await Promise.all(Array.from({ length: 9 }, async (_, i) => await freshPeers(bootstrap, `127.0.0.${6 + i}`, 28, 210, peers)))
      await until(() => openCount(peers) <= GUESTS.total, () => `the node to keep ${GUESTS.total} guest connections, not ${openCount(peers)}`, 10_000, 50)
      const perHost = [one, ...many].map(h => `${h.from}: ${openCount(h.peers)}`)
      expect(openCount(one.peers)).toBeLessThan(GUESTS.perHost)
      for (const h of many) expect(openCount(h.peers)).toBeGreaterThanOrEqual(15)
      // A `cell call` (a guest from a host holding none) still gets in and is answered.
      const during = await cellRun(['call', 'billing', 'charge', '{"amount":9,"currency":"EUR"}', '--bootstrap', bootstrap, '--key', keyPath], 90_000)
      expect(during.code, during.stderr).toBe(0)
      const text = await (await fetch(metricsUrl)).text()
      console.log(`guests held per host: ${perHost.join(', ')}; ${text.split('\n').filter(l => l.startsWith('cell_listener_garbage_total{listener="guests"')).join('; ')}`)
      expect(text).toMatch(/cell_listener_garbage_total\{listener="guests",reason="TooManyGuestsFromHost"\} (1[6-9]|[2-9]\d)/)
      expect(text).toMatch(/cell_listener_garbage_total\{listener="guests",reason="TooManyGuests"\} [1-9]/)
      expect(node!.child.exitCode).toBeNull()
    } finally {
      await Promise.all(peers.map(async p => { await p.stop() }))
    }
  }, 300_000)

  it('keeps a caller holding a grant connected while 300 hosts with one fresh-key connection each fill the guest places', async () => {
    // Hosts with one connection each leave no fullest host: past the total the oldest guest goes, which
    // was the long-lived caller. A caller that proved a grant in its synapse handshake is vouched
    // for and closed only when no anonymous guest is left.
    const client = await createClient({ bootstrap: [bootstrap], authorityKey: await readAuthorityKey(keyPath) })
    const peers: Libp2p[] = []
    try {
      await waitForView(client, () => client.view.liveInstances('billing').find(i => i.state === 'ready'), 'a ready billing replica', { timeoutMs: 60_000 })
      await client.call('billing', 'charge', { amount: 3, currency: 'EUR' }, { timeoutMs: 10_000 })
      const before = client.libp2p.getConnections().filter(c => c.status === 'open').map(c => c.id)
      expect(before.length).toBeGreaterThan(0)
      const lost: string[] = []
      client.libp2p.addEventListener('connection:close', (e) => { lost.push(e.detail.id) })
      const hosts = Array.from({ length: 300 }, (_, i) => `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`)
      let next = 0
      await Promise.all(Array.from({ length: 12 }, async () => {
        while (next < hosts.length) await freshPeers(bootstrap, hosts[next++], 1, 0, peers)
      }))
      await until(() => openCount(peers) <= GUESTS.total - 1, () => `the node to keep ${GUESTS.total - 1} anonymous guests beside the caller, not ${openCount(peers)}`, 10_000, 50)
      expect(lost, 'the caller\'s connections closed during the attack').toEqual([])
      expect(client.libp2p.getConnections().filter(c => c.status === 'open').map(c => c.id)).toEqual(before)
      await client.call('billing', 'charge', { amount: 4, currency: 'EUR' }, { timeoutMs: 10_000 })
      const text = await (await fetch(metricsUrl)).text()
      expect(Number(text.match(/^cell_guest_connections\{kind="vouched"\} (\d+)/m)?.[1])).toBeGreaterThanOrEqual(1)
      expect(Number(text.match(/^cell_guest_connections\{kind="anonymous"\} (\d+)/m)?.[1])).toBe(openCount(peers))
      console.log(`300 single-connection hosts: ${openCount(peers)} kept; the caller's ${before.length} connection(s) kept`)
    } finally {
      await client.stop()
      await Promise.all(peers.map(async p => { await p.stop() }))
    }
  }, 300_000)
})
