// Gossipsub binding: every heartbeatMs (injected clock) signs and publishes this node's record and
// its instances' heartbeats, and feeds incoming messages to the FleetView through a topic
// validator, so a record the view refuses is never forwarded to the rest of the mesh.
import { logger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { AbortOptions, PeerId, PrivateKey } from '@libp2p/interface'
import type { Message, TopicValidatorFn, TopicValidatorResult } from '@libp2p/gossipsub'
import type { Clock } from '../ports.ts'
import { FleetRecordRejectedError } from './errors.ts'
import { encodeBundles, encodeEnvelope } from './codec.ts'
import type { BundleItem } from './codec.ts'
import { FLEET_RELEASE_TOPIC, FLEET_TOPIC, MAX_MESSAGE_BYTES } from './records.ts'
import type { InstanceRecord, NodeRecord } from './records.ts'
import { signRecord } from './sign.ts'
import type { ApplyResult, FleetView } from './view.ts'

const log = logger('cell:fleet:gossip')

/** What the host reports about itself; the binding stamps nodeId, seq and sentMs. */
export type LocalNodeState = Omit<NodeRecord, 'nodeId' | 'seq' | 'sentMs'>
export type LocalInstanceState = Omit<InstanceRecord, 'nodeId' | 'seq' | 'sentMs'>

/** The part of `@libp2p/gossipsub` v17 this binding uses (its `GossipSub` service satisfies it). */
export interface FleetPubSub {
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
  /** The gossipsub class also takes publish options; the interface type omits them, hence optional here. */
  publish: (topic: string, data: Uint8Array, opts?: { allowPublishToZeroTopicPeers?: boolean, ignoreDuplicatePublishError?: boolean }) => Promise<unknown>
  topicValidators: Map<string, TopicValidatorFn>
  /** Peers known to subscribe to `topic` (gossipsub has it; without it a publish is not retried). */
  getSubscribers?: (topic: string) => unknown[]
}

export interface FleetGossipInit {
  pubsub: FleetPubSub
  view: FleetView
  clock: Clock
  /** This node's libp2p key: records are signed with it so they can be relayed by anyone. */
  privateKey: PrivateKey
  localNode?: () => LocalNodeState | undefined
  localInstances?: () => LocalInstanceState[]
  /** Default 1000. */
  heartbeatMs?: number
  topic?: string
  releaseTopic?: string
  /** Local instances published per heartbeat; extra ones are skipped and counted (default 1024). */
  maxLocalInstances?: number
}

export interface FleetGossipStats {
  ticks: number
  published: number
  publishFailures: number
  /** Release, desired and retire records published again because no subscriber took them. */
  releaseRepublished: number
  skippedInstances: number
  received: { accept: number, ignore: number, reject: number }
}

/** A release record is published at most this many times, this far apart, while no subscriber takes it. */
const RELEASE_PUBLISH_ATTEMPTS = 20
const RELEASE_PUBLISH_RETRY_MS = 250

// Drop reasons that prove the sender misbehaved (gossipsub lowers its score); the rest are benign races.
const REJECT_REASONS = new Set(['malformed', 'wrong-origin', 'bad-signature', 'untrusted'])

/** Detail of the 'heartbeat' event FleetGossip dispatches after each tick (and after scheduling the next). */
export interface FleetHeartbeat { ok: boolean, tick: number }

export class FleetGossip extends EventTarget {
  readonly nodeId: string
  private readonly init: FleetGossipInit
  private readonly heartbeatMs: number
  private readonly topic: string
  private readonly releaseTopic: string
  private readonly maxLocalInstances: number
  private seq: number
  private timer: unknown
  private started = false
  private ticking: Promise<void> | undefined
  /** soon() was called during a tick: the next tick follows at once. */
  private rush = false
  private readonly counters: FleetGossipStats = {
    ticks: 0, published: 0, publishFailures: 0, releaseRepublished: 0, skippedInstances: 0, received: { accept: 0, ignore: 0, reject: 0 }
  }

  constructor (init: FleetGossipInit) {
    super()
    this.init = init
    this.nodeId = peerIdFromPrivateKey(init.privateKey).toString()
    this.heartbeatMs = init.heartbeatMs ?? 1000
    this.topic = init.topic ?? FLEET_TOPIC
    this.releaseTopic = init.releaseTopic ?? FLEET_RELEASE_TOPIC
    this.maxLocalInstances = init.maxLocalInstances ?? 1024
    // Seeded from the clock so a restarted node's seq still exceeds what it gossiped before.
    this.seq = init.clock.now()
    this.validate = this.validate.bind(this)
  }

  /** Subscribes, installs the validators and publishes the first heartbeat at once. Idempotent. */
  start (): void {
    if (this.started) return
    this.started = true
    const { pubsub } = this.init
    pubsub.topicValidators.set(this.topic, this.validate)
    pubsub.topicValidators.set(this.releaseTopic, this.validate)
    pubsub.subscribe(this.topic)
    pubsub.subscribe(this.releaseTopic)
    this.schedule(0)
  }

  stop (): void {
    if (!this.started) return
    this.started = false
    this.init.clock.clearTimeout(this.timer)
    const { pubsub } = this.init
    pubsub.unsubscribe(this.topic)
    pubsub.unsubscribe(this.releaseTopic)
    if (pubsub.topicValidators.get(this.topic) === this.validate) pubsub.topicValidators.delete(this.topic)
    if (pubsub.topicValidators.get(this.releaseTopic) === this.validate) pubsub.topicValidators.delete(this.releaseTopic)
  }

  stats (): FleetGossipStats {
    return { ...this.counters, received: { ...this.counters.received } }
  }

  /**
   * Publishes the next heartbeat now instead of at its time (a replica that just started is
   * announced before other nodes' volunteers confirm theirs); the cadence goes on from there. During
   * a tick, the next one follows it at once.
   */
  soon (): void {
    if (!this.started) return
    if (this.ticking !== undefined) { this.rush = true; return }
    this.init.clock.clearTimeout(this.timer)
    this.schedule(0)
  }

  private schedule (delayMs: number): void {
    this.timer = this.init.clock.setTimeout(() => {
      if (!this.started) return
      // One tick at a time: a slow publish delays the next heartbeat instead of piling them up.
      let ok = true
      this.ticking ??= this.tick().catch((err) => { ok = false; log.error('heartbeat failed: %e', err) }).finally(() => {
        this.ticking = undefined
        const rush = this.rush
        this.rush = false
        if (this.started) this.schedule(rush ? 0 : this.heartbeatMs)
        this.dispatchEvent(new CustomEvent<FleetHeartbeat>('heartbeat', { detail: { ok, tick: this.counters.ticks } }))
      })
    }, delayMs)
  }

  private nextSeq (): number {
    this.seq = Math.max(this.seq + 1, this.init.clock.now())
    return this.seq
  }

  /** Signs, applies locally and publishes this node's record and instance heartbeats once; also runs expiry. */
  async tick (options: AbortOptions = {}): Promise<void> {
    this.counters.ticks++
    const { view, clock, privateKey } = this.init
    view.expire(clock.now())
    const items: BundleItem[] = []
    const node = this.init.localNode?.()
    if (node !== undefined) {
      const env = await signRecord(privateKey, 'node', { ...node, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: clock.now() }, options)
      await view.apply(env, { from: this.nodeId, signal: options.signal })
      items.push({ bytes: encodeEnvelope(env), ageMs: 0 })
    }
    const instances = this.init.localInstances?.() ?? []
    if (instances.length > this.maxLocalInstances) this.counters.skippedInstances += instances.length - this.maxLocalInstances
    for (const inst of instances.slice(0, this.maxLocalInstances)) {
      const env = await signRecord(privateKey, 'instance', { ...inst, nodeId: this.nodeId, seq: this.nextSeq(), sentMs: clock.now() }, options)
      await view.apply(env, { from: this.nodeId, signal: options.signal })
      items.push({ bytes: encodeEnvelope(env), ageMs: 0 })
    }
    for (const frame of encodeBundles(items, MAX_MESSAGE_BYTES)) await this.publish(this.topic, frame)
  }

  /** Verifies a signed release from core/identity through the local view, then gossips it. */
  async publishRelease (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('release', signed, options)
  }

  /** Same as publishRelease for a signed desired-version record (publish, rollback). */
  async publishDesired (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('desired', signed, options)
  }

  /** Same as publishRelease for a signed retire record (`cell retire`). */
  async publishRetire (signed: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.publishSigned('retire', signed, options)
  }

  private async publishSigned (kind: 'release' | 'desired' | 'retire', signed: Uint8Array, options: AbortOptions): Promise<void> {
    const envelope = { kind, signed }
    const bytes = encodeEnvelope(envelope)
    const result = await this.init.view.apply(envelope, { from: this.nodeId, signal: options.signal })
    // Re-gossiping a record we already hold is fine (helps late joiners); anything else is refused.
    if (!result.accepted && result.reason !== 'duplicate') {
      throw new FleetRecordRejectedError(`${kind} refused by the local fleet view: ${result.reason}`, result.reason)
    }
    options.signal?.throwIfAborted()
    // gossipsub skips a subscriber whose stream from this peer is not open yet (a publisher that has
    // just connected) and says so only in its recipients; such a release would reach nobody until a
    // node pulled it from this peer. Publish again (a new message id each time under StrictSign)
    // while subscribers are known but none took it, for a bounded time.
    for (let attempt = 1; ; attempt++) {
      const recipients = await this.publish(this.releaseTopic, bytes)
      const subscribers = this.init.pubsub.getSubscribers?.(this.releaseTopic).length ?? 0
      if (recipients > 0 || subscribers === 0 || attempt >= RELEASE_PUBLISH_ATTEMPTS) return
      this.counters.releaseRepublished++
      await new Promise<void>((resolve) => { this.init.clock.setTimeout(resolve, RELEASE_PUBLISH_RETRY_MS) })
      options.signal?.throwIfAborted()
    }
  }

  /** Publishes `data`; how many peers gossipsub handed it to (0 on failure). */
  private async publish (topic: string, data: Uint8Array): Promise<number> {
    try {
      const result = await this.init.pubsub.publish(topic, data, { allowPublishToZeroTopicPeers: true, ignoreDuplicatePublishError: true }) as { recipients?: unknown[] } | undefined
      this.counters.published++
      return result?.recipients?.length ?? 0
    } catch (err) {
      this.counters.publishFailures++
      log('publish on %s failed: %e', topic, err)
      return 0
    }
  }

  private async validate (_propagationSource: PeerId, msg: Message): Promise<TopicValidatorResult> {
    // With StrictSign, `from` is the publisher gossipsub authenticated; unsigned messages are
    // treated as relayed, so only the records' own origin signatures count.
    const from = msg.type === 'signed' ? msg.from.toString() : undefined
    let results: ApplyResult[]
    try {
      // gossipsub has verified the StrictSign message signature by `from`; the view still checks
      // every record's own signature and whether its node holds a grant.
      results = await this.init.view.applyFrame(msg.data, { from, relayed: from === undefined })
    } catch {
      return this.verdict('reject')
    }
    if (results.some(r => r.accepted || (r.reason === 'duplicate' && from !== undefined))) return this.verdict('accept')
    if (results.some(r => !r.accepted && REJECT_REASONS.has(r.reason))) return this.verdict('reject')
    return this.verdict('ignore')
  }

  private verdict (v: 'accept' | 'ignore' | 'reject'): TopicValidatorResult {
    this.counters.received[v]++
    // The gossipsub enum's values are exactly these strings; a type-only import keeps its runtime out of core.
    return v as TopicValidatorResult
  }
}
