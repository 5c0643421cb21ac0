// The autonomic loop of one full node: every tick, for every cell with an accepted release, map the
// gossiped fleet view onto the pure biology decision functions and carry out what they say for this
// node only (spawn, volunteer after jitter, drain its own oldest replicas, restart, halt).
import { logger } from '@libp2p/logger'
import { decideCell, confirmSpawn, initialCellState, mergeDesired, resolveParams, resolveTarget, retiredBy, standbyCandidates, type BiologyView, type BiologyParams, type CellState, type Action, type Policy, type HaltRecord, type HealthEvent } from '../core/biology/index.ts'
import { LIMITS, type FleetView, type NodeHalt, type NodeRecord } from '../core/fleet/index.ts'
import type { HostGrantCheck } from '../core/mesh/index.ts'
import { Repeater, type Clock, type Random } from '../core/ports.ts'
import type { ReleaseStore, PreparedRelease } from './release-store.ts'
import type { ReplicaSet } from './replica-set.ts'
import { ClaimsHeldError, ClaimOwnerAwaitedError, ClaimVotersUnknownError } from './volumes/volume-manager.ts'
import { CellError } from '../core/errors.ts'

const log = logger('cell:autonomic')

/** Cells whose last spawn error the loop keeps for `cell status`. */
export const MAX_CELL_ERRORS = 256

/**
 * Node records carry trusted authorities as short role tags, for people reading the fleet. They are
 * claims, not proof: who may host a cell is decided from the host grants a node gossips (verified).
 */
export const TRUST_ROLE_PREFIX = 'trust-'
export function trustRoles (authorities: Iterable<string>): string[] {
  return [...authorities].slice(0, 6).map(a => TRUST_ROLE_PREFIX + a.slice(0, 16))
}

/**
 * The release whose Cell.toml policy governs the cell: the target the biology resolves (a rollback's
 * desired record, the newest release, or the one before a halted one), not merely the newest
 * prepared release - after `cell rollback` the fleet runs by the rolled-back release's
 * [cell.biology]. Falls back to the newest prepared release while the target's artifact is not here.
 */
export function policyRelease (cell: string, prepared: readonly PreparedRelease[], view: BiologyView, state: CellState): PreparedRelease {
  const desired = mergeDesired(cell, state.desired, view.desired).record
  const target = resolveTarget({ cell, releases: view.releases, desired, halts: state.halts }).target
  return (target !== undefined ? prepared.find(r => r.digest === target.digest) : undefined) ?? prepared[prepared.length - 1]
}

export interface AutonomicLoopInit {
  selfId: string
  view: FleetView
  releases: ReleaseStore
  replicas: ReplicaSet
  clock: Clock
  random: Random
  tickMs?: number
  /** May this node host cells of `authority` (trusts it and holds a host grant)? */
  canHost: (authority: string) => boolean
  /** Node-level tuning of the decisions (e.g. a shorter scale-down window); defaults otherwise. */
  params?: Partial<BiologyParams>
  /**
   * Does a node hold a host grant from an authority? Which nodes are eligible to host a cell, and
   * whose gossiped halts count, are decided with it (never from a node's own role claims).
   */
  hostGrant: HostGrantCheck
  /** Can a node run this release (e.g. its sandbox level meets the cell's requirement)? Default: yes. */
  nodeSuits?: (node: NodeRecord, release: PreparedRelease) => boolean
  /** Why no node in view can run this release at all (e.g. `NoStorageClassError: …`), said first among the cell's reasons. */
  unplaceable?: (release: PreparedRelease) => string | undefined
  /**
   * How long a full node that stopped heartbeating still counts as part of the fleet when this node
   * asks whether it is on a minority side (default 2 min). Nodes that said they were leaving do not.
   */
  membershipMemoryMs?: number
  /**
   * Publish this node's heartbeat now, not at its next tick: called as a spawn starts, so that other
   * volunteers for the same deficit see the new replica before they confirm theirs (they wait a
   * random 0–2 s; a heartbeat a second later left room for two replicas where one was wanted).
   */
  announce?: () => void
  /**
   * Per-cell dissemination (docs/biology.md "Scale"): this node decides only for the cells it
   * follows — those it hosts a replica of and those it is a standby candidate for — and only
   * `joinMs` (default 1 s) after it began to follow one (time for the cell's records to arrive).
   * `onFollowChange` is told when that set changed (the mesh subscribes and unsubscribes).
   */
  following?: { joinMs?: number, onFollowChange?: () => void, /** Default STANDBY_CANDIDATES (8). */ candidates?: number }
}

/** Full nodes remembered for the minority check (oldest forgotten first). */
const MAX_MEMBERS = 4096

/** Crash events remembered after their tombstones leave the view (they count within the halt window). */
const MAX_EVENTS = 2048

/**
 * Detail of the loop's 'notice' events: what an operator watching `cell up` should see (a replica
 * this node started or restarted and why, one it drains and why, a cell retired or back, a release
 * halted or marked crash-looping), one line each, once. A spawn that fails is an error on stderr.
 */
export interface LoopNotice { kind: 'started' | 'restarted' | 'draining' | 'retired' | 'unretired' | 'halted', cell: string, text: string }

/** `text` cut to `max` characters, ending in … when cut (a reader sees it was cut, not a sentence ending mid-word). */
function clip (text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

/**
 * How a failed spawn is logged: a named error of ours (a claim without quorum during a hand-over, a
 * sandbox that would not start) is one line, its name and message, however often the loop retries;
 * anything else is a bug and keeps its stack.
 */
export function spawnFailureText (err: unknown): string {
  if (err instanceof CellError) return `${err.name}: ${err.message}`
  return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err)
}

/** A spawn's reason without how the volunteer race went (the draw and the jitter waited). */
function spawnWhy (reason: string): string {
  return reason.replace(/; volunteered for \S+ with p=[\d.]+ among \d+ eligible/, '').replace(/; confirmed after \d+ ms$/, '')
}

export class AutonomicLoop extends EventTarget {
  private readonly init: AutonomicLoopInit
  private readonly states = new Map<string, CellState>()
  private readonly pendingVolunteer = new Set<string>()
  private repeater?: Repeater
  private ticking = false
  /** Releases this node halted, with the metric and reason the decision gave (bounded). */
  readonly halted = new Map<string, { metric: string, reason: string, digest: string }>()
  /** Cells retired (`cell retire`) and still retired at the last tick, with who retired them. */
  readonly retired = new Map<string, { authority: string, seq: number }>()
  /**
   * `declined`: spawns not started because another node holds every claim of the cell (a stateful
   * cell's volunteer race lost, or its owner came back), or because this node does not know an
   * existing claim's voters and leaves it to one that does: the claims working, not a failure.
   */
  readonly counters = { ticks: 0, spawns: 0, drains: 0, halts: 0, volunteers: 0, failures: 0, declined: 0 }
  /** Why the last tick decided what it did, per cell (for `status` and failing tests). */
  readonly lastReasons = new Map<string, string[]>()
  /** The last error of a tick or of a spawn, with when it happened. */
  lastError?: { atMs: number, message: string }
  /** The last error of a tick (not of one cell's spawn): what `cell status` shows for every cell. */
  lastTickError?: { atMs: number, message: string }
  /**
   * The last spawn error per cell, newest last, at most MAX_CELL_ERRORS cells: `cell status <cell>`
   * shows a cell's own, never another cell's (which may be another authority's).
   */
  readonly cellErrors = new Map<string, { atMs: number, message: string }>()
  /**
   * The last spawn per cell the claims declined (another node holds the claim, a former owner is
   * awaited, this node does not know the voters), bounded like cellErrors and kept apart from them:
   * a decline must neither look like a failure nor hide one.
   */
  readonly cellDeclines = new Map<string, { atMs: number, message: string }>()
  private readonly events = new Map<string, HealthEvent>()
  /**
   * This node's crashed replicas already restarted. Their tombstones keep telling the fleet about the
   * crash, but the decisions must not see them as still waiting for a restart (as the simulator
   * drops a restarted replica): else a fresh replica would start every backoff period until the
   * tombstone expired. Entries go when the tombstone does.
   */
  private readonly restarted = new Set<string>()
  private readonly gossipedHalts = new Map<string, HaltRecord[]>()
  /** Per cell, the nodes whose gossiped host grants were verified at the last tick, with the authorities granting them. */
  private readonly grantedHosts = new Map<string, Map<string, string[]>>()
  /** Full nodes seen lately (not leaving), with when: the fleet a minority side is measured against. */
  private readonly members = new Map<string, number>()
  /** Per member node and cell, its starting or ready replicas when last counted in view, and when. */
  private readonly lastReplicas = new Map<string, Map<string, { count: number, atMs: number }>>()
  /** Members out of sight at the last `membership()`. */
  private hidden: string[] = []
  /** Per-cell dissemination: the cells this node follows, since when (bounded by the release store's cells). */
  private readonly followSince = new Map<string, number>()

  constructor (init: AutonomicLoopInit) {
    super()
    this.init = init
  }

  /**
   * Per-cell dissemination: does this node follow `cell` (host one of its replicas, or rank among
   * its standby candidates)? Without `following` in the init, every cell is followed.
   */
  follows (cell: string): boolean {
    return this.init.following === undefined || this.followSince.has(cell) || this.init.replicas.list(cell).length > 0
  }

  /** The nodes hosting `cell` as the member records say (this node: its own replicas). */
  private hostsOf (cell: string): Set<string> {
    const hosts = new Set<string>()
    if (this.init.replicas.list(cell).some(r => r.state !== 'stopped' && r.state !== 'crashed')) hosts.add(this.init.selfId)
    for (const id of this.init.view.hostsOf(cell)) if (id !== this.init.selfId) hosts.add(id)
    // A replica record in view counts too (a member record may lag its node's first replica).
    for (const i of this.init.view.instances(cell)) if (i.state === 'starting' || i.state === 'ready' || i.state === 'draining') hosts.add(i.nodeId)
    return hosts
  }

  /**
   * Per-cell dissemination: the biology view of `cell` narrowed to its followers (hosts and standby
   * candidates), so that `e` in p = d / e counts the candidates, and whether this node follows it.
   */
  private narrowToFollowers (cell: string, view: BiologyView, authority: string | undefined, params: Partial<BiologyParams> | undefined): { view: BiologyView, follows: boolean } {
    const hosts = this.hostsOf(cell)
    const candidates = standbyCandidates(cell, view.nodes, (id) => hosts.has(id), authority, resolveParams(params), this.init.following?.candidates)
    const self = this.init.selfId
    return {
      view: { ...view, nodes: view.nodes.filter(n => n.id === self || hosts.has(n.id) || candidates.has(n.id)) },
      follows: hosts.has(self) || candidates.has(self)
    }
  }

  /**
   * Per-cell dissemination: notes whether this node follows `cell` now (a node that stops following
   * forgets what it counted for the cell; its desired record and halts stay) and whether it has
   * followed it for joinMs, so that the cell's records had time to arrive. Returns whether to decide.
   */
  private followCell (cell: string, follows: boolean, hostsHere: boolean): { decide: boolean, changed: boolean } {
    if (!follows) {
      if (!this.followSince.delete(cell)) return { decide: false, changed: false }
      const state = this.states.get(cell)
      if (state !== undefined) this.states.set(cell, { ...initialCellState(cell), desired: state.desired, halts: state.halts })
      return { decide: false, changed: true }
    }
    const nowMs = this.init.clock.now()
    const changed = !this.followSince.has(cell)
    if (changed) this.followSince.set(cell, nowMs)
    return { decide: hostsHere || nowMs >= this.followSince.get(cell)! + (this.init.following?.joinMs ?? 1000), changed }
  }

  /** The replica count the last tick aimed for (for `cell status` and `cell top`). */
  desiredReplicas (cell: string): number | undefined {
    return this.states.get(cell)?.desiredReplicas
  }

  private notice (detail: LoopNotice): void {
    this.dispatchEvent(new CustomEvent<LoopNotice>('notice', { detail }))
  }

  start (): void {
    this.repeater ??= new Repeater({ clock: this.init.clock, everyMs: this.init.tickMs ?? 1000, work: async () => { await this.tick() }, onError: (err) => { log.error('tick failed: %e', err) } })
    this.repeater.start()
  }

  stop (): void {
    this.repeater?.stop()
  }

  private get running (): boolean { return this.repeater?.running === true }

  /**
   * Live full nodes in view now (heard lately, see below), and full nodes seen within
   * `membershipMemoryMs` that did not leave (their last record carried the `leaving` role): a node
   * seeing less than half is a minority.
   */
  membership (): { live: number, known: number } {
    const nowMs = this.init.clock.now()
    const { view } = this.init
    // Under heartbeat liveness the nodes cut off together leave this view up to a heartbeat apart (each
    // one's last record arrived at its own phase): when the first of them goes (often a replica's node,
    // the deficit that makes this node volunteer), the rest are still in view though silent for two
    // heartbeats. Counted live, they made a minority side look like a majority for that second, and it
    // started a replica (the healed fleet then ran max_replicas + 1). So only nodes heard within half
    // the node TTL count as live here; one whose heartbeat is that late is in sight but not counted.
    const heardSince = view.liveness === 'heartbeat' && typeof view.lastSeenMs === 'function' && typeof view.nodeTtlMs === 'number'
      ? nowMs - view.nodeTtlMs / 2
      : undefined
    let live = 0
    const inSight = new Set<string>()
    for (const n of view.nodes(nowMs)) {
      inSight.add(n.nodeId)
      if (!n.roles.includes('full')) continue
      if (n.roles.includes('leaving')) { this.members.delete(n.nodeId); continue }
      if (heardSince === undefined || n.nodeId === this.init.selfId || (view.lastSeenMs('node', n.nodeId) ?? nowMs) >= heardSince) live++
      this.members.delete(n.nodeId)
      if (this.members.size >= MAX_MEMBERS) this.members.delete(this.members.keys().next().value as string)
      this.members.set(n.nodeId, nowMs)
    }
    const horizon = nowMs - (this.init.membershipMemoryMs ?? 120_000)
    for (const [id, at] of this.members) if (at < horizon) this.members.delete(id)
    // What each node in sight runs now; what a node out of sight ran when it was last seen.
    const now = new Map<string, Map<string, number>>()
    for (const i of this.init.view.instances(undefined, nowMs)) {
      if ((i.state !== 'starting' && i.state !== 'ready') || !inSight.has(i.nodeId) || !this.members.has(i.nodeId)) continue
      const own = now.get(i.nodeId) ?? new Map<string, number>()
      own.set(i.cell, (own.get(i.cell) ?? 0) + 1)
      now.set(i.nodeId, own)
    }
    // A node's instance records and its node record arrive apart and expire apart: a replica missing
    // from a node still in sight may be gone (drained) or its record may only have expired a moment
    // before the node's own. Forget it only after that grace, or a node cut off just then would hide
    // a replica that still runs behind the partition (and the majority would grow past the cap).
    const graceMs = (this.init.view.instanceTtlMs ?? 3000) + (this.init.tickMs ?? 1000)
    for (const id of inSight) {
      if (!this.members.has(id)) continue
      const seen = now.get(id)
      const last = this.lastReplicas.get(id) ?? new Map<string, { count: number, atMs: number }>()
      for (const [cell, count] of seen ?? []) {
        const before = last.get(cell)
        if (before === undefined || count >= before.count || nowMs - before.atMs > graceMs) last.set(cell, { count, atMs: nowMs })
      }
      for (const [cell, entry] of last) if (seen?.has(cell) !== true && nowMs - entry.atMs > graceMs) last.delete(cell)
      this.lastReplicas.set(id, last)
    }
    for (const id of this.lastReplicas.keys()) if (!this.members.has(id)) this.lastReplicas.delete(id)
    this.hidden = [...this.members.keys()].filter(id => !inSight.has(id))
    return { live, known: Math.max(live, this.members.size) }
  }

  /** Replicas of `cell` last seen on member nodes now out of sight. */
  outOfSight (cell: string): number {
    let n = 0
    for (const id of this.hidden) n += this.lastReplicas.get(id)?.get(cell)?.count ?? 0
    return n
  }

  /**
   * The biology parameters for `cell`: under per-cell dissemination a cell's replicas are resent
   * only every `refreshMs` (5 s and up, longer for big cells), and the view counts them live for
   * 3 × that; a heartbeat counts as stale no sooner than the view would drop it.
   */
  cellParams (cell: string): Partial<BiologyParams> | undefined {
    let refreshMs = 0
    for (const i of this.init.view.instances(cell)) if (i.refreshMs !== undefined && i.refreshMs > refreshMs) refreshMs = i.refreshMs
    if (refreshMs === 0) return this.init.params
    const staleMs = resolveParams(this.init.params).heartbeatStaleMs
    return 3 * refreshMs > staleMs ? { ...this.init.params, heartbeatStaleMs: 3 * refreshMs } : this.init.params
  }

  biologyView (cell: string): BiologyView {
    const { view, releases } = this.init
    const nowMs = this.init.clock.now()
    const nodes = view.nodes(nowMs).map(n => ({
      id: n.nodeId,
      capacity: { freeSlots: n.capacity.freeSlots, cpuFreePercent: Math.max(0, 100 - n.load.cpuPercent), memoryFreeBytes: n.capacity.freeMemoryBytes },
      // Verified host grants only: a node's own role tags would let a stranger pose as eligible
      // and suppress real volunteers (each volunteers with probability deficit / eligible).
      trustsAuthorities: this.grantedHosts.get(cell)?.get(n.nodeId) ?? [],
      alive: true
    }))
    const records = view.instances(cell, nowMs)
    const instances = records.filter(i => i.state !== 'stopped' && !(i.nodeId === this.init.selfId && this.restarted.has(i.instanceId))).map(i => ({
      id: i.instanceId, cell: i.cell, version: i.version, digest: i.digest, nodeId: i.nodeId, startedMs: i.startedMs,
      ...(i.readyMs != null ? { readyMs: i.readyMs } : {}),
      state: i.state as 'starting' | 'ready' | 'draining' | 'crashed',
      cpuPercent: i.cpuPercent, memoryPercent: i.memoryPercent, qps: i.qps, p99Ms: i.p99Ms, lastHeartbeatMs: i.sentMs
    }))
    for (const i of records) {
      if (i.state !== 'crashed') continue
      const id = `${i.nodeId}/${i.instanceId}`
      if (this.events.has(id)) continue
      if (this.events.size >= MAX_EVENTS) this.events.delete(this.events.keys().next().value as string)
      this.events.set(id, { id, kind: 'crash', cell, version: i.version, digest: i.digest, instanceId: i.instanceId, nodeId: i.nodeId, atMs: i.endedMs ?? i.sentMs })
    }
    // Crashes stay counted for the halt window even after the crashed replica's tombstone is gone.
    // (and for the restart back-off's window, which forgives crashes only after restartResetMs).
    const params = resolveParams(this.init.params)
    const horizon = nowMs - Math.max(params.haltWindowMs, params.restartResetMs)
    const events: HealthEvent[] = []
    for (const [id, e] of this.events) {
      if (e.atMs < horizon) this.events.delete(id)
      else if (e.cell === cell) events.push(e)
    }
    const desired = view.desired(cell)
    const retire = view.retired(cell)
    return {
      nodes,
      instances,
      // A re-publish of the same artifact raises its seq in the fleet view, not in the release store;
      // the decisions need the higher one (it is what brings a retired cell back).
      releases: releases.releases(cell).map(r => ({ cell, version: r.version, digest: r.digest, seq: Math.max(r.seq, view.releaseOf(r.authority, cell)?.digest === r.digest ? view.releaseOf(r.authority, cell)!.seq : 0), authority: r.authority })),
      desired: desired != null ? [{ cell, version: desired.version, digest: desired.digest, seq: desired.seq }] : [],
      events,
      halts: this.gossipedHalts.get(cell) ?? [],
      // The cell's own authority's retire record (the view keeps no other); biology decides whether
      // it is still newer than every release and desired record.
      retired: retire != null ? [{ cell, seq: retire.seq, authority: retire.authority }] : []
    }
  }

  /** Halts this node decided or adopted, newest last, for its node heartbeat. */
  haltRecords (): NodeHalt[] {
    const all: NodeHalt[] = []
    for (const state of this.states.values()) {
      for (const h of state.halts) all.push({ cell: h.cell, version: h.version, digest: h.digest, atMs: h.atMs, reason: clip(h.reason, LIMITS.haltReasonChars) })
    }
    return all.sort((a, b) => a.atMs - b.atMs).slice(-LIMITS.halts)
  }

  /** Every halt the decisions hold (decided here or adopted from the fleet), for the node's intent store. */
  heldHalts (): HaltRecord[] {
    return [...this.states.values()].flatMap(s => s.halts)
  }

  /**
   * Halts remembered from before a restart: the cells start with them, so a halted release stays
   * halted even when every node of the fleet restarted (nobody would gossip it otherwise).
   */
  restoreHalts (halts: readonly HaltRecord[]): void {
    for (const h of halts) {
      const state = this.states.get(h.cell) ?? initialCellState(h.cell)
      if (state.halts.some(x => x.digest === h.digest)) continue
      this.states.set(h.cell, { ...state, halts: [...state.halts, h] })
      if (h.nodeId === this.init.selfId) this.halted.set(`${h.cell}@${h.version}`, { metric: 'restored', reason: h.reason, digest: h.digest })
    }
  }

  /**
   * Halts other nodes gossip for releases of `cell` this node holds, from nodes the release's authority
   * granted the host role (anyone else's halt is ignored: a stranger must not stop a fleet's cell).
   */
  private async refreshGossipedHalts (cell: string): Promise<void> {
    const check = this.init.hostGrant
    const found: HaltRecord[] = []
    for (const node of this.init.view.nodes(this.init.clock.now())) {
      if (node.nodeId === this.init.selfId) continue
      for (const h of node.halts ?? []) {
        if (h.cell !== cell) continue
        const release = this.init.releases.byDigest(cell, h.digest)
        if (release == null || !await check(node, release.authority, cell)) continue
        found.push({ ...h, nodeId: node.nodeId })
      }
    }
    if (found.length > 0 || this.gossipedHalts.has(cell)) this.gossipedHalts.set(cell, found)
  }

  /** Which nodes in the view hold a verified host grant for `cell` from an authority of its releases (and suit the newest). */
  private async refreshGrantedHosts (cell: string): Promise<void> {
    const prepared = this.init.releases.releases(cell)
    const authorities = [...new Set(prepared.map(r => r.authority))]
    const newest = prepared[prepared.length - 1]
    const hosts = new Map<string, string[]>()
    for (const node of this.init.view.nodes(this.init.clock.now())) {
      if (newest !== undefined && this.init.nodeSuits !== undefined && !this.init.nodeSuits(node, newest)) continue
      const granted: string[] = []
      for (const a of authorities) if (await this.init.hostGrant(node, a, cell)) granted.push(a)
      if (granted.length > 0) hosts.set(node.nodeId, granted)
    }
    this.grantedHosts.set(cell, hosts)
  }


  async tick (): Promise<void> {
    if (this.ticking) return
    this.ticking = true
    try {
      this.counters.ticks++
      const membership = this.membership()
      const held = new Set(this.init.replicas.list().map(r => r.instanceId))
      for (const id of this.restarted) if (!held.has(id)) this.restarted.delete(id)
      let followChanged = false
      for (const cell of this.followSince.keys()) {
        if (this.init.releases.releases(cell).length === 0) { this.followSince.delete(cell); followChanged = true }
      }
      for (const cell of this.init.releases.cells()) {
        const prepared = this.init.releases.releases(cell)
        if (prepared.length === 0) continue
        const claimants = this.init.view.claimants(cell)
        if (claimants.length > 1) {
          // Two trusted authorities sign this name: neither may stand in for the other, so the node
          // starts nothing for it until the operator stops trusting one (calls fail by name too).
          this.lastReasons.set(cell, [`CellNameConflictError: claimed by ${claimants.length} trusted authorities`])
          continue
        }
        const state = this.states.get(cell) ?? initialCellState(cell)
        await this.refreshGossipedHalts(cell)
        await this.refreshGrantedHosts(cell)
        let view = this.biologyView(cell)
        const governing = policyRelease(cell, prepared, view, state)
        const policy = governing.manifest.biology
        const params = this.cellParams(cell)
        if (this.init.following !== undefined) {
          const narrowed = this.narrowToFollowers(cell, view, governing.authority, params)
          const followed = this.followCell(cell, narrowed.follows, this.init.replicas.list(cell).length > 0)
          followChanged ||= followed.changed
          if (!followed.decide) {
            this.lastReasons.set(cell, [this.followSince.has(cell) ? 'following: waiting for the cell\'s records' : 'not following: neither a host nor a standby candidate'])
            continue
          }
          view = narrowed.view
        }
        const decision = decideCell({ cell, view, policy, selfId: this.init.selfId, random: this.init.random, nowMs: this.init.clock.now(), state, params, membership: { ...membership, outOfSight: this.outOfSight(cell) } })
        // Both maps hold only cells the release store holds, which it bounds (1024).
        this.states.set(cell, decision.state)
        const why = this.init.unplaceable?.(prepared[prepared.length - 1])
        this.lastReasons.set(cell, why !== undefined ? [why, ...decision.reasons] : decision.reasons)
        this.noteRetired(cell, view, decision.state)
        for (const action of decision.actions) await this.act(action, policy)
      }
      if (followChanged) this.init.following?.onFollowChange?.()
    } catch (err) {
      this.counters.failures++
      this.lastError = { atMs: this.init.clock.now(), message: `tick: ${(err as Error).name}: ${(err as Error).message}` }
      this.lastTickError = this.lastError
      log.error('tick failed: %e', err)
    } finally {
      this.ticking = false
    }
  }

  /** Says once when a cell turns retired (and when a later publish or rollback brings it back). */
  private noteRetired (cell: string, view: BiologyView, state: CellState): void {
    const retire = retiredBy(cell, view.retired, view.releases, state.desired)
    const was = this.retired.get(cell)
    if (retire !== undefined && was?.seq !== retire.seq) {
      this.retired.set(cell, { authority: retire.authority, seq: retire.seq })
      log('retired %s by %s (seq %d): draining its replicas here, hosting it no more', cell, retire.authority, retire.seq)
      this.notice({ kind: 'retired', cell, text: `retired ${cell} by ${retire.authority}: draining its replicas here, hosting it no more` })
    } else if (retire === undefined && was !== undefined) {
      this.retired.delete(cell)
      log('%s is no longer retired: a later publish or rollback brought it back', cell)
      this.notice({ kind: 'unretired', cell, text: `${cell} is back: a later publish or rollback superseded its retire record` })
    }
  }

  /** May this node run `release`: it holds a host grant from its authority, and suits it (sandbox level)? */
  private suitsSelf (release: PreparedRelease): boolean {
    if (!this.init.canHost(release.authority)) return false
    const self = this.init.view.node(this.init.selfId) ?? { nodeId: this.init.selfId, roles: [] } as unknown as NodeRecord
    return this.init.nodeSuits?.(self, release) ?? true
  }

  private async act (action: Action, policy: Policy): Promise<void> {
    const { replicas, releases } = this.init
    switch (action.kind) {
      case 'spawn':
      case 'restart': {
        const release = releases.byDigest(action.cell, action.digest)
        if (release == null || !this.suitsSelf(release)) return
        // A halted (or crash-looping) release never starts here, whatever path asked for it.
        if (this.states.get(action.cell)?.halts.some(h => h.digest === action.digest) === true) {
          log.error('refusing to %s halted %s@%s', action.kind, action.cell, action.version)
          return
        }
        if (action.kind === 'restart') {
          if (!replicas.list(action.cell).some(r => r.instanceId === action.instanceId && r.state === 'crashed') || this.restarted.has(action.instanceId)) return
          this.restarted.add(action.instanceId)
        }
        log('%s %s@%s: %s', action.kind, action.cell, action.version, action.reason)
        this.counters.spawns++
        // The replica is in the set (starting) once spawn returns its promise: announce it at once.
        const spawning = replicas.spawn(release)
        this.init.announce?.()
        await spawning.then((info) => {
          const verb = action.kind === 'restart' ? 'restarted' : 'started'
          this.notice({ kind: verb, cell: action.cell, text: `${verb} ${info.instanceId}: ${spawnWhy(action.reason)}` })
        }, (err) => {
          const error = { atMs: this.init.clock.now(), message: `spawn ${action.cell}@${action.version}: ${(err as Error).name}: ${(err as Error).message}` }
          let book = this.cellErrors
          // Another node holds every claim, or only nodes that know a claim's voters may take it:
          // the claims working, not a failure (a non-voter of a moving claim said so at error level
          // every few seconds until the claim had moved), or a claim left to its former owner for a
          // while (ClaimOwnerAwaitedError, logged once by the volume manager).
          if (err instanceof ClaimsHeldError || err instanceof ClaimVotersUnknownError || err instanceof ClaimOwnerAwaitedError) {
            this.counters.declined++
            book = this.cellDeclines
            log('spawn %s declined: %s', action.cell, err.message)
          } else {
            this.counters.failures++
            this.lastError = error
            log.error('spawn %s failed: %s', action.cell, spawnFailureText(err))
          }
          book.delete(action.cell)
          book.set(action.cell, error)
          for (const oldest of book.keys()) { if (book.size <= MAX_CELL_ERRORS) break; book.delete(oldest) }
        })
        return
      }
      case 'volunteer': {
        const release = releases.byDigest(action.cell, action.digest)
        if (release == null || !this.suitsSelf(release) || this.pendingVolunteer.has(action.cell)) return
        this.pendingVolunteer.add(action.cell)
        this.counters.volunteers++
        this.init.clock.setTimeout(() => {
          this.pendingVolunteer.delete(action.cell)
          if (!this.running) return
          const state = this.states.get(action.cell) ?? initialCellState(action.cell)
          const membership = { ...this.membership(), outOfSight: this.outOfSight(action.cell) }
          let view = this.biologyView(action.cell)
          const params = this.cellParams(action.cell)
          if (this.init.following !== undefined) view = this.narrowToFollowers(action.cell, view, release.authority, params).view
          const confirm = confirmSpawn({ cell: action.cell, view, policy, selfId: this.init.selfId, nowMs: this.init.clock.now(), state, volunteer: action, params, membership })
          log('volunteer %s: %s', action.cell, confirm.reason)
          if (confirm.action != null) void this.act(confirm.action, policy)
        }, action.delayMs)
        return
      }
      case 'drain': {
        // A crashed or stopped replica has nothing left to drain (its tombstone expires on its own).
        if (!replicas.list(action.cell).some(r => r.instanceId === action.instanceId && (r.state === 'starting' || r.state === 'ready'))) return
        log('drain %s: %s', action.instanceId, action.reason)
        this.notice({ kind: 'draining', cell: action.cell, text: `draining ${action.instanceId}: ${action.reason}` })
        this.counters.drains++
        // Not awaited: calls in flight get the drain grace (30 s by default) and the loop keeps ticking.
        void replicas.drain(action.instanceId).catch((err) => { log.error('drain failed: %e', err) })
        return
      }
      case 'halt-release': {
        this.counters.halts++
        this.halted.set(`${action.cell}@${action.version}`, { metric: action.metric, reason: action.reason, digest: action.digest })
        if (this.halted.size > 256) this.halted.delete(this.halted.keys().next().value as string)
        // Said once, as a notice (`cell up` prints it): not also at error level, which printed it twice.
        log('halting %s@%s (%s): %s [%s]', action.cell, action.version, action.digest.slice(0, 12), action.reason, action.metric)
        this.notice({ kind: 'halted', cell: action.cell, text: `halted ${action.cell}@${action.version}: ${action.reason}` })
      }
    }
  }
}
