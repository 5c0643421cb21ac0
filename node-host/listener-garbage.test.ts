// ListenerGarbage: counts refused HTTP requests on a real server and failed libp2p inbound upgrades
// on a real TCP listener (core/mesh guardInbound), with bounded label values. The whole
// node under garbage is test/reliability/listener-garbage.test.ts.
import { afterEach, describe, expect, it } from 'vitest'
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import { Registry } from 'prom-client'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { ListenerGarbage } from './listener-garbage.ts'
import { guardInbound } from '../core/mesh/inbound-failures.ts'

const closers: Array<() => Promise<void>> = []
afterEach(async () => { await Promise.all(closers.splice(0).map(async c => { await c() })) })

/** Writes `bytes` to 127.0.0.1:`port` (then half-closes, as a half handshake ends) and resolves with what came back once the peer closed. */
async function send (port: number, bytes: string | Uint8Array, halfClose = false): Promise<string> {
  return await new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => { if (halfClose) s.end(bytes); else s.write(bytes) })
    let got = ''
    s.on('data', (d: Buffer) => { got += d.toString('latin1') })
    s.on('error', () => {})
    s.on('close', () => { resolve(got) })
  })
}

describe('ListenerGarbage', () => {
  it('counts what the HTTP parser refuses, answers as Node would, and exposes it', async () => {
    const garbage = new ListenerGarbage()
    const server: Server = createServer((_req, res) => { res.end('ok') })
    garbage.watchHttp(server, 'metrics-http')
    await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
    closers.push(async () => { await new Promise<void>((resolve) => { server.close(() => { resolve() }) }) })
    const port = (server.address() as { port: number }).port
    expect(await send(port, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    expect(await send(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431/)
    expect(await send(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/)
    expect(garbage.total('metrics-http')).toBe(2)
    const registry = new Registry()
    garbage.register(registry)
    const text = await registry.metrics()
    expect(text).toContain('cell_listener_garbage_total{listener="metrics-http",reason="HPE_HEADER_OVERFLOW"} 1')
    expect(text).toMatch(/cell_listener_garbage_total\{listener="metrics-http",reason="HPE_INVALID_METHOD"\} 1/)
  })

  it('keeps at most 64 series; further reasons count as other', () => {
    const garbage = new ListenerGarbage()
    for (let i = 0; i < 100; i++) garbage.note('tcp', `Reason${i}`)
    expect(garbage.total('tcp')).toBe(100)
    expect((garbage as unknown as { counts: Map<string, unknown> }).counts.size).toBeLessThanOrEqual(65)
  })

  it('counts failed inbound upgrades on a real libp2p TCP listener, by transport', async () => {
    const garbage = new ListenerGarbage()
    const node: Libp2p = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: guardInbound([tcp()], { onFailure: garbage.onInboundFailure }),
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })
    closers.push(async () => { await node.stop() })
    const port = Number(node.getMultiaddrs()[0].toString().match(/\/tcp\/(\d+)/)![1])
    await send(port, new Uint8Array(64).fill(0xff), true)
    await send(port, Uint8Array.from([19, ...new TextEncoder().encode('/multistream/1.0.0\n'), 7, ...new TextEncoder().encode('/noise\n'), 1, 2, 3]), true)
    const deadline = Date.now() + 5_000
    while (garbage.total('tcp') < 2 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    expect(garbage.total('tcp')).toBe(2)
    // The node still dials and is dialled normally.
    const other = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
    closers.push(async () => { await other.stop() })
    await other.dial(node.getMultiaddrs()[0])
    expect(garbage.total('tcp')).toBe(2)
  })
})
