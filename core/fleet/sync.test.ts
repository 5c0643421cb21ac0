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
import { ByteWriter } from './bytes.ts'
import { decodeFrame } from './codec.ts'
import { FLEET_SYNC_PROTOCOL } from './records.ts'
import { signRecord } from './sign.ts'
import { FleetSyncFilterError, MAX_SYNC_REQUEST_BYTES, SYNC_FILTER_LIMITS, encodeSyncRequest, fleetSync, narrowSnapshot, parseSyncRequest } from './sync.ts'
import type { FleetSync } from './sync.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from './testing.ts'
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

describe('fleet-sync request filter (pure)', () => {
  it('round-trips a filter, keeps the unfiltered request byte for byte, and removes duplicates', () => {
    const chain = new Uint8Array([7, 8, 9])
    expect(encodeSyncRequest(chain)).toEqual(new Uint8Array([1, 0x21, 7, 8, 9]))
    expect(parseSyncRequest(encodeSyncRequest(chain))).toEqual({ legacy: false, chain })
    expect(parseSyncRequest(new Uint8Array([1, 0x20]))).toMatchObject({ legacy: true })
    const id = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'
    const req = parseSyncRequest(encodeSyncRequest(chain, { cells: ['billing', 'ledger', 'billing'], nodes: [id] }))
    expect(req).toEqual({ legacy: false, chain, filter: { cells: ['billing', 'ledger'], nodes: [id] } })
    expect(parseSyncRequest(encodeSyncRequest(new Uint8Array(0), { nodes: [id] })).filter).toEqual({ cells: [], nodes: [id] })
    // A caller's sample travels as an optional trailing field.
    expect(parseSyncRequest(encodeSyncRequest(chain, { cells: ['billing'], sample: 16 })).filter).toEqual({ cells: ['billing'], nodes: [], sample: 16 })
    expect(encodeSyncRequest(chain, { cells: ['billing'], sample: 16 }).length).toBe(encodeSyncRequest(chain, { cells: ['billing'] }).length + 1)
  })

  it('refuses a sample out of bounds or without cells, also in a hand-made frame (attack)', () => {
    for (const sample of [0, -1, 1.5, SYNC_FILTER_LIMITS.sample + 1]) expect(() => encodeSyncRequest(new Uint8Array(0), { cells: ['billing'], sample })).toThrow(FleetSyncFilterError)
    expect(() => encodeSyncRequest(new Uint8Array(0), { nodes: ['QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'], sample: 4 })).toThrow(FleetSyncFilterError)
    const frame = rawFilterRequest(['billing'], [])
    expect(() => parseSyncRequest(new Uint8Array([...frame, 0]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([...frame, 65]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([...frame, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([...frame, 4, 4]))).toThrow(FleetSyncFilterError)
    expect(parseSyncRequest(new Uint8Array([...frame, 4])).filter).toEqual({ cells: ['billing'], nodes: [], sample: 4 })
  })

  it('refuses an empty, oversized, invalid or undecodable filter by name', () => {
    const many = Array.from({ length: SYNC_FILTER_LIMITS.cells + 1 }, (_, i) => `c${i}`)
    expect(() => encodeSyncRequest(new Uint8Array(0), { cells: many })).toThrow(FleetSyncFilterError)
    expect(() => encodeSyncRequest(new Uint8Array(0), {})).toThrow(FleetSyncFilterError)
    expect(() => encodeSyncRequest(new Uint8Array(0), { cells: ['has space'] })).toThrow(FleetSyncFilterError)
    expect(() => encodeSyncRequest(new Uint8Array(0), { nodes: ['not/a/peer'] })).toThrow(FleetSyncFilterError)
    // Hand-made frames, as an attacker would send them.
    expect(() => parseSyncRequest(rawFilterRequest(many, []))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(rawFilterRequest([], []))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(rawFilterRequest(['a'.repeat(200)], []))).toThrow(FleetSyncFilterError)
    const truncated = rawFilterRequest(['billing'], [])
    expect(() => parseSyncRequest(truncated.subarray(0, truncated.length - 2))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([...truncated, 0]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([1, 0x22]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array(MAX_SYNC_REQUEST_BYTES + 1).fill(1, 0, 1).fill(0x22, 1, 2))).toThrow(FleetSyncFilterError)
    // 0x23 is the digest request (digest-sync.test.ts); 0x24 is no request kind.
    expect(() => parseSyncRequest(new Uint8Array([1, 0x23]))).toThrow(FleetSyncFilterError)
    expect(() => parseSyncRequest(new Uint8Array([1, 0x24]))).toThrow(FleetSyncError)
    expect(() => parseSyncRequest(new Uint8Array([2, 0x21]))).toThrow(FleetSyncError)
  })
})

/** A filtered request frame written by hand, without the encoder's checks. */
function rawFilterRequest (cells: string[], nodes: string[], chain = new Uint8Array(0)): Uint8Array {
  const w = new ByteWriter(1 << 20)
  w.u8(1).u8(0x22).bytes(chain, 1 << 20).uvarint(cells.length)
  for (const c of cells) w.string(c, 1 << 20)
  w.uvarint(nodes.length)
  for (const n of nodes) w.string(n, 1 << 20)
  return w.finish()
}

describe('fleet-sync filtered pulls over libp2p', () => {
  /** A server view with node records of two hosts, `billing` on one and `ledger` on the other, and a third idle node. */
  async function serverWithTwoCells (clock: ManualClock): Promise<{ view: FleetView, billingHost: string, ledgerHost: string, idle: string }> {
    const view = new FleetView({ clock })
    const keys = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const [billingHost, ledgerHost, idle] = keys.map(k => peerIdFromPrivateKey(k).toString())
    for (const [i, key] of keys.entries()) {
      const id = peerIdFromPrivateKey(key).toString()
      expect(await view.apply(await signRecord(key, 'node', makeNodeRecord(id, { sentMs: clock.now() })), { from: id })).toMatchObject({ accepted: true })
      if (i === 2) continue
      for (let n = 0; n < 3; n++) {
        const cell = i === 0 ? 'billing' : 'ledger'
        expect(await view.apply(await signRecord(key, 'instance', makeInstanceRecord(id, { cell, instanceId: `${cell}-${n}`, sentMs: clock.now() })), { from: id })).toMatchObject({ accepted: true })
      }
    }
    return { view, billingHost, ledgerHost, idle }
  }

  it('pulls one cell\'s records (with its host\'s node record) or one node\'s record; an unfiltered pull still gets everything', async () => {
    const clock = new ManualClock()
    const { view: serverView, billingHost, ledgerHost, idle } = await serverWithTwoCells(clock)
    const s = await node({ fleetSync: fleetSync({ view: serverView, clock, autoPull: 0 }) })
    const { n: c, view } = await client(clock)
    await c.dial(s.getMultiaddrs()[0])
    expect(await c.services.fleetSync.pull(s.peerId, { cells: ['billing'] })).toMatchObject({ accepted: 4, dropped: 0 })
    expect(view.instances().map(i => i.cell)).toEqual(['billing', 'billing', 'billing'])
    expect(view.nodes().map(n => n.nodeId)).toEqual([billingHost])

    const { n: c2, view: view2 } = await client(clock)
    await c2.dial(s.getMultiaddrs()[0])
    expect(await c2.services.fleetSync.pull(s.peerId, { nodes: [idle] })).toMatchObject({ accepted: 1, dropped: 0 })
    expect(view2.nodes().map(n => n.nodeId)).toEqual([idle])
    expect(view2.instances()).toHaveLength(0)

    const { n: c3, view: view3 } = await client(clock)
    await c3.dial(s.getMultiaddrs()[0])
    expect(await c3.services.fleetSync.pull(s.peerId)).toMatchObject({ accepted: 9, dropped: 0 })
    expect(view3.nodes().map(n => n.nodeId).sort()).toEqual([billingHost, ledgerHost, idle].sort())
    expect(view3.instances()).toHaveLength(6)
  })

  it('a filtered pull encodes only what it asks for: a fleet over the snapshot budget still yields the cell\'s instances', async () => {
    const clock = new ManualClock()
    // Node records of 24 idle nodes fill the whole-view snapshot's budget before any instance.
    const serverView = new FleetView({ clock, maxSnapshotBytes: 6_000 })
    const host = await generateKeyPair('Ed25519')
    const hostId = peerIdFromPrivateKey(host).toString()
    for (let i = 0; i < 24; i++) {
      const key = await generateKeyPair('Ed25519')
      const id = peerIdFromPrivateKey(key).toString()
      expect(await serverView.apply(await signRecord(key, 'node', makeNodeRecord(id, { sentMs: clock.now() })), { from: id })).toMatchObject({ accepted: true })
    }
    expect(await serverView.apply(await signRecord(host, 'node', makeNodeRecord(hostId, { sentMs: clock.now() })), { from: hostId })).toMatchObject({ accepted: true })
    for (let n = 0; n < 3; n++) {
      expect(await serverView.apply(await signRecord(host, 'instance', makeInstanceRecord(hostId, { instanceId: `billing-${n}`, sentMs: clock.now() })), { from: hostId })).toMatchObject({ accepted: true })
    }
    expect(serverView.snapshot().reduce((n, f) => n + decodeFrame(f).length, 0)).toBeLessThan(28)
    const s = await node({ fleetSync: fleetSync({ view: serverView, clock, autoPull: 0 }) })
    const { n: c, view } = await client(clock)
    await c.dial(s.getMultiaddrs()[0])
    // On the code before, the filtered pull narrowed a whole-view snapshot, cut at the budget before
    // the instances: it brought no instance at all.
    expect(await c.services.fleetSync.pull(s.peerId, { cells: ['billing'] })).toMatchObject({ accepted: 4, dropped: 0 })
    expect(view.instances().map(i => i.instanceId).sort()).toEqual(['billing-0', 'billing-1', 'billing-2'])
    expect(view.nodes().map(n => n.nodeId)).toEqual([hostId])
  })

  it('refuses a malformed or oversized filter by name and closes the stream (attack)', async () => {
    const clock = new ManualClock()
    const { view: serverView } = await serverWithTwoCells(clock)
    const s = await node({ fleetSync: fleetSync({ view: serverView, clock, autoPull: 0, maxInboundStreams: 8 }) })
    const attacker = await node()
    await attacker.dial(s.getMultiaddrs()[0])
    const sync = s.services.fleetSync as FleetSync
    const attempts = [
      rawFilterRequest(Array.from({ length: 65 }, (_, i) => `c${i}`), []),
      rawFilterRequest(['bad name'], []),
      rawFilterRequest([], [])
    ]
    for (const request of attempts) {
      const stream = await attacker.dialProtocol(s.peerId, FLEET_SYNC_PROTOCOL)
      const closed = new Promise<void>((resolve) => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
      stream.send(encodeLengthPrefixed(request))
      const got: Uint8Array[] = []
      await expect((async () => { for await (const chunk of stream) got.push(chunk instanceof Uint8Array ? chunk : chunk.subarray()) })()).rejects.toThrow()
      await closed
      // Not a byte of the view went out.
      expect(got).toEqual([])
    }
    expect(sync.stats()).toMatchObject({ badFilters: 3, served: 0 })
    // A request frame over the bound is cut at its length prefix.
    const stream = await attacker.dialProtocol(s.peerId, FLEET_SYNC_PROTOCOL)
    stream.send(encodeLengthPrefixed(new Uint8Array(MAX_SYNC_REQUEST_BYTES + 1).fill(1, 0, 1).fill(0x22, 1, 2)))
    await expect((async () => { for await (const _chunk of stream) { /* nothing comes */ } })()).rejects.toThrow()
    expect(sync.stats()).toMatchObject({ served: 0, serveFailures: 4 })
  })
})

describe('narrowSnapshot (pure)', () => {
  it('keeps the asked nodes\' node, member and down records, and the hosts of the asked cells\' instances', async () => {
    const clock = new ManualClock()
    const view = new FleetView({ clock, liveness: 'members' })
    const ks = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const [x, y, z] = ks.map(k => peerIdFromPrivateKey(k).toString())
    for (const [i, k] of ks.entries()) {
      const id = [x, y, z][i]
      expect(await view.apply(await signRecord(k, 'node', makeNodeRecord(id, { seq: 1, sentMs: clock.now(), roles: ['full'] })), { from: id })).toMatchObject({ accepted: true })
      expect(await view.apply(await signRecord(k, 'member', { nodeId: id, seq: 2, sentMs: clock.now(), nodeSeq: 1, slots: 8, freeSlots: 8, cpuPercent: 0, memoryPercent: 0, leaving: false, cells: [] }), { from: id })).toMatchObject({ accepted: true })
    }
    // y reports x down; z hosts billing.
    expect(await view.apply(await signRecord(ks[1], 'down', { nodeId: y, subject: x, subjectSeq: 2, seq: 3, sentMs: clock.now() }), { from: y })).toMatchObject({ accepted: true })
    expect(await view.apply(await signRecord(ks[2], 'instance', makeInstanceRecord(z, { cell: 'billing', sentMs: clock.now(), refreshMs: 5000 })), { from: z })).toMatchObject({ accepted: true })
    const kinds = (frames: Uint8Array[]): string[] => frames.flatMap(f => decodeFrame(f)).map(e => {
      const env = e.envelope
      return env.kind === 'down' ? `down:${env.record.subject === x ? 'x' : '?'}` : `${env.kind}:${'record' in env ? ({ [x]: 'x', [y]: 'y', [z]: 'z' })[env.record.nodeId] : ''}`
    }).sort()
    expect(kinds(narrowSnapshot(view.snapshot({ cells: () => false }), { cells: [], nodes: [x] }, 64 * 1024))).toEqual(['down:x', 'member:x', 'node:x'])
    expect(kinds(narrowSnapshot(view.snapshot({ cells: (c) => c === 'billing' }), { cells: ['billing'], nodes: [] }, 64 * 1024))).toEqual(['instance:z', 'member:z', 'node:z'])
    expect(narrowSnapshot(view.snapshot({ cells: () => false }), { cells: ['ledger'], nodes: [] }, 64 * 1024)).toEqual([])
    // The view narrows as it encodes, to the same records (what a filtered pull is served now).
    expect(kinds(view.snapshot({ cells: () => false, nodes: (n) => n === x }))).toEqual(['down:x', 'member:x', 'node:x'])
    expect(kinds(view.snapshot({ cells: (c) => c === 'billing', nodes: () => false, withHosts: true }))).toEqual(['instance:z', 'member:z', 'node:z'])
    expect(kinds(view.snapshot({ cells: (c) => c === 'billing', nodes: () => false }))).toEqual(['instance:z'])
    // A host found down keeps its node record beside the instances still carried (x: reported down above).
    expect(await view.apply(await signRecord(ks[0], 'instance', makeInstanceRecord(x, { cell: 'ledger', sentMs: clock.now(), refreshMs: 5000 })), { from: x })).toMatchObject({ accepted: true })
    expect(kinds(view.snapshot({ cells: (c) => c === 'ledger', nodes: () => false, withHosts: true }))).toEqual(['down:x', 'instance:x', 'member:x', 'node:x'])
  })

  it('a caller\'s sample keeps at most n instances of a cell, ready ones first, spread at random, without node records', async () => {
    const clock = new ManualClock()
    const view = new FleetView({ clock, liveness: 'members', maxInstancesPerNode: 64 })
    const keys = await Promise.all(Array.from({ length: 6 }, async () => await generateKeyPair('Ed25519')))
    const ids = keys.map(k => peerIdFromPrivateKey(k).toString())
    for (const [i, k] of keys.entries()) {
      expect(await view.apply(await signRecord(k, 'node', makeNodeRecord(ids[i], { seq: 1, sentMs: clock.now(), roles: ['full'] })), { from: ids[i] })).toMatchObject({ accepted: true })
      // Nodes 0-3 run a ready replica, 4-5 a starting one.
      const state = i < 4 ? 'ready' : 'starting'
      expect(await view.apply(await signRecord(k, 'instance', makeInstanceRecord(ids[i], { cell: 'billing', instanceId: `b${i}`, state, sentMs: clock.now(), refreshMs: 5000 })), { from: ids[i] })).toMatchObject({ accepted: true })
    }
    const frames = view.snapshot({ cells: (c) => c === 'billing' })
    const sampled = (n: number, draw: number): Array<{ kind: string, id: string, state?: string }> => narrowSnapshot(frames, { cells: ['billing'], nodes: [], sample: n }, 64 * 1024, { next: () => draw, bytes: (k) => new Uint8Array(k) })
      .flatMap(f => decodeFrame(f)).map(e => e.envelope.kind === 'instance' ? { kind: 'instance', id: e.envelope.record.nodeId, state: e.envelope.record.state } : { kind: e.envelope.kind, id: 'record' in e.envelope ? e.envelope.record.nodeId : '' })
    const two = sampled(2, 0.99)
    const instances = two.filter(e => e.kind === 'instance')
    expect(instances.map(e => e.state)).toEqual(['ready', 'ready'])
    // Instances only: the caller holds the hosts' records (or pulls the one it lacks).
    expect(two.filter(e => e.kind !== 'instance')).toEqual([])
    // Another draw picks other replicas: callers spread.
    expect(sampled(2, 0).filter(e => e.kind === 'instance').map(e => e.id).sort()).not.toEqual(instances.map(e => e.id).sort())
    // More than the ready ones: the starting ones fill up.
    expect(sampled(5, 0.5).filter(e => e.kind === 'instance').map(e => e.state).sort()).toEqual(['ready', 'ready', 'ready', 'ready', 'starting'])
  })
})
