// fleet-sync failure paths over real libp2p streams: deadline, abort, limits, garbage responses.
import { describe, it, expect, afterEach } from 'vitest'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { FleetSyncError, FleetSyncTimeoutError, MalformedFleetRecordError } from './errors.ts'
import { encodeLengthPrefixed } from './framing.ts'
import { FLEET_SYNC_PROTOCOL } from './records.ts'
import { signRecord } from './sign.ts'
import { fleetSync } from './sync.ts'
import type { FleetSync } from './sync.ts'
import { ManualClock, makeInstanceRecord } from './testing.ts'
import { FleetView } from './view.ts'

const nodes: Libp2p[] = []
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop()
})

async function node (services: Record<string, (components: any) => unknown> = {}): Promise<Libp2p<any>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services
  })
  nodes.push(n)
  return n
}

async function client (clock: ManualClock, init: { maxFrames?: number, maxFrameBytes?: number } = {}): Promise<{ n: Libp2p<{ fleetSync: FleetSync }>, view: FleetView }> {
  const view = new FleetView({ clock })
  const n = await node({ fleetSync: fleetSync({ view, clock, autoPull: 0, timeoutMs: 5000, ...init }) })
  return { n, view }
}

/** A server that runs `respond` for every fleet-sync stream and reports when one arrived. */
async function rawServer (respond: (stream: Stream) => Promise<void> | void): Promise<{ n: Libp2p, arrived: Promise<void> }> {
  const n = await node()
  let signalArrival = (): void => {}
  const arrived = new Promise<void>((resolve) => { signalArrival = resolve })
  await n.handle(FLEET_SYNC_PROTOCOL, async (stream) => {
    signalArrival()
    await respond(stream)
  })
  return { n, arrived }
}

describe('fleet-sync', () => {
  it('times out on the injected clock when the neighbour never answers', async () => {
    const clock = new ManualClock()
    const { n: c } = await client(clock)
    const { n: s, arrived } = await rawServer(() => {})
    await c.dial(s.getMultiaddrs()[0])
    const pull = c.services.fleetSync.pull(s.peerId)
    await arrived
    clock.advance(5000)
    await expect(pull).rejects.toBeInstanceOf(FleetSyncTimeoutError)
    expect(c.services.fleetSync.stats()).toMatchObject({ pulls: 0, pullFailures: 1 })
  })

  it('honours the caller signal', async () => {
    const { n: c } = await client(new ManualClock())
    const { n: s, arrived } = await rawServer(() => {})
    await c.dial(s.getMultiaddrs()[0])
    const controller = new AbortController()
    const pull = c.services.fleetSync.pull(s.peerId, { signal: controller.signal })
    await arrived
    const reason = new Error('caller gave up')
    controller.abort(reason)
    await expect(pull).rejects.toBe(reason)
  })

  it('rejects an oversized frame and a malformed snapshot', async () => {
    const { n: c } = await client(new ManualClock(), { maxFrameBytes: 1024 })
    const big = await rawServer(async (stream) => { stream.send(encodeLengthPrefixed(new Uint8Array(4096))); await stream.close() })
    await c.dial(big.n.getMultiaddrs()[0])
    await expect(c.services.fleetSync.pull(big.n.peerId)).rejects.toBeInstanceOf(FleetSyncError)
    const junk = await rawServer(async (stream) => { stream.send(encodeLengthPrefixed(new Uint8Array([1, 0x10, 9]))); await stream.close() })
    await c.dial(junk.n.getMultiaddrs()[0])
    await expect(c.services.fleetSync.pull(junk.n.peerId)).rejects.toBeInstanceOf(MalformedFleetRecordError)
  })

  it('a peer that dials and says nothing holds no serve slot, and is dropped at the request deadline', async () => {
    // Before, the serve slot was taken before the request was read: with maxConcurrentServes 1, one
    // silent stream made every honest pull fail until the 10 s serve deadline.
    const clock = new ManualClock()
    const serverView = new FleetView({ clock })
    const s = await node({ fleetSync: fleetSync({ view: serverView, clock, autoPull: 0, maxConcurrentServes: 1, requestTimeoutMs: 2000, maxInboundStreams: 4 }) })
    const silent = await node()
    await silent.dial(s.getMultiaddrs()[0])
    const stream = await silent.dialProtocol(s.peerId, FLEET_SYNC_PROTOCOL)
    const closed = new Promise<void>((resolve) => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
    const { n: c } = await client(clock)
    await c.dial(s.getMultiaddrs()[0])
    await expect(c.services.fleetSync.pull(s.peerId)).resolves.toMatchObject({ frames: 0 })
    clock.advance(2000)
    await closed
    expect(stream.status).not.toBe('open')
  })

  it('stops after maxFrames frames, having merged what came before', async () => {
    const clock = new ManualClock()
    const serverView = new FleetView({ clock })
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    for (let i = 0; i < 50; i++) {
      await serverView.apply(await signRecord(key, 'instance', makeInstanceRecord(id, { instanceId: `i-${i}`, sentMs: clock.now() })), { from: id })
    }
    const s = await node({ fleetSync: fleetSync({ view: serverView, clock, autoPull: 0, maxFrameBytes: 1024 }) })
    const { n: c, view } = await client(clock, { maxFrames: 2 })
    await c.dial(s.getMultiaddrs()[0])
    await expect(c.services.fleetSync.pull(s.peerId)).rejects.toBeInstanceOf(FleetSyncError)
    const merged = view.instances().length
    expect(merged).toBeGreaterThan(0)
    expect(merged).toBeLessThan(50)
    const { n: c2, view: full } = await client(clock)
    await c2.dial(s.getMultiaddrs()[0])
    expect(await c2.services.fleetSync.pull(s.peerId)).toMatchObject({ accepted: 50, dropped: 0 })
    expect(full.instances()).toHaveLength(50)
  })
})
