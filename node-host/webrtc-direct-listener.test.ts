// STUN binding requests with made-up ufrags against a real WebRTC-direct listener (node-datachannel):
// each one the listener takes makes a native peer connection (a thread, a descriptor) for up to 10 s.
// The first case is the attack on @libp2p/webrtc alone; the others show the bound
// (node-host/webrtc-direct-listener.ts): one source past its share and all sources past the total
// are dropped before any native object exists, and an honest peer still connects meanwhile.
import { afterEach, describe, expect, it } from 'vitest'
import { createSocket, type Socket } from 'node:dgram'
import { readdir } from 'node:fs/promises'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { webRTCDirect } from '@libp2p/webrtc'
import type { SlotRefusal } from '../core/mesh/inbound-failures.ts'
import { boundWebRTCDirectListener } from './webrtc-direct-listener.ts'
import { stunRequest } from '../test/reliability/stun.ts'

const closers: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of closers.splice(0).reverse()) await c() })

/** Sends `n` requests with fresh ufrags from `from` to `port`, and resolves once the listener answered each it took (it answers only those). */
async function flood (port: number, from: string, n: number): Promise<{ answeredUfrags: () => number }> {
  const udp: Socket = createSocket('udp4')
  closers.push(async () => { udp.close() })
  const answered = new Set<string>()
  udp.on('message', (msg: Buffer) => { answered.add(msg.subarray(8, 20).toString('hex')) })
  await new Promise<void>(resolve => { udp.bind(0, from, resolve) })
  for (let i = 0; i < n; i++) udp.send(stunRequest(), port, '127.0.0.1')
  return { answeredUfrags: () => answered.size }
}

async function until (what: string, test: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

const threads = async (): Promise<number> => (await readdir('/proc/self/task')).length

async function listenerNode (transport: NonNullable<Libp2pOptions['transports']>[number]): Promise<{ node: Libp2p, port: number }> {
  const node = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/udp/0/webrtc-direct'] }, transports: [transport], connectionManager: { inboundConnectionThreshold: 1_000 } })
  closers.push(async () => { await node.stop() })
  const port = Number(node.getMultiaddrs()[0].toString().match(/\/udp\/(\d+)\//)![1])
  return { node, port }
}

describe('WebRTC-direct: STUN requests with made-up ufrags', () => {
  it('the attack on @libp2p/webrtc alone: each request is a native peer connection (a thread) for seconds', async () => {
    const { port } = await listenerNode(webRTCDirect())
    const before = await threads()
    const f = await flood(port, '127.0.0.2', 60)
    // Every request is answered (a peer connection was made for it), and native threads pile up.
    await until('the listener to answer every request', () => f.answeredUfrags() === 60)
    await until('native threads to pile up', async () => await threads() - before >= 30)
  }, 20_000)

  it('drops a source past its share and all sources past the total; an honest peer connects meanwhile', async () => {
    const refused: SlotRefusal[] = []
    const { node, port } = await listenerNode(boundWebRTCDirectListener(webRTCDirect(), { perHost: 4, total: 10 }, (reason) => { refused.push(reason) }))
    const before = await threads()
    const first = await flood(port, '127.0.0.2', 60)
    await until('the 56 requests past the share to be dropped', () => refused.length === 56)
    expect(refused.every(r => r === 'TooManyPendingFromHost')).toBe(true)
    // The 4 it took are answered (their connectivity checks go on until the 10 s deadline); the rest never were.
    await until('the 4 taken requests to be answered', () => first.answeredUfrags() >= 4)
    // An honest dialer from another address gets one of the 6 slots left.
    const client = await createLibp2p({ transports: [webRTCDirect()] })
    closers.push(async () => { await client.stop() })
    const conn = await client.dial(node.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
    expect(conn.status).toBe('open')
    // Three more sources take the rest of the total (4 + 4 + 2); a fifth is dropped as over it.
    await flood(port, '127.0.0.3', 4)
    await flood(port, '127.0.0.4', 4)
    await until('the total to be reached', () => refused.length === 56 + 2)
    await flood(port, '127.0.0.5', 3)
    await until('the requests past the total to be dropped', () => refused.filter(r => r === 'TooManyPending').length === 5)
    // The flood made at most its share of native objects, not one per request: of the first source's
    // 60 requests only the 4 taken were ever answered.
    expect(first.answeredUfrags()).toBe(4)
    expect(await threads() - before).toBeLessThan(30)
    await conn.close()
  }, 30_000)

  it('refuses limits that are not positive integers', () => {
    expect(() => boundWebRTCDirectListener(webRTCDirect(), { total: 0 })).toThrow(/total must be a positive integer/)
  })
})
