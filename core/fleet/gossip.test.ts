import { describe, it, expect, beforeAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { Message, TopicValidatorFn } from '@libp2p/gossipsub'
import { decodeFrame, encodeBundles, encodeEnvelope } from './codec.ts'
import { FleetRecordRejectedError } from './errors.ts'
import { FleetGossip } from './gossip.ts'
import type { FleetPubSub } from './gossip.ts'
import { FLEET_RELEASE_TOPIC, FLEET_TOPIC } from './records.ts'
import type { ReleaseFields } from './records.ts'
import { signRecord } from './sign.ts'
import { ManualClock, makeInstanceRecord, makeNodeRecord } from './testing.ts'
import { FleetView } from './view.ts'

class FakePubSub implements FleetPubSub {
  readonly topics = new Set<string>()
  readonly published: Array<{ topic: string, data: Uint8Array }> = []
  readonly topicValidators = new Map<string, TopicValidatorFn>()
  subscribe (topic: string): void { this.topics.add(topic) }
  unsubscribe (topic: string): void { this.topics.delete(topic) }
  async publish (topic: string, data: Uint8Array): Promise<unknown> {
    this.published.push({ topic, data })
    return { recipients: [] }
  }

  async deliver (topic: string, data: Uint8Array, from?: PeerId): Promise<string> {
    const validator = this.topicValidators.get(topic)
    if (validator === undefined) throw new Error(`no validator on ${topic}`)
    const msg = from === undefined
      ? { type: 'unsigned', topic, data }
      : { type: 'signed', from, topic, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey }
    return await validator(from ?? peerIdFromPrivateKey(other), msg as Message)
  }
}

let self: PrivateKey, other: PrivateKey, otherId: PeerId
const verify = async (signed: Uint8Array): Promise<ReleaseFields> => {
  const text = new TextDecoder().decode(signed)
  if (!text.startsWith('ok:')) throw new Error('bad signature')
  return JSON.parse(text.slice(3))
}
const releaseBytes = (seq: number) => new TextEncoder().encode('ok:' + JSON.stringify({ cell: 'billing', version: `1.${seq}`, digest: 'd'.repeat(64), authority: 'auth', seq }))

beforeAll(async () => {
  self = await generateKeyPair('Ed25519')
  other = await generateKeyPair('Ed25519')
  otherId = peerIdFromPrivateKey(other)
})

function setup (instances = 2) {
  const clock = new ManualClock()
  const view = new FleetView({ clock, verifyRelease: verify, verifyDesired: verify })
  const pubsub = new FakePubSub()
  const selfId = peerIdFromPrivateKey(self).toString()
  const { nodeId: _a, seq: _b, sentMs: _c, ...node } = makeNodeRecord(selfId)
  const gossip = new FleetGossip({
    pubsub, view, clock, privateKey: self, heartbeatMs: 1000,
    localNode: () => node,
    localInstances: () => Array.from({ length: instances }, (_, i) => {
      const { nodeId: _x, seq: _y, sentMs: _z, ...inst } = makeInstanceRecord(selfId, { instanceId: `i-${i}` })
      return inst
    })
  })
  return { clock, view, pubsub, gossip, selfId }
}

async function nextHeartbeat (gossip: FleetGossip, clock: ManualClock, ms: number): Promise<void> {
  const done = new Promise<void>((resolve) => gossip.addEventListener('heartbeat', () => resolve(), { once: true }))
  clock.advance(ms)
  await done
}

describe('FleetGossip', () => {
  it('publishes signed node and instance records every heartbeat with rising seq and applies them locally', async () => {
    const { clock, view, pubsub, gossip, selfId } = setup()
    gossip.start()
    gossip.start()
    expect([...pubsub.topics].sort()).toEqual([FLEET_RELEASE_TOPIC, FLEET_TOPIC].sort())
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published).toHaveLength(1)
    const first = decodeFrame(pubsub.published[0].data)
    expect(first.map(e => e.envelope.kind)).toEqual(['node', 'instance', 'instance'])
    expect(view.node(selfId)).toBeDefined()
    expect(view.liveInstances('billing')).toHaveLength(2)

    // Nothing more until a full interval has passed.
    clock.advance(999)
    expect(pubsub.published).toHaveLength(1)
    await nextHeartbeat(gossip, clock, 1)
    const second = decodeFrame(pubsub.published[1].data)
    const seqOf = (e: typeof first[number]) => e.envelope.kind === 'node' || e.envelope.kind === 'instance' ? e.envelope.record.seq : -1
    expect(seqOf(second[0])).toBeGreaterThan(seqOf(first[0]))
    expect(view.stats().accepted).toMatchObject({ node: 2, instance: 4 })

    gossip.stop()
    expect(pubsub.topics.size).toBe(0)
    expect(pubsub.topicValidators.size).toBe(0)
    clock.advance(10_000)
    expect(pubsub.published).toHaveLength(2)
  })

  it('soon() publishes the next heartbeat at once, then keeps the cadence; during a tick, the next follows it', async () => {
    const { clock, pubsub, gossip } = setup()
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    clock.advance(300)
    expect(pubsub.published).toHaveLength(1)
    // A replica started 300 ms into the interval: announced now, not 700 ms later.
    gossip.soon()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published).toHaveLength(2)
    clock.advance(999)
    expect(pubsub.published).toHaveLength(2)
    await nextHeartbeat(gossip, clock, 1)
    expect(pubsub.published).toHaveLength(3)
    // Called while a tick is in flight: that tick may have read the replicas before the change.
    const ticking = nextHeartbeat(gossip, clock, 1000)
    gossip.soon()
    await ticking
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published).toHaveLength(5)
    gossip.stop()
    gossip.soon()
    clock.advance(10_000)
    expect(pubsub.published).toHaveLength(5)
  })

  it('splits many instances over several messages under 64 KiB', async () => {
    const { clock, pubsub, gossip } = setup(600)
    gossip.start()
    await nextHeartbeat(gossip, clock, 0)
    expect(pubsub.published.length).toBeGreaterThan(1)
    expect(pubsub.published.flatMap(p => decodeFrame(p.data))).toHaveLength(601)
    for (const p of pubsub.published) expect(p.data.length).toBeLessThanOrEqual(64 * 1024)
    gossip.stop()
  })

  it('validates incoming messages: accept good, reject forged or malformed, ignore stale', async () => {
    const { view, pubsub, gossip } = setup()
    gossip.start()
    const good = encodeEnvelope(await signRecord(other, 'node', makeNodeRecord(otherId.toString(), { sentMs: new ManualClock().now() })))
    expect(await pubsub.deliver(FLEET_TOPIC, good, otherId)).toBe('accept')
    expect(view.node(otherId.toString())).toBeDefined()
    // The same record again (e.g. already merged from a snapshot) is still forwarded.
    expect(await pubsub.deliver(FLEET_TOPIC, good, otherId)).toBe('accept')
    // A node relaying someone else's record on gossip is misbehaving.
    const selfPeer = peerIdFromPrivateKey(self)
    expect(await pubsub.deliver(FLEET_TOPIC, good, selfPeer)).toBe('reject')
    expect(await pubsub.deliver(FLEET_TOPIC, new Uint8Array([1, 1, 200]), otherId)).toBe('reject')
    const old = encodeEnvelope(await signRecord(other, 'node', makeNodeRecord(otherId.toString(), { seq: 0, sentMs: new ManualClock().now() })))
    expect(await pubsub.deliver(FLEET_TOPIC, old, otherId)).toBe('ignore')
    // Unsigned gossip is treated as relayed: the origin signature alone decides.
    const bundle = encodeBundles([{ bytes: good, ageMs: 0 }])[0]
    expect(await pubsub.deliver(FLEET_TOPIC, bundle)).toBe('ignore')
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes(3) }), otherId)).toBe('accept')
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: releaseBytes(2) }), otherId)).toBe('ignore')
    expect(await pubsub.deliver(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'release', signed: new Uint8Array([9]) }), otherId)).toBe('reject')
    expect(gossip.stats().received).toEqual({ accept: 3, ignore: 3, reject: 3 })
    gossip.stop()
  })

  it('publishes releases the local view accepts and refuses the rest', async () => {
    const { view, pubsub, gossip } = setup()
    gossip.start()
    await gossip.publishRelease(releaseBytes(4))
    expect(view.release('billing')?.seq).toBe(4)
    expect(pubsub.published.at(-1)?.topic).toBe(FLEET_RELEASE_TOPIC)
    await gossip.publishRelease(releaseBytes(4)) // re-gossip of a known record is allowed
    await expect(gossip.publishRelease(releaseBytes(3))).rejects.toBeInstanceOf(FleetRecordRejectedError)
    await expect(gossip.publishDesired(new TextEncoder().encode('forged'))).rejects.toMatchObject({ reason: 'bad-signature' })
    expect(pubsub.published.filter(p => p.topic === FLEET_RELEASE_TOPIC)).toHaveLength(2)
    gossip.stop()
  })

  it('publishes a release again while subscribers are known but gossipsub handed it to none (their streams not open yet), up to a bound', async () => {
    const { clock, pubsub, gossip } = setup()
    // Subscribed peers are known; the first two publishes reach nobody, the third reaches one.
    let reached = 0
    const real = pubsub.publish.bind(pubsub)
    const flaky = Object.assign(pubsub, {
      getSubscribers: () => [otherId],
      publish: async (topic: string, data: Uint8Array) => { await real(topic, data); return { recipients: topic === FLEET_RELEASE_TOPIC && reached++ >= 2 ? [otherId] : [] } }
    })
    expect(flaky.getSubscribers()).toHaveLength(1)
    gossip.start()
    const releases = (): number => pubsub.published.filter(p => p.topic === FLEET_RELEASE_TOPIC).length
    const publishing = gossip.publishRelease(releaseBytes(4))
    for (let i = 0; i < 5 && releases() < 3; i++) { await new Promise(resolve => setTimeout(resolve, 0)); clock.advance(250) }
    await publishing
    expect(releases()).toBe(3)
    expect(gossip.stats().releaseRepublished).toBe(2)
    // Nobody ever takes it: bounded.
    reached = Number.NEGATIVE_INFINITY
    const bounded = gossip.publishRelease(releaseBytes(5))
    for (let i = 0; i < 40; i++) { await new Promise(resolve => setTimeout(resolve, 0)); clock.advance(250) }
    await bounded
    expect(releases()).toBe(3 + 20)
    gossip.stop()
  })
})
