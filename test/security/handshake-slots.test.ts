// Attack: a synapse stream that never sends HELLO held one of the server's channel slots for the 5 s
// handshake timeout, and nothing but the 64-per-peer channel cap stood between a few throwaway peer
// ids and the global cap. Now pending handshakes have their own per-peer cap (default 8) and their
// own total (default 256, oldest of the heaviest peer evicted when full), and do not count against
// maxChannels. Checked against the old synapse.ts/session.ts (git stash): the first test fails with
// TooManyChannelsError for the honest caller (16 silent streams from one peer filled maxChannels 16)
// and so does the second; the third fails because the ninth handshake is accepted into a pending slot.
import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { acceptingAuth, createSynapseNode, testHandler, type SynapseNode } from '../bench/nodes.ts'
import { SYNAPSE_PROTOCOL, SYNAPSE_ERROR_CLASSES, TooManyHandshakesError, WireErrorRegistry, type SynapseInit } from '../../core/synapse/index.ts'
import { within } from './grant-peers.ts'

const nodes: Array<Libp2p<any>> = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

const errors = (): WireErrorRegistry => new WireErrorRegistry(SYNAPSE_ERROR_CLASSES)

async function server (init: Partial<SynapseInit>): Promise<SynapseNode> {
  const s = await createSynapseNode({ ...acceptingAuth(), handler: testHandler(), errors: errors(), ...init })
  nodes.push(s)
  return s
}

/** A peer with a fresh key that opens `count` synapse streams and never sends a byte on them. */
async function silentPeer (target: SynapseNode, count: number): Promise<Stream[]> {
  const n = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  nodes.push(n)
  const connection = await n.dial(target.getMultiaddrs()[0])
  const streams: Stream[] = []
  for (let i = 0; i < count; i++) streams.push(await connection.newStream(SYNAPSE_PROTOCOL, { maxOutboundStreams: 1024 }))
  return streams
}

/** Resolves once `check()` holds; re-checks on each macrotask turn, bounded by `ms`. */
async function until (check: () => boolean, ms: number, what: string): Promise<void> {
  await within((async () => { while (!check()) await new Promise(resolve => setImmediate(resolve)) })(), ms, what)
}

async function honestCall (target: SynapseNode): Promise<Uint8Array> {
  const c = await createSynapseNode({ ...acceptingAuth(), errors: errors() })
  nodes.push(c)
  const channel = await c.services.synapse.open(target.getMultiaddrs()[0], 'billing')
  return await channel.call('echo', new TextEncoder().encode('hi'), { timeoutMs: 2_000 })
}

describe('synapse handshake slots', () => {
  it('one peer with many silent streams cannot lock out an honest caller', async () => {
    const s = await server({ maxChannels: 16 })
    await silentPeer(s, 40)
    // Its first 8 streams wait for HELLO; the rest were refused at once.
    await until(() => s.services.synapse.pendingHandshakes() === 8 && s.services.synapse.stats().server.rejected >= 32, 5_000, '8 pending, 32 refused')
    const answer = await within(honestCall(s), 4_000, 'honest call')
    expect(new TextDecoder().decode(answer)).toBe('hi')
  })

  it('a few throwaway peer ids filling the pending pool cannot lock out an honest caller', async () => {
    const s = await server({ maxChannels: 16, maxPendingHandshakes: 16 })
    for (let i = 0; i < 3; i++) await silentPeer(s, 8)
    await until(() => s.services.synapse.pendingHandshakes() === 16, 5_000, 'a full pending pool')
    const answer = await within(honestCall(s), 4_000, 'honest call')
    expect(new TextDecoder().decode(answer)).toBe('hi')
    expect(s.services.synapse.handshakeEvictions()).toBeGreaterThanOrEqual(1)
    expect(s.services.synapse.pendingHandshakes()).toBeLessThanOrEqual(16)
  })

  it('refuses a peer\'s handshakes beyond the per-peer cap by name', async () => {
    // Authentication that waits keeps each handshake pending, as a slow or hostile peer would.
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    const s = await server({
      maxPendingHandshakesPerPeer: 8,
      authenticate: async ({ remotePeerId }) => { await gate; return { peerId: remotePeerId, authority: 'a', roles: ['caller'] } }
    })
    const c = await createSynapseNode({ ...acceptingAuth(), errors: errors() })
    nodes.push(c)
    const opens = Array.from({ length: 9 }, async () => await c.services.synapse.open(s.getMultiaddrs()[0], 'billing'))
    const settled: unknown[] = []
    const ninth = Promise.race(opens.map(async (p) => await p.then(() => undefined, (e: unknown) => { settled.push(e); return e })))
    expect(await within(ninth, 5_000, 'the excess handshake refused')).toBeInstanceOf(TooManyHandshakesError)
    expect(s.services.synapse.pendingHandshakes()).toBe(8)
    release()
    const results = await within(Promise.allSettled(opens), 5_000, 'the other handshakes')
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(8)
  })
})
