// Keeps a peer connected to enough fleet peers. Full nodes keep min(keep, known fleet peers)
// connections to other full nodes; a light peer (a tab) keeps one. Lost peers are re-dialed with
// per-peer exponential backoff and jitter, so a fleet that lost a link heals on its own and a fleet
// of peers that lost the same node does not re-dial in lockstep.
//
// Why this exists: libp2p re-dials only peers tagged KEEP_ALIVE, and @libp2p/bootstrap tags its
// peers with a plain priority tag (2 minutes by default), so a connection dropped by the connection
// monitor (a ping that timed out on a busy machine), a restart or a flaky link stayed dropped and
// the fleet split silently. Kept peers get a KEEP_ALIVE tag without expiry, so the connection
// manager never prunes them and libp2p's own reconnect queue helps as well.
//
// Events: 'join' and 'leave' (CustomEvent<{ peerId: string, connected: number }>) when a fleet peer
// connects or its last connection closes; 'reconnect' (CustomEvent<{ peerId, addr }>) after a dial
// of this keeper succeeded.
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { KEEP_ALIVE, type Libp2p, type PeerId } from '@libp2p/interface'
import type { Clock, Random } from '../ports.ts'
import { backoffMs } from './backoff.ts'

const log = logger('cell:mesh:keeper')

/** The peer-store tag of kept peers: KEEP_ALIVE-prefixed (libp2p re-dials them), no expiry. */
export const KEEP_TAG = `${KEEP_ALIVE}-cell-fleet`
const KEEP_TAG_VALUE = 100

export const KEEPER_DEFAULTS = {
  keep: 8,
  minBackoffMs: 250,
  maxBackoffMs: 15_000,
  checkMs: 5_000,
  dialTimeoutMs: 5_000,
  maxDialsPerRound: 8,
  /** Peers whose failed dials are remembered (oldest forgotten first). */
  maxTrackedPeers: 1024,
  /** Candidate addresses read per round. */
  maxCandidates: 4096,
  /** Per-cell: followers to stay connected to per followed cell, at most this many groups read per round. */
  topicDials: 4,
  maxTopicGroups: 64
} as const

/** The parts of libp2p the keeper uses. */
export type KeeperLibp2p = Pick<Libp2p, 'getConnections' | 'dial' | 'addEventListener' | 'removeEventListener' | 'peerStore' | 'peerId'>

export interface PeerKeeperInit {
  libp2p: KeeperLibp2p
  clock: Clock
  random: Random
  /** Multiaddrs (with /p2p/<id>) of fleet peers worth dialing, best first. Read every round. */
  candidates: () => string[]
  /** Whether a connected peer counts as a fleet peer (a full node, not a tab or a CLI client). */
  isFleetPeer: (peerId: string) => boolean
  /** Connections to keep: at most this many, and never more than the distinct candidates known (default 8). */
  keep?: number
  minBackoffMs?: number
  maxBackoffMs?: number
  /** Periodic re-check even without events (a sleeping tab misses close events). */
  checkMs?: number
  dialTimeoutMs?: number
  /** Most peers dialed per round. */
  maxDialsPerRound?: number
  /** Tag kept peers KEEP_ALIVE in the peer store (default true). */
  tag?: boolean
  /**
   * Per-cell dissemination: groups of candidate addresses (with /p2p/<id>), one per followed cell
   * (its other followers). Besides `keep`, the keeper stays connected to at least `topicDials` peers
   * of each group (or all of a smaller one), so that a cell's topic has a mesh of its own.
   */
  topicGroups?: () => string[][]
  /** Default 4 (gossipsub's D_lo). */
  topicDials?: number
}

export interface KeeperStats { rounds: number, dials: number, failures: number, reconnects: number, joins: number, leaves: number }

interface PeerBackoff { failures: number, notBeforeMs: number }

/** The peer id a multiaddr names in its last /p2p/ component, if any. */
export function peerIdOfAddr (addr: string): string | undefined {
  const i = addr.lastIndexOf('/p2p/')
  if (i < 0) return undefined
  const id = addr.slice(i + 5).split('/')[0]
  return id === '' ? undefined : id
}

/** How many connections to aim for: `keep`, but not more than the distinct fleet peers known. */
export function keepTarget (keep: number, knownPeers: number): number {
  return Math.max(0, Math.min(keep, knownPeers))
}

export class PeerKeeper extends EventTarget {
  readonly stats: KeeperStats = { rounds: 0, dials: 0, failures: 0, reconnects: 0, joins: 0, leaves: 0 }
  private readonly init: PeerKeeperInit
  private readonly backoff = new Map<string, PeerBackoff>()
  /** Fleet peers with an open connection, as last announced by join/leave. */
  private readonly members = new Set<string>()
  private readonly tagged = new Set<string>()
  private timer: unknown
  private running = false
  private busy = false
  private abort?: AbortController
  private readonly onConnect = (): void => { this.refresh() }
  private readonly onDisconnect = (): void => {
    this.refresh()
    this.schedule(0)
  }

  constructor (init: PeerKeeperInit) {
    super()
    this.init = init
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.abort = new AbortController()
    this.init.libp2p.addEventListener('peer:connect', this.onConnect)
    this.init.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    this.refresh()
    this.schedule(0)
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.init.libp2p.removeEventListener('peer:connect', this.onConnect)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    this.init.clock.clearTimeout(this.timer)
    this.abort?.abort()
    this.members.clear()
    this.backoff.clear()
  }

  /** Re-check now, forgetting backoffs (a tab calls this on `online`; a node when its view grows). */
  nudge (): void {
    this.backoff.clear()
    this.schedule(0)
  }

  /** Fleet peers this peer has an open, unlimited connection to. */
  connectedFleetPeers (): string[] {
    return [...this.openFleetConnections().keys()]
  }

  private openFleetConnections (): Map<string, PeerId> {
    const peers = new Map<string, PeerId>()
    for (const conn of this.init.libp2p.getConnections()) {
      const id = conn.remotePeer.toString()
      if (conn.status === 'open' && conn.limits == null && this.init.isFleetPeer(id)) peers.set(id, conn.remotePeer)
    }
    return peers
  }

  /**
   * Announces fleet peers that connected or left since the last call (a peer may connect before
   * its node record arrives: the mesh calls this again when the view learns a node).
   */
  refresh (): void {
    if (!this.running) return
    const now = this.openFleetConnections()
    // Leaves first, then joins, each event with the count after it: peers found together (a node
    // restarting dials the ones it remembers at once) read 1, 2, 3, not the final count each time.
    for (const id of [...this.members]) {
      if (now.has(id)) continue
      this.members.delete(id)
      // libp2p's reconnect queue drops KEEP_ALIVE tags after its retries fail: tag again on the next join.
      this.tagged.delete(id)
      this.stats.leaves++
      this.dispatchEvent(new CustomEvent('leave', { detail: { peerId: id, connected: this.members.size } }))
    }
    for (const [id, peerId] of now) {
      if (this.members.has(id)) continue
      this.members.add(id)
      this.stats.joins++
      this.backoff.delete(id)
      this.keepTagged(id, peerId)
      this.dispatchEvent(new CustomEvent('join', { detail: { peerId: id, connected: this.members.size } }))
    }
  }

  private keepTagged (id: string, peerId: PeerId): void {
    if (this.init.tag === false || this.tagged.has(id) || this.tagged.size >= KEEPER_DEFAULTS.maxTrackedPeers) return
    this.tagged.add(id)
    this.init.libp2p.peerStore.merge(peerId, { tags: { [KEEP_TAG]: { value: KEEP_TAG_VALUE } } }).catch((err: unknown) => {
      this.tagged.delete(id)
      log('tagging %s failed: %s', id, (err as Error).message)
    })
  }

  private schedule (delayMs: number): void {
    if (!this.running) return
    this.init.clock.clearTimeout(this.timer)
    this.timer = this.init.clock.setTimeout(() => { void this.round() }, delayMs)
  }

  /** Distinct candidate peers (not self), each with its addresses in the order given. */
  private candidatePeers (): Map<string, string[]> {
    const self = this.init.libp2p.peerId.toString()
    const peers = new Map<string, string[]>()
    for (const addr of this.init.candidates().slice(0, KEEPER_DEFAULTS.maxCandidates)) {
      const id = peerIdOfAddr(addr)
      if (id === undefined || id === self) continue
      const list = peers.get(id)
      if (list === undefined) peers.set(id, [addr])
      else if (!list.includes(addr) && list.length < 16) list.push(addr)
    }
    return peers
  }

  private async round (): Promise<void> {
    if (!this.running || this.busy) return
    this.refresh()
    const checkMs = this.init.checkMs ?? KEEPER_DEFAULTS.checkMs
    const candidates = this.candidatePeers()
    const connected = new Set(this.connectedFleetPeers())
    const knownPeers = new Set([...candidates.keys(), ...connected]).size
    const target = keepTarget(this.init.keep ?? KEEPER_DEFAULTS.keep, knownPeers)
    const missing = target - connected.size
    const now = this.init.clock.now()
    const topicPicks = this.topicPicks(connected, now)
    if (missing <= 0 && topicPicks.length === 0) {
      this.schedule(checkMs)
      return
    }
    // Peers that failed least first (untried ones before those that just failed), in candidate order.
    const failures = (id: string): number => this.backoff.get(id)?.failures ?? 0
    const dialable = [...candidates].filter(([id]) => !connected.has(id) && !topicPicks.some(([t]) => t === id) && (this.backoff.get(id)?.notBeforeMs ?? 0) <= now)
      .sort(([a], [b]) => failures(a) - failures(b))
    this.busy = true
    this.stats.rounds++
    let gained = 0
    try {
      const maxDials = this.init.maxDialsPerRound ?? KEEPER_DEFAULTS.maxDialsPerRound
      const picks = [...topicPicks, ...dialable.slice(0, Math.max(0, missing))].slice(0, maxDials)
      const results = await Promise.all(picks.map(async ([id, addrs]) => await this.dialPeer(id, addrs)))
      gained = results.filter(Boolean).length
    } finally {
      this.busy = false
    }
    if (!this.running) return
    this.refresh()
    const nowConnected = new Set(this.connectedFleetPeers())
    const stillMissing = target - nowConnected.size
    // Short of the target: come back at once while untried candidates remain, else when the first
    // backoff ends; never later than the periodic check.
    let delay = checkMs
    if (stillMissing > 0) {
      const at = this.init.clock.now()
      const waits = [...candidates.keys()].filter(id => !nowConnected.has(id)).map(id => (this.backoff.get(id)?.notBeforeMs ?? at) - at)
      const soonest = waits.length > 0 ? Math.max(0, Math.min(...waits)) : checkMs
      delay = Math.min(checkMs, Math.max(this.limits().minMs, soonest))
      log('%d of %d fleet connections (%d gained); next round in %d ms', target - stillMissing, target, gained, delay)
    }
    this.schedule(delay)
  }

  /**
   * Per-cell: followers of followed cells to dial so that each cell has `topicDials` of them
   * connected (or all of a smaller group), skipping peers in backoff; each peer once.
   */
  private topicPicks (connected: Set<string>, now: number): Array<[string, string[]]> {
    const groups = this.init.topicGroups?.().slice(0, KEEPER_DEFAULTS.maxTopicGroups) ?? []
    const want = this.init.topicDials ?? KEEPER_DEFAULTS.topicDials
    const self = this.init.libp2p.peerId.toString()
    const picked = new Map<string, string[]>()
    for (const group of groups) {
      const byPeer = new Map<string, string[]>()
      for (const addr of group.slice(0, KEEPER_DEFAULTS.maxCandidates)) {
        const id = peerIdOfAddr(addr)
        if (id === undefined || id === self) continue
        const list = byPeer.get(id) ?? []
        if (list.length < 16) list.push(addr)
        byPeer.set(id, list)
      }
      let have = [...byPeer.keys()].filter(id => connected.has(id) || picked.has(id)).length
      const need = Math.min(want, byPeer.size)
      for (const [id, addrs] of byPeer) {
        if (have >= need) break
        if (connected.has(id) || picked.has(id) || (this.backoff.get(id)?.notBeforeMs ?? 0) > now) continue
        picked.set(id, addrs)
        have++
      }
    }
    return [...picked]
  }

  private limits (): { minMs: number, maxMs: number } {
    return { minMs: this.init.minBackoffMs ?? KEEPER_DEFAULTS.minBackoffMs, maxMs: this.init.maxBackoffMs ?? KEEPER_DEFAULTS.maxBackoffMs }
  }

  private async dialPeer (id: string, addrs: string[]): Promise<boolean> {
    for (const addr of addrs.slice(0, 4)) {
      if (!this.running) return false
      this.stats.dials++
      const signal = AbortSignal.any([this.abort!.signal, AbortSignal.timeout(this.init.dialTimeoutMs ?? KEEPER_DEFAULTS.dialTimeoutMs)])
      try {
        const conn = await this.init.libp2p.dial(multiaddr(addr), { signal })
        this.stats.reconnects++
        this.backoff.delete(id)
        log('connected to %s via %s', conn.remotePeer, addr)
        this.dispatchEvent(new CustomEvent('reconnect', { detail: { peerId: conn.remotePeer.toString(), addr } }))
        return true
      } catch (err) {
        this.stats.failures++
        log('dial %s failed: %s', addr, (err as Error).message)
      }
    }
    const failures = (this.backoff.get(id)?.failures ?? 0) + 1
    this.backoff.delete(id)
    if (this.backoff.size >= KEEPER_DEFAULTS.maxTrackedPeers) this.backoff.delete(this.backoff.keys().next().value as string)
    this.backoff.set(id, { failures, notBeforeMs: this.init.clock.now() + backoffMs(failures, this.limits(), this.init.random) })
    return false
  }
}
