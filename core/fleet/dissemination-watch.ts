// Finds connected peers that disseminate fleet records the other way (docs/biology.md "Scale"). A
// fleet whose nodes disagree on the mode splits in silence: a fleet-mode node gossips on the fleet
// topic, a per-cell node on the members and cell topics, so neither sees the other's replicas and
// each may start replicas the other already runs. Nodes and clients of one mode subscribe to the
// same record topic (fleet: FLEET_TOPIC; per-cell: MEMBERS_TOPIC; both: the release topic), so the
// signal is a peer subscribed to the other mode's record topic and not to ours.
//
// Subscriptions are the peer's own claims about itself: gossipsub takes them from the peer's Noise-
// authenticated connection, so a peer can lie only about itself, but it is unsigned, unverified
// input. Hence the consequence is a report and nothing else (no stop, no change of decisions), and
// everything is bounded: at most maxPeers peers tracked (the ones tracked first stay; more are
// counted), each reported once per appearance and, if it comes and goes, at most once per
// reportAgainMs, and at most reportsPerMinute reports in all (the rest wait their turn). A signed
// record was considered instead: a fleet-mode view drops a per-cell node's node record as expired
// (it is re-signed only every 12 h) and receives no member record unless it happens to pull from a
// per-cell node, so no cheap authenticated signal exists in both directions.
//
// The watch reads gossipsub's subscriber lists once per heartbeat (FleetGossip calls check()): a
// flood of subscription changes costs one comparison of two lists a heartbeat, not a report each.
import { logger } from '@libp2p/logger'
import type { Clock } from '../ports.ts'
import { DisseminationMismatchError } from './errors.ts'
import { FLEET_TOPIC, MEMBERS_TOPIC } from './records.ts'
import type { Dissemination } from './records.ts'

const log = logger('cell:fleet:dissemination')

/** The part of gossipsub the watch reads. */
export interface SubscriberSource {
  /** Peers known to subscribe to `topic` (gossipsub drops a peer from its topics when it disconnects). */
  getSubscribers?: (topic: string) => unknown[]
}

export interface DisseminationWatchInit {
  pubsub: SubscriberSource
  /** This node's mode. */
  dissemination: Dissemination
  clock: Clock
  selfId: string
  /** Told once per appearance of a peer of the other mode (within the limits below). */
  onMismatch: (err: DisseminationMismatchError) => void
  fleetTopic?: string
  membersTopic?: string
  /** Peers of the other mode tracked at once (default 64). */
  maxPeers?: number
  /** Reports at most this many a minute (default 16; bursts up to as many). */
  reportsPerMinute?: number
  /** A peer reported and gone is not reported again for this long (default 5 min). */
  reportAgainMs?: number
}

export interface MismatchPeer {
  peerId: string
  theirs: Dissemination
  /** When this node first saw it in the other mode's topic (this appearance). */
  sinceMs: number
  /** Reported (or within reportAgainMs of its last report); false: waiting for the report budget. */
  reported: boolean
}

export interface DisseminationWatchStats {
  /** Peers of the other mode connected now (tracked, at most maxPeers). */
  peers: number
  /** Reports made. */
  reports: number
  /** Peers of the other mode not tracked at the last check because maxPeers were already. */
  untracked: number
  /** Reports held back at least once by the per-minute budget. */
  deferred: number
}

/** Peers whose last report is remembered for reportAgainMs (oldest forgotten first). */
const MAX_REMEMBERED = 256

export class DisseminationWatch {
  private readonly init: DisseminationWatchInit
  private readonly theirs: Dissemination
  private readonly theirTopic: string
  private readonly ourTopic: string
  private readonly maxPeers: number
  private readonly perMinute: number
  private readonly againMs: number
  /** Tracked peers of the other mode, in order of appearance. */
  private readonly tracked = new Map<string, MismatchPeer>()
  /** Peer id → when it was last reported (bounded by MAX_REMEMBERED). */
  private readonly lastReported = new Map<string, number>()
  private tokens: number
  private tokensAtMs: number
  private readonly counters = { reports: 0, untracked: 0, deferred: 0 }
  private readonly deferredOnce = new Set<string>()

  constructor (init: DisseminationWatchInit) {
    this.init = init
    const fleetTopic = init.fleetTopic ?? FLEET_TOPIC
    const membersTopic = init.membersTopic ?? MEMBERS_TOPIC
    this.theirs = init.dissemination === 'fleet' ? 'per-cell' : 'fleet'
    this.theirTopic = init.dissemination === 'fleet' ? membersTopic : fleetTopic
    this.ourTopic = init.dissemination === 'fleet' ? fleetTopic : membersTopic
    this.maxPeers = Math.max(1, init.maxPeers ?? 64)
    this.perMinute = Math.max(1, init.reportsPerMinute ?? 16)
    this.againMs = Math.max(0, init.reportAgainMs ?? 300_000)
    this.tokens = this.perMinute
    this.tokensAtMs = init.clock.now()
  }

  /** Compares gossipsub's subscribers with the tracked peers: reports new ones, forgets gone ones. */
  check (now: number = this.init.clock.now()): void {
    const get = this.init.pubsub.getSubscribers
    if (get === undefined) return
    const theirs = new Set<string>()
    for (const p of get.call(this.init.pubsub, this.theirTopic)) {
      const id = String(p)
      if (id !== this.init.selfId) theirs.add(id)
    }
    if (theirs.size > 0) {
      // A peer subscribed to both record topics reads ours too: not a mismatch.
      for (const p of get.call(this.init.pubsub, this.ourTopic)) theirs.delete(String(p))
    }
    for (const id of [...this.tracked.keys()]) {
      if (theirs.has(id)) continue
      this.tracked.delete(id)
      this.deferredOnce.delete(id)
      log('node %s no longer disseminates %s here (unsubscribed or gone)', id, this.theirs)
    }
    let untracked = 0
    for (const id of theirs) {
      if (this.tracked.has(id)) continue
      if (this.tracked.size >= this.maxPeers) { untracked++; continue }
      const last = this.lastReported.get(id)
      // Came back within reportAgainMs of its last report: tracked again, not reported again.
      this.tracked.set(id, { peerId: id, theirs: this.theirs, sinceMs: now, reported: last !== undefined && now - last < this.againMs })
    }
    if (untracked > 0 && this.counters.untracked === 0) log('%d more peers of the other dissemination mode are connected (at most %d tracked)', untracked, this.maxPeers)
    this.counters.untracked = untracked
    this.report(now)
  }

  private report (now: number): void {
    this.tokens = Math.min(this.perMinute, this.tokens + (now - this.tokensAtMs) * this.perMinute / 60_000)
    this.tokensAtMs = now
    for (const peer of this.tracked.values()) {
      if (peer.reported) continue
      if (this.tokens < 1) {
        if (!this.deferredOnce.has(peer.peerId)) {
          this.deferredOnce.add(peer.peerId)
          this.counters.deferred++
        }
        continue
      }
      this.tokens--
      peer.reported = true
      this.deferredOnce.delete(peer.peerId)
      this.lastReported.delete(peer.peerId)
      if (this.lastReported.size >= MAX_REMEMBERED) this.lastReported.delete(this.lastReported.keys().next().value as string)
      this.lastReported.set(peer.peerId, now)
      this.counters.reports++
      const err = new DisseminationMismatchError(peer.peerId, this.theirs, this.init.dissemination)
      log('%s', err.message)
      try {
        this.init.onMismatch(err)
      } catch (e) {
        log.error('a dissemination mismatch listener failed: %e', e)
      }
    }
  }

  /** The peers of the other mode connected now, in order of appearance (at most maxPeers). */
  peers (): MismatchPeer[] {
    return [...this.tracked.values()].map(p => ({ ...p }))
  }

  stats (): DisseminationWatchStats {
    return { peers: this.tracked.size, ...this.counters }
  }

  /** Forgets the tracked peers (FleetGossip.stop): a restart reports those still there again. */
  clear (): void {
    this.tracked.clear()
    this.deferredOnce.clear()
  }
}
