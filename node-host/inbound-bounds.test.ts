// Connections that never finish their handshake, from one host, against real libp2p listeners:
// core/mesh/inbound-failures.ts (upgrades in progress per host, every transport) and
// node-host/websockets-listener.ts (the WebSockets port before its WebSocket handshake). The first
// case is the attack on libp2p alone: one host's silent TCP connections refused every honest dial.
// On the WebSockets port a connection that waited past staleMs without its handshake gives its
// place to a new one (the case with eviction off shows the honest dial refused).
import { afterEach, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Multiaddr } from '@multiformats/multiaddr'
import { guardInbound, InboundUpgradeEvictedError, InboundUpgradeSlotsError, INBOUND_UPGRADES_TOTAL, LIBP2P_PENDING_HEADROOM } from '../core/mesh/inbound-failures.ts'
import { webSocketsClosingAborted } from '../core/mesh/websockets-dial.ts'
import { boundWebSocketsListener, type WebSocketsRefusal } from './websockets-listener.ts'
import { until } from '../test/integration/fleet-links.ts'

const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c() })

interface Held { socket: Socket, closedAt?: number, openedAt: number }

/** `n` TCP connections from `from` (a loopback address) to `port` that send `bytes` (or nothing) and then wait. */
async function hold (port: number, from: string, n: number, bytes?: string): Promise<Held[]> {
  const held = await Promise.all(Array.from({ length: n }, async () => await new Promise<Held>((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: from })
    const h: Held = { socket, openedAt: 0 }
    socket.on('error', () => {})
    socket.on('data', () => {})
    socket.once('close', () => { h.closedAt = Date.now() })
    socket.once('connect', () => { h.openedAt = Date.now(); if (bytes !== undefined) socket.write(bytes); resolve(h) })
    setTimeout(() => { reject(new Error(`no TCP connect from ${from} within 5 s`)) }, 5_000).unref()
  })))
  closers.push(async () => { for (const h of held) h.socket.destroy() })
  return held
}

const open = (held: Held[]): number => held.filter(h => h.closedAt === undefined).length

type Transports = NonNullable<Libp2pOptions['transports']>

async function libp2pNode (transports: Transports, listen: string, extra: Record<string, unknown> = {}): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: [listen] },
    transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // The rate limit (5 new connections per host per second) only slows the attack down; lifted so
    // these tests need not pace it.
    connectionManager: { inboundConnectionThreshold: 1_000, ...extra }
  })
  closers.push(async () => { await node.stop() })
  return node
}

async function honestDials (transports: Transports, target: Multiaddr, n: number): Promise<{ ok: number, errors: string[] }> {
  const client = await createLibp2p({ transports, connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  closers.push(async () => { await client.stop() })
  let ok = 0
  const errors: string[] = []
  for (let i = 0; i < n; i++) {
    try {
      const c = await client.dial(target, { signal: AbortSignal.timeout(5_000) })
      ok++
      await c.close()
    } catch (err) { errors.push(`${(err as Error).name}: ${(err as Error).message}`) }
  }
  return { ok, errors }
}

/**
 * Fills `node`'s slots with silent connections from 127.0.0.2 and 127.0.0.3 (`counts`), waits until
 * each is 300 ms old (staleness is the condition under test), then makes one honest dial.
 */
async function holdStaleThenDial (node: Libp2p, counts: [number, number], transports: Transports): Promise<{ dial: { ok: number, errors: string[] }, held: Held[] }> {
  const held = [...await hold(portOf(node), '127.0.0.2', counts[0]), ...await hold(portOf(node), '127.0.0.3', counts[1])]
  const last = Math.max(...held.map(h => h.openedAt))
  await until(() => Date.now() - last >= 300, () => 'the held connections to be 300 ms old', 2_000, 10)
  return { dial: await honestDials(transports, node.getMultiaddrs()[0], 1), held }
}

const portOf = (node: Libp2p): number => Number(node.getMultiaddrs()[0].toString().match(/\/tcp\/(\d+)/)![1])

describe('inbound connections before their handshake', () => {
  it('the attack on libp2p alone: one host\'s silent TCP connections lock every other peer out', async () => {
    const node = await libp2pNode([tcp()], '/ip4/127.0.0.1/tcp/0')
    await hold(portOf(node), '127.0.0.2', 10)
    const { ok, errors } = await honestDials([tcp()], node.getMultiaddrs()[0], 3)
    expect(ok, errors.join('\n')).toBe(0)
  })

  it('caps upgrades in progress per host on TCP: the host past its cap is refused at once, others get through', async () => {
    const failures: unknown[] = []
    const node = await libp2pNode(guardInbound([tcp()], { perHost: 4, onFailure: (_t, err) => { failures.push(err) } }), '/ip4/127.0.0.1/tcp/0', { maxIncomingPendingConnections: INBOUND_UPGRADES_TOTAL })
    const attacker = await hold(portOf(node), '127.0.0.2', 20)
    const second = await hold(portOf(node), '127.0.0.3', 6)
    await until(() => open(attacker) === 4 && open(second) === 4, () => 'the node to close the connections past each host\'s cap', 5_000, 10)
    expect(failures.filter(e => e instanceof InboundUpgradeSlotsError)).toHaveLength(16 + 2)
    expect(String((failures[0] as Error).message)).toMatch(/127\.0\.0\.[23] already has 4 inbound connections being upgraded \(at most 4 per host\)/)
    const { ok, errors } = await honestDials([tcp()], node.getMultiaddrs()[0], 3)
    expect(ok, errors.join('\n')).toBe(3)
    // The held ones still time out as before (libp2p's 10 s upgrade timeout), and free their slots.
    await until(() => open(attacker) === 0, () => 'the upgrade timeout to close the attacker\'s last connections', 15_000, 10)
    const again = await hold(portOf(node), '127.0.0.2', 4)
    expect(open(again)).toBe(4)
  }, 30_000)

  it('on TCP, an upgrade in progress past staleMs gives its slot to a new connection when all slots are held', async () => {
    const run = async (staleMs: number): Promise<{ dial: { ok: number, errors: string[] }, failures: unknown[], held: Held[] }> => {
      const failures: unknown[] = []
      const node = await libp2pNode(guardInbound([tcp()], { perHost: 4, total: 8, staleMs, onFailure: (_t, err) => { failures.push(err) } }), '/ip4/127.0.0.1/tcp/0', { maxIncomingPendingConnections: 8 + LIBP2P_PENDING_HEADROOM })
      // Two hosts hold every slot (4 + 4) with silent connections, which libp2p would keep 10 s.
      return { ...await holdStaleThenDial(node, [4, 4], [tcp()]), failures }
    }
    const evicting = await run(300)
    expect(evicting.dial.ok, evicting.dial.errors.join('\n')).toBe(1)
    // The honest dial aborted the oldest held upgrade, 127.0.0.2's first.
    await until(() => open(evicting.held) === 7, () => 'the evicted connection to close', 2_000, 10)
    expect(evicting.held[0].closedAt).toBeDefined()
    expect(evicting.failures.filter(e => e instanceof InboundUpgradeEvictedError)).toHaveLength(1)
    const keeping = await run(60_000)
    expect(keeping.dial.ok).toBe(0)
    expect(keeping.failures.filter(e => e instanceof InboundUpgradeSlotsError).length).toBeGreaterThan(0)
    expect(open(keeping.held)).toBe(8)
  }, 30_000)

  it('bounds the WebSockets port before the handshake: per host, in all, and in time; honest peers get through', async () => {
    const refusals: WebSocketsRefusal[] = []
    const ws = boundWebSocketsListener(webSocketsClosingAborted(), { handshakeMs: 1_000, perHost: 3, total: 5 }, (reason) => { refusals.push(reason) })
    const node = await libp2pNode([ws], '/ip4/127.0.0.1/tcp/0/ws')
    const port = portOf(node)
    // Silent connections from one host: three wait, the rest are closed at once.
    const silent = await hold(port, '127.0.0.2', 10)
    await until(() => open(silent) === 3, () => 'the connections past the per-host cap to close', 5_000, 10)
    expect(refusals.filter(r => r === 'TooManyPendingFromHost')).toHaveLength(7)
    // A peer on another host dials over WebSockets meanwhile.
    const first = await honestDials([webSocketsClosingAborted()], node.getMultiaddrs()[0], 2)
    expect(first.ok, first.errors.join('\n')).toBe(2)
    // Another host sends half an HTTP request: two fit under the total of 5, the third does not.
    const half = await hold(port, '127.0.0.3', 3, 'GET / HTTP/1.1\r\nHost: x\r\n')
    await until(() => open(half) === 2, () => 'the connection past the total to close', 5_000, 10)
    expect(refusals).toContain('TooManyPending')
    // None of them finished a handshake: all closed by the deadline, about 1 s after they opened.
    await until(() => open(silent) === 0 && open(half) === 0, () => 'the handshake deadline to close every held connection', 5_000, 10)
    for (const h of [...silent, ...half].filter(h => h.closedAt! - h.openedAt > 500)) expect(h.closedAt! - h.openedAt).toBeLessThan(3_000)
    expect(refusals.filter(r => r === 'HandshakeTimeout')).toHaveLength(5)
    // Slots freed: the honest peer still gets through, and new connections are admitted again.
    const second = await honestDials([webSocketsClosingAborted()], node.getMultiaddrs()[0], 1)
    expect(second.ok, second.errors.join('\n')).toBe(1)
  }, 30_000)

  it('on the WebSockets port, a connection waiting past staleMs without its handshake gives its place to a new one', async () => {
    const run = async (staleMs: number): Promise<{ dial: { ok: number, errors: string[] }, refusals: WebSocketsRefusal[], held: Held[] }> => {
      const refusals: WebSocketsRefusal[] = []
      const node = await libp2pNode([boundWebSocketsListener(webSocketsClosingAborted(), { handshakeMs: 10_000, perHost: 3, total: 5, staleMs }, (reason) => { refusals.push(reason) })], '/ip4/127.0.0.1/tcp/0/ws')
      // Two hosts fill every place (3 + 2) with silent connections, which stay until the 10 s deadline.
      return { ...await holdStaleThenDial(node, [3, 2], [webSocketsClosingAborted()]), refusals }
    }
    const evicting = await run(300)
    expect(evicting.dial.ok, evicting.dial.errors.join('\n')).toBe(1)
    expect(evicting.refusals).toEqual(['Evicted'])
    // The oldest of all went: the first of 127.0.0.2.
    await until(() => open(evicting.held) === 4, () => 'the evicted connection to close', 2_000, 10)
    expect(evicting.held[0].closedAt).toBeDefined()
    const keeping = await run(60_000)
    expect(keeping.dial.ok).toBe(0)
    expect(keeping.refusals).toContain('TooManyPending')
    expect(open(keeping.held)).toBe(5)
  }, 30_000)

  it('closes the WebSockets port\'s waiting connections when the node stops', async () => {
    const node = await libp2pNode([boundWebSocketsListener(webSocketsClosingAborted(), { handshakeMs: 60_000 })], '/ip4/127.0.0.1/tcp/0/ws')
    const silent = await hold(portOf(node), '127.0.0.2', 3)
    const half = await hold(portOf(node), '127.0.0.2', 2, 'GET / HTTP/1.1\r\n')
    expect(open(silent) + open(half)).toBe(5)
    const stopped = Date.now()
    await node.stop()
    await until(() => open(silent) === 0 && open(half) === 0, () => 'the stopped listener to close its waiting connections', 5_000, 10)
    expect(Math.max(...[...silent, ...half].map(h => h.closedAt!)) - stopped).toBeLessThan(2_000)
  }, 30_000)

  it('refuses limits that are not positive integers', () => {
    expect(() => boundWebSocketsListener(webSocketsClosingAborted(), { perHost: 0 })).toThrow(/perHost must be a positive integer/)
    expect(() => guardInbound([tcp()], { perHost: 1.5 })).toThrow(/per host must be a positive integer, not 1\.5/)
  })
})
