// The watch for peers of the other dissemination mode, over a fake gossipsub subscriber table: who is
// reported (a peer of the other mode, once), who is not (nodes and clients of this mode, a peer reading
// both record topics, this node itself), what clears an entry, and the bounds a hostile peer meets
// (tracked peers, reports a minute, a peer that comes and goes, a flood of subscription changes).
import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { TopicValidatorFn } from '@libp2p/gossipsub'
import { DisseminationWatch } from './dissemination-watch.ts'
import type { DisseminationWatchInit } from './dissemination-watch.ts'
import { DisseminationMismatchError } from './errors.ts'
import { FleetGossip } from './gossip.ts'
import type { FleetPubSub } from './gossip.ts'
import { FLEET_RELEASE_TOPIC, FLEET_TOPIC, MEMBERS_TOPIC, cellTopic } from './records.ts'
import type { Dissemination } from './records.ts'
import { ManualClock } from './testing.ts'
import { FleetView } from './view.ts'

/** gossipsub's subscriber table as the watch reads it (peer ids as strings; getSubscribers hands out copies). */
class Subscribers {
  readonly topics = new Map<string, Set<string>>()
  calls = 0
  subscribe (peer: string, ...topics: string[]): void {
    for (const t of topics) {
      let set = this.topics.get(t)
      if (set === undefined) this.topics.set(t, set = new Set())
      set.add(peer)
    }
  }

  unsubscribe (peer: string, ...topics: string[]): void {
    for (const t of topics) this.topics.get(t)?.delete(peer)
  }

  /** A disconnect: gossipsub drops the peer from every topic. */
  disconnect (peer: string): void {
    for (const set of this.topics.values()) set.delete(peer)
  }

  getSubscribers (topic: string): unknown[] {
    this.calls++
    return [...this.topics.get(topic) ?? []].map(id => ({ toString: () => id }))
  }
}

const SELF = '12D3KooWSelf000000000000000000000000000000000000self'
const peer = (i: number): string => `12D3KooWPeer${String(i).padStart(40, '0')}`
/** What a node or client of each mode subscribes to (core/fleet/gossip.ts start() and syncFollowed()). */
const TOPICS: Record<Dissemination, string[]> = {
  fleet: [FLEET_TOPIC, FLEET_RELEASE_TOPIC],
  'per-cell': [MEMBERS_TOPIC, FLEET_RELEASE_TOPIC, cellTopic('billing')]
}

function setup (dissemination: Dissemination, init: Partial<DisseminationWatchInit> = {}) {
  const clock = new ManualClock()
  const subs = new Subscribers()
  const reports: DisseminationMismatchError[] = []
  const watch = new DisseminationWatch({ pubsub: subs, dissemination, clock, selfId: SELF, onMismatch: (err) => { reports.push(err) }, ...init })
  return { clock, subs, reports, watch }
}

describe('DisseminationWatch', () => {
  for (const ours of ['fleet', 'per-cell'] as const) {
    const theirs: Dissemination = ours === 'fleet' ? 'per-cell' : 'fleet'
    it(`${ours} mode: a peer of the other mode is reported once, with what to do; nodes and clients of the same mode never`, () => {
      const { subs, reports, watch } = setup(ours)
      // Full nodes and clients of this mode subscribe to exactly the same topics.
      subs.subscribe(peer(1), ...TOPICS[ours])
      subs.subscribe(peer(2), ...TOPICS[ours])
      subs.subscribe(SELF, ...TOPICS[theirs])
      watch.check()
      expect(reports).toEqual([])
      subs.subscribe(peer(3), ...TOPICS[theirs])
      for (let i = 0; i < 10; i++) watch.check()
      expect(reports).toHaveLength(1)
      const [err] = reports
      expect(err).toBeInstanceOf(DisseminationMismatchError)
      expect(err.name).toBe('DisseminationMismatchError')
      expect(DisseminationMismatchError.retry).toBe('never')
      expect({ peerId: err.peerId, theirs: err.theirs, ours: err.ours }).toEqual({ peerId: peer(3), theirs, ours })
      const words = { fleet: 'per fleet', 'per-cell': 'per cell' }
      expect(err.message).toBe(`node …${peer(3).slice(-6)} disseminates ${words[theirs]}, this node ${words[ours]}: they do not see each other's replicas; ` +
        'start every node and client of a fleet with the same --dissemination (or CELL_DISSEMINATION; docs/biology.md, "Scale")')
      expect(watch.peers().map(p => [p.peerId, p.theirs, p.reported])).toEqual([[peer(3), theirs, true]])
      expect(watch.stats()).toMatchObject({ peers: 1, reports: 1 })
    })
  }

  it('a peer that reads both record topics (ours too) is not a mismatch', () => {
    const { subs, reports, watch } = setup('fleet')
    subs.subscribe(peer(1), MEMBERS_TOPIC, FLEET_TOPIC, FLEET_RELEASE_TOPIC)
    watch.check()
    expect(reports).toEqual([])
    expect(watch.peers()).toEqual([])
    // It leaves our topic: now it reads only the other mode's.
    subs.unsubscribe(peer(1), FLEET_TOPIC)
    watch.check()
    expect(reports.map(r => r.peerId)).toEqual([peer(1)])
  })

  it('an unsubscribe or a disconnect clears the entry; a peer back after reportAgainMs is reported again', () => {
    const { clock, subs, reports, watch } = setup('per-cell')
    subs.subscribe(peer(1), FLEET_TOPIC)
    subs.subscribe(peer(2), FLEET_TOPIC)
    watch.check()
    expect(watch.peers().map(p => p.peerId)).toEqual([peer(1), peer(2)])
    subs.unsubscribe(peer(1), FLEET_TOPIC)
    subs.disconnect(peer(2))
    watch.check()
    expect(watch.peers()).toEqual([])
    expect(watch.stats().peers).toBe(0)
    // Back at once: tracked again, not reported again (a peer that comes and goes is no flood).
    subs.subscribe(peer(1), FLEET_TOPIC)
    watch.check()
    expect(watch.peers().map(p => [p.peerId, p.reported])).toEqual([[peer(1), true]])
    expect(reports).toHaveLength(2)
    // Gone, and back after reportAgainMs: a new appearance, reported again.
    subs.disconnect(peer(1))
    watch.check()
    clock.advance(300_000)
    subs.subscribe(peer(1), FLEET_TOPIC)
    watch.check()
    expect(reports.map(r => r.peerId)).toEqual([peer(1), peer(2), peer(1)])
  })

  it('tracks at most maxPeers (those seen first stay, the rest counted) and reports at most reportsPerMinute', () => {
    const { clock, subs, reports, watch } = setup('fleet')
    for (let i = 0; i < 100; i++) subs.subscribe(peer(i), MEMBERS_TOPIC)
    watch.check()
    expect(watch.peers()).toHaveLength(64)
    expect(watch.stats()).toMatchObject({ peers: 64, untracked: 36, reports: 16, deferred: 48 })
    expect(reports.map(r => r.peerId)).toEqual(Array.from({ length: 16 }, (_, i) => peer(i)))
    // The rest wait for the budget, in order; none twice.
    clock.advance(30_000)
    watch.check()
    expect(reports).toHaveLength(24)
    clock.advance(30_000)
    watch.check()
    expect(reports).toHaveLength(32)
    for (let m = 0; m < 2; m++) { clock.advance(60_000); watch.check() }
    expect(reports).toHaveLength(64)
    expect(new Set(reports.map(r => r.peerId)).size).toBe(64)
    expect(watch.stats().deferred).toBe(48)
    // Tracked peers leave: room for the untracked ones, which are reported in turn.
    for (let i = 0; i < 10; i++) subs.disconnect(peer(i))
    clock.advance(60_000)
    watch.check()
    expect(watch.peers()).toHaveLength(64)
    expect(watch.stats().untracked).toBe(26)
    expect(reports.slice(64).map(r => r.peerId)).toEqual(Array.from({ length: 10 }, (_, i) => peer(64 + i)))
  })

  it('a flood of subscription changes makes no flood of reports (or of work)', () => {
    const { clock, subs, reports, watch } = setup('fleet')
    subs.subscribe(peer(1), FLEET_TOPIC, FLEET_RELEASE_TOPIC)
    // One hostile peer toggles its subscription thousands of times between two heartbeats, and at every heartbeat.
    for (let i = 0; i < 5000; i++) {
      subs.subscribe(peer(2), MEMBERS_TOPIC)
      subs.unsubscribe(peer(2), MEMBERS_TOPIC)
    }
    watch.check()
    expect(reports).toEqual([])
    for (let s = 0; s < 200; s++) {
      subs.subscribe(peer(2), MEMBERS_TOPIC)
      clock.advance(500)
      watch.check()
      subs.unsubscribe(peer(2), MEMBERS_TOPIC)
      clock.advance(500)
      watch.check()
    }
    expect(reports.map(r => r.peerId)).toEqual([peer(2)])
    // Two subscriber lists read per heartbeat, whatever the churn.
    expect(subs.calls).toBeLessThanOrEqual(2 * 401)
    // Many identities, each appearing once: bounded by the per-minute budget.
    for (let i = 100; i < 1100; i++) subs.subscribe(peer(i), MEMBERS_TOPIC)
    for (let s = 0; s < 10; s++) { clock.advance(1000); watch.check() }
    expect(reports.length).toBeLessThanOrEqual(1 + 16 + 3)
  })

  it('a listener that throws does not stop the watch', () => {
    const clock = new ManualClock()
    const subs = new Subscribers()
    const seen: string[] = []
    const watch = new DisseminationWatch({ pubsub: subs, dissemination: 'fleet', clock, selfId: SELF, onMismatch: (err) => { seen.push(err.peerId); throw new Error('listener bug') } })
    subs.subscribe(peer(1), MEMBERS_TOPIC)
    subs.subscribe(peer(2), MEMBERS_TOPIC)
    expect(() => { watch.check() }).not.toThrow()
    expect(seen).toEqual([peer(1), peer(2)])
  })
})

/** A FleetPubSub whose subscriber table is a Subscribers. */
class FakePubSub extends Subscribers implements FleetPubSub {
  readonly topicValidators = new Map<string, TopicValidatorFn>()
  readonly mine = new Set<string>()
  subscribe (peerOrTopic: string, ...topics: string[]): void {
    if (topics.length === 0) this.mine.add(peerOrTopic)
    else super.subscribe(peerOrTopic, ...topics)
  }

  unsubscribe (peerOrTopic: string, ...topics: string[]): void {
    if (topics.length === 0) this.mine.delete(peerOrTopic)
    else super.unsubscribe(peerOrTopic, ...topics)
  }

  async publish (): Promise<unknown> { return { recipients: [] } }
}

describe('FleetGossip reports peers of the other dissemination mode', () => {
  for (const ours of ['fleet', 'per-cell'] as const) {
    it(`${ours} mode: a 'dissemination-mismatch' event at the heartbeat, counted in stats(); nothing else changes`, async () => {
      const clock = new ManualClock()
      const view = new FleetView({ clock, ...(ours === 'per-cell' ? { liveness: 'members' as const } : {}) })
      const pubsub = new FakePubSub()
      const gossip = new FleetGossip({ pubsub, view, clock, privateKey: await generateKeyPair('Ed25519'), dissemination: ours })
      const events: DisseminationMismatchError[] = []
      gossip.addEventListener('dissemination-mismatch', (evt) => { events.push((evt as CustomEvent<DisseminationMismatchError>).detail) })
      gossip.start()
      const theirs: Dissemination = ours === 'fleet' ? 'per-cell' : 'fleet'
      pubsub.subscribe(peer(1), ...TOPICS[ours])
      pubsub.subscribe(peer(2), ...TOPICS[theirs])
      await gossip.tick()
      await gossip.tick()
      expect(events.map(e => [e.peerId, e.theirs, e.ours])).toEqual([[peer(2), theirs, ours]])
      expect(gossip.mismatches().map(p => p.peerId)).toEqual([peer(2)])
      expect(gossip.stats()).toMatchObject({ mismatchPeers: 1, mismatchReports: 1 })
      // This node's own subscriptions are untouched.
      expect(pubsub.mine.has(ours === 'fleet' ? FLEET_TOPIC : MEMBERS_TOPIC)).toBe(true)
      expect(pubsub.mine.has(ours === 'fleet' ? MEMBERS_TOPIC : FLEET_TOPIC)).toBe(false)
      pubsub.disconnect(peer(2))
      await gossip.tick()
      expect(gossip.stats().mismatchPeers).toBe(0)
      gossip.stop()
    })
  }
})
