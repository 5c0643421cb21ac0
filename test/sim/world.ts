// The simulated fleet: N nodes, each running the REAL decision code (core/biology) on its own view,
// which it builds only from gossip snapshots that survived the network's loss, delay and
// partitions. Ground truth (which replicas really exist, their state, the load) lives here; nodes
// see it only through heartbeats. Everything random comes from one seed.

import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'
import { confirmSpawn, decideCell } from '../../core/biology/autonomic.ts'
import type { VolunteerAction } from '../../core/biology/autonomic.ts'
import { initialCellState, resolveParams } from '../../core/biology/params.ts'
// The nodes' own ranking of standby candidates (node-host's autonomic loop uses the same function).
import { standbyCandidates, STANDBY_CANDIDATES } from '../../core/biology/followers.ts'
import { PER_CELL_DEFAULTS } from '../../core/fleet/gossip.ts'
import type {
  Action, BiologyParams, BiologyView, CellState, HaltRecord, HealthEvent, InstanceRecord, InstanceState, NodeRecord, Policy, ReleaseRecord
} from '../../core/biology/types.ts'
import { GossipNetwork } from './network.ts'
import type { NetworkOptions } from './network.ts'
import { EventQueue } from './queue.ts'
import { SeededRandom } from './prng.ts'

export interface ReleaseSpec extends ReleaseRecord {
  /** Replicas of this release crash shortly after they turn ready. */
  crashes?: boolean
}

export interface WorldOptions {
  seed: number
  nodes: number
  slotsPerNode: number
  /** Node indices that do not trust the cell's authority. */
  untrusting?: readonly number[]
  /** Node indices that offer no free slot. */
  noCapacity?: readonly number[]
  tickMs: number
  delayMs: readonly [number, number]
  loss: number
  partitions?: NetworkOptions['partitions']
  startupMs: readonly [number, number]
  drainMs: readonly [number, number]
  crashAfterMs: readonly [number, number]
  /** Relative noise on reported CPU (0.03 = ±3 %). */
  loadNoise: number
  policy: Policy
  params: Partial<BiologyParams>
  cell: string
  authority: string
  /** Keep the event log lines (for debugging); the hash is always kept. */
  keepLog?: boolean
  /**
   * How views are fed. 'flat' (default, today's FleetGossip): every node's record and instance
   * heartbeats reach every node every tick. 'per-cell' (the Scale design in docs/biology.md, modelled
   * only): member records (capacity, trust, whether the node hosts the cell; liveness) reach every
   * node every tick as before, but instance heartbeats and health events travel on the cell's own
   * topic, sent on a change (state, or CPU moved past a dead band) or every refresh, and only
   * followers (hosts and the standby candidates) read them and decide for the cell.
   */
  dissemination?: 'flat' | 'per-cell'
  /**
   * Per-cell mode: how late a lost cell message arrives (default PER_CELL.recoverMs, gossipsub's
   * repair); 'none': never (only the next refresh repairs it). The table of loss modes in
   * docs/biology.md was measured with 'none' and [1000, 3000].
   */
  cellRepairMs?: readonly [number, number] | 'none'
}

/** Knobs of the per-cell design for the decision runs (the refresh cap is core/fleet's default). */
export const PER_CELL = {
  /** Standby candidates: the eligible non-hosting nodes with the highest rendezvous hash for the cell. */
  candidates: STANDBY_CANDIDATES,
  /** Instance records are re-sent every max(refreshMinMs, hosts / topicCapPerS s) without a change... */
  refreshMinMs: 5_000,
  topicCapPerS: PER_CELL_DEFAULTS.cellRefreshPerSecond,
  /** ...and counted live for staleFactor refreshes (and only while their node is alive). */
  staleFactor: 3,
  /** A replica's CPU moving by more than this fraction of cpu_target since the last send is a change. */
  cpuDeadBand: 0.1,
  /** Subscribe, graft and pull the cell's state from a follower before deciding for it. */
  joinMs: 1_000,
  /**
   * A cell message lost on its way to a follower (5 % of deliveries here) still arrives, late: in
   * gossipsub another mesh peer's copy or the next heartbeat's IHAVE/IWANT brings it (on a 20-50
   * node topic with 5 % of transmissions lost, gossipsub-model.ts has every node holding it within
   * 0.25 s; this allows up to 1.2 s). The flat mode needs no repair: it re-sends every tick. With
   * no repair (`cellRepairMs: 'none'`) views lag a whole refresh; docs/biology.md (Scale) has both runs.
   */
  recoverMs: [200, 1_200]
} as const

interface Truth {
  id: string
  node: number
  version: string
  digest: string
  startedMs: number
  readyMs?: number
  state: InstanceState
}

interface Snapshot {
  sentMs: number
  node: NodeRecord
  instances: InstanceRecord[]
  releases: ReleaseRecord[]
  halts: HaltRecord[]
  events: HealthEvent[]
  /** Per-cell mode: the member record says the node hosts a replica of the cell. */
  hosting?: boolean
}

/** Per-cell mode: one message on the cell's topic. */
interface CellPart {
  sentMs: number
  instances: InstanceRecord[]
  events: HealthEvent[]
}

class SimNode {
  readonly index: number
  readonly random: SeededRandom
  readonly trusts: string[]
  readonly slots: number
  readonly id: string
  state: CellState
  pending = false
  readonly own = new Map<string, Truth>()
  readonly releases = new Map<string, ReleaseRecord>()
  readonly halts = new Map<string, HaltRecord>()
  readonly events = new Map<string, HealthEvent>()
  readonly peers: Array<Snapshot | undefined>
  /** Per-cell mode: the newest cell message of each peer read while following. */
  readonly cellPeers: Array<CellPart | undefined>
  /** Per-cell mode: following the cell since (undefined: not following). */
  followSince?: number
  /** Per-cell mode: the last cell message this node sent (what its followers see of it). */
  lastCell?: { sentMs: number, key: string, cpu: Map<string, number> }
  /** Arrays of the three maps above, rebuilt only after a change (they are shared read-only). */
  private cache: { releases?: ReleaseRecord[], halts?: HaltRecord[], events?: HealthEvent[] } = {}
  /** When this node itself decided to halt a release. */
  firstHaltMs?: number
  /** When this node first knew of any halt (its own or gossiped). */
  haltKnownMs?: number
  counter = 0

  constructor (index: number, nodes: number, random: SeededRandom, trusts: string[], slots: number, cell: string) {
    this.index = index
    this.random = random
    this.trusts = trusts
    this.slots = slots
    this.id = `node-${String(index).padStart(2, '0')}`
    this.state = initialCellState(cell)
    this.peers = new Array(nodes).fill(undefined)
    this.cellPeers = new Array(nodes).fill(undefined)
  }

  touch (): void {
    this.cache = {}
  }

  releaseList (): ReleaseRecord[] {
    return (this.cache.releases ??= [...this.releases.values()])
  }

  haltList (): HaltRecord[] {
    return (this.cache.halts ??= [...this.halts.values()])
  }

  eventList (): HealthEvent[] {
    return (this.cache.events ??= [...this.events.values()])
  }
}

export interface Counts {
  live: number
  ready: number
  liveByDigest: Map<string, number>
  readyByDigest: Map<string, number>
}

export class World {
  nowMs = 0
  load = 0
  private warmupMs = 0
  private countsCache?: Counts
  readonly nodes: SimNode[]
  readonly truth = new Map<string, Truth>()
  readonly specs = new Map<string, ReleaseSpec>()
  readonly spawnedOn = new Map<string, Set<number>>()
  readonly ranOn = new Map<string, Set<number>>()
  /** Spawns a node attempted although the view said it was not eligible (must stay 0). */
  ineligibleSpawns = 0
  /** Spawns or restarts of a release the acting node already knew was halted (must stay 0). */
  haltedSpawns = 0
  /** Replica crashes, per digest. */
  readonly crashes = new Map<string, number>()
  logLines = 0
  readonly log: string[] = []
  observer?: (world: World) => void

  private readonly queue = new EventQueue()
  private readonly net: GossipNetwork<Snapshot>
  private readonly cellNet?: GossipNetwork<CellPart>
  private readonly perCell: boolean
  private readonly resolved: BiologyParams
  /** Per-cell mode: cell messages sent (the scale model's rate check). */
  cellMessages = 0
  /** Nodes that ran the decision code at least once (per-cell mode: only followers do). */
  readonly decided = new Set<number>()
  private readonly rng: SeededRandom
  private readonly hash: Hash = createHash('sha256')

  readonly options: WorldOptions

  constructor (options: WorldOptions) {
    this.options = options
    const root = new SeededRandom(options.seed)
    this.rng = root.fork()
    this.net = new GossipNetwork<Snapshot>({ nodes: options.nodes, delayMs: options.delayMs, loss: options.loss, partitions: options.partitions ?? [] }, root.fork())
    const untrusting = new Set(options.untrusting ?? [])
    const full = new Set(options.noCapacity ?? [])
    this.nodes = Array.from({ length: options.nodes }, (_, i) => new SimNode(
      i, options.nodes, root.fork(), untrusting.has(i) ? ['someone-else'] : [options.authority], full.has(i) ? 0 : options.slotsPerNode, options.cell))
    this.perCell = options.dissemination === 'per-cell'
    this.resolved = resolveParams(options.params)
    // Forked after the nodes, so flat runs keep their event logs.
    if (this.perCell) this.cellNet = new GossipNetwork<CellPart>({ nodes: options.nodes, delayMs: options.delayMs, loss: options.loss, partitions: options.partitions ?? [], recoverMs: options.cellRepairMs === 'none' ? undefined : options.cellRepairMs ?? PER_CELL.recoverMs }, root.fork())
  }

  /**
   * Every node heartbeats from t=0 (random phase) and starts deciding at `warmupMs`, so views are
   * populated (despite loss) before anyone acts - as in a fleet that was already running.
   */
  start (warmupMs: number): void {
    this.warmupMs = warmupMs
    for (const n of this.nodes) this.broadcast(n)
    for (const n of this.nodes) this.at(this.rng.between(0, this.options.tickMs), () => this.tick(n))
  }

  at (atMs: number, fn: () => void): void {
    this.queue.push(atMs, fn)
  }

  /** Process events until `untilMs` or until `stop()` holds after an event. */
  run (untilMs: number, stop?: () => boolean): void {
    while (this.queue.peekMs() <= untilMs) {
      const e = this.queue.pop()
      if (e === undefined) break
      this.nowMs = e.atMs
      e.fn()
      if (stop?.() === true) return
    }
    this.nowMs = Math.max(this.nowMs, untilMs)
  }

  /** A node learns of a release (it then spreads by gossip). */
  publish (nodeIndex: number, release: ReleaseSpec): void {
    this.specs.set(release.digest, release)
    const { crashes, ...record } = release
    this.nodes[nodeIndex].releases.set(release.digest, record)
    this.nodes[nodeIndex].touch()
    this.record(`publish ${release.version} at ${this.nodes[nodeIndex].id}`)
    this.broadcast(this.nodes[nodeIndex])
  }

  /** A replica that was already running before the simulation started. */
  seedInstance (nodeIndex: number, release: ReleaseSpec, startedMs: number): void {
    const n = this.nodes[nodeIndex]
    const t: Truth = { id: `${n.id}/${n.counter++}`, node: nodeIndex, version: release.version, digest: release.digest, startedMs, readyMs: startedMs, state: 'ready' }
    this.truth.set(t.id, t)
    n.own.set(t.id, t)
    this.countsCache = undefined
  }

  setLoad (load: number): void {
    this.load = load
    this.record(`load ${load}`)
  }

  counts (): Counts {
    if (this.countsCache !== undefined) return this.countsCache
    const c: Counts = { live: 0, ready: 0, liveByDigest: new Map(), readyByDigest: new Map() }
    for (const t of this.truth.values()) {
      if (t.state !== 'starting' && t.state !== 'ready') continue
      c.live++
      c.liveByDigest.set(t.digest, (c.liveByDigest.get(t.digest) ?? 0) + 1)
      if (t.state === 'ready') {
        c.ready++
        c.readyByDigest.set(t.digest, (c.readyByDigest.get(t.digest) ?? 0) + 1)
      }
    }
    this.countsCache = c
    return c
  }

  digest (): string {
    return this.hash.copy().digest('hex')
  }

  private record (line: string): void {
    const text = `${this.nowMs.toFixed(3)} ${line}`
    this.hash.update(text + '\n')
    this.logLines++
    if (this.options.keepLog === true) this.log.push(text)
  }

  /** Call after every change of ground truth, before anything reads counts() again. */
  private changed (): void {
    this.countsCache = undefined
    this.observer?.(this)
  }

  private tick (n: SimNode): void {
    if (this.nowMs < this.warmupMs || (this.perCell && !this.follows(n))) {
      this.broadcast(n)
      this.at(this.nowMs + this.options.tickMs, () => this.tick(n))
      return
    }
    this.decided.add(n.index)
    const view = this.viewOf(n)
    const d = decideCell({ cell: this.options.cell, view, policy: this.options.policy, selfId: n.id, random: n.random, nowMs: this.nowMs, state: n.state, params: this.paramsFor(n) })
    n.state = d.state
    for (const h of d.state.halts) if (!n.halts.has(h.digest)) { n.halts.set(h.digest, h); n.touch() }
    if (n.halts.size > 0) n.haltKnownMs ??= this.nowMs
    for (const a of d.actions) this.apply(n, a)
    this.broadcast(n)
    this.at(this.nowMs + this.options.tickMs, () => this.tick(n))
  }

  private apply (n: SimNode, a: Action): void {
    if ((a.kind === 'spawn' || a.kind === 'restart') && n.halts.has(a.digest)) {
      this.haltedSpawns++
      this.record(`${n.id} ${a.kind.toUpperCase()} OF HALTED ${a.version}`)
    }
    switch (a.kind) {
      case 'volunteer':
        if (n.pending) return
        n.pending = true
        this.at(this.nowMs + a.delayMs, () => this.confirm(n, a))
        return
      case 'spawn':
        this.spawn(n, a.version, a.digest, this.options.keepLog === true ? `${a.purpose}: ${a.reason}` : a.purpose)
        return
      case 'drain': {
        const t = n.own.get(a.instanceId)
        if (t === undefined || t.state === 'draining') return
        this.record(`${n.id} drain ${t.id} ${t.version} (${a.reason})`)
        if (t.state === 'crashed') {
          this.remove(n, t)
          return
        }
        t.state = 'draining'
        this.at(this.nowMs + this.rng.between(...this.options.drainMs), () => this.remove(n, t))
        this.changed()
        return
      }
      case 'restart': {
        const t = n.own.get(a.instanceId)
        if (t === undefined || t.state !== 'crashed') return
        this.record(`${n.id} restart ${t.id} ${t.version}`)
        this.remove(n, t)
        this.spawn(n, t.version, t.digest, 'surge')
        return
      }
      case 'halt-release':
        n.firstHaltMs ??= this.nowMs
        this.record(`${n.id} halt ${a.version} metric=${a.metric} (${a.reason})`)
    }
  }

  private confirm (n: SimNode, volunteer: VolunteerAction): void {
    n.pending = false
    if (this.perCell && !this.follows(n)) return
    const view = this.viewOf(n)
    const r = confirmSpawn({ cell: this.options.cell, view, policy: this.options.policy, selfId: n.id, nowMs: this.nowMs, state: n.state, volunteer, params: this.paramsFor(n) })
    if (r.action !== undefined) {
      this.apply(n, r.action)
      this.broadcast(n)
    }
  }

  private spawn (n: SimNode, version: string, digest: string, purpose: string): void {
    if (n.own.size >= n.slots || !n.trusts.includes(this.options.authority)) {
      this.ineligibleSpawns++
      this.record(`${n.id} REFUSED spawn ${version}`)
      return
    }
    const t: Truth = { id: `${n.id}/${n.counter++}`, node: n.index, version, digest, startedMs: this.nowMs, state: 'starting' }
    this.truth.set(t.id, t)
    n.own.set(t.id, t)
    let on = this.spawnedOn.get(digest)
    if (on === undefined) this.spawnedOn.set(digest, on = new Set())
    on.add(n.index)
    this.record(`${n.id} spawn ${t.id} ${version} (${purpose})`)
    this.at(this.nowMs + this.rng.between(...this.options.startupMs), () => this.ready(n, t))
    this.changed()
  }

  private ready (n: SimNode, t: Truth): void {
    if (t.state !== 'starting') return
    t.state = 'ready'
    t.readyMs = this.nowMs
    let on = this.ranOn.get(t.digest)
    if (on === undefined) this.ranOn.set(t.digest, on = new Set())
    on.add(n.index)
    this.record(`${n.id} ready ${t.id}`)
    if (this.specs.get(t.digest)?.crashes === true) {
      this.at(this.nowMs + this.rng.between(...this.options.crashAfterMs), () => this.crash(n, t))
    }
    this.changed()
    this.broadcast(n)
  }

  private crash (n: SimNode, t: Truth): void {
    if (t.state !== 'ready') return
    t.state = 'crashed'
    const e: HealthEvent = { id: `${t.id}#crash`, kind: 'crash', cell: this.options.cell, version: t.version, digest: t.digest, instanceId: t.id, nodeId: n.id, atMs: this.nowMs }
    n.events.set(e.id, e)
    n.touch()
    this.crashes.set(t.digest, (this.crashes.get(t.digest) ?? 0) + 1)
    this.record(`${n.id} crash ${t.id} ${t.version}`)
    this.changed()
    this.broadcast(n)
  }

  private remove (n: SimNode, t: Truth): void {
    if (!n.own.delete(t.id)) return
    this.truth.delete(t.id)
    this.record(`${n.id} gone ${t.id}`)
    this.changed()
    this.broadcast(n)
  }

  private nodeRecord (n: SimNode): NodeRecord {
    const free = Math.max(0, n.slots - n.own.size)
    return { id: n.id, capacity: { freeSlots: free, cpuFreePercent: 100 - 10 * n.own.size, memoryFreeBytes: 8 * 2 ** 30 }, trustsAuthorities: n.trusts, alive: true }
  }

  private instanceRecord (t: Truth, readyTotal: number, sentMs: number, random: SeededRandom): InstanceRecord {
    const ready = t.state === 'ready'
    const share = ready && readyTotal > 0 ? this.load / readyTotal : 0
    const noise = 1 + this.options.loadNoise * (2 * random.next() - 1)
    return {
      id: t.id, cell: this.options.cell, version: t.version, digest: t.digest, nodeId: this.nodes[t.node].id,
      startedMs: t.startedMs, readyMs: t.readyMs, state: t.state,
      cpuPercent: share * noise, memoryPercent: ready ? 25 * noise : 0, qps: share / 5, p99Ms: 20, lastHeartbeatMs: sentMs
    }
  }

  private broadcast (n: SimNode): void {
    const ready = this.counts().ready
    const since = this.nowMs - (this.options.params.haltWindowMs ?? 120_000)
    for (const [id, e] of n.events) if (e.atMs <= since) { n.events.delete(id); n.touch() }
    if (this.perCell) {
      this.net.broadcast(n.index, this.nowMs, { sentMs: this.nowMs, node: this.nodeRecord(n), instances: [], releases: n.releaseList(), halts: n.haltList(), events: [], hosting: n.own.size > 0 })
      this.maybePublishCell(n, ready)
      return
    }
    const snap: Snapshot = {
      sentMs: this.nowMs,
      node: this.nodeRecord(n),
      instances: [...n.own.values()].map(t => this.instanceRecord(t, ready, this.nowMs, n.random)),
      releases: n.releaseList(),
      halts: n.haltList(),
      events: n.eventList()
    }
    this.net.broadcast(n.index, this.nowMs, snap)
  }

  /**
   * Per-cell mode: a node sends its replicas of the cell on the cell's topic when their set or state
   * changed, when a replica's CPU moved past the dead band, or when the refresh is due.
   */
  private maybePublishCell (n: SimNode, ready: number): void {
    const instances = [...n.own.values()].map(t => this.instanceRecord(t, ready, this.nowMs, n.random))
    const key = instances.map(i => `${i.id}:${i.state}:${i.readyMs ?? ''}`).join(',') + `|${n.eventList().length}`
    const last = n.lastCell
    const band = PER_CELL.cpuDeadBand * this.options.policy.cpuTarget
    const moved = last !== undefined && instances.some(i => Math.abs(i.cpuPercent - (last.cpu.get(i.id) ?? 0)) > band)
    const due = last === undefined || this.nowMs - last.sentMs >= this.refreshMs(n)
    if (last !== undefined && last.key === key && !moved && !due) return
    if (last === undefined && instances.length === 0 && n.eventList().length === 0) return
    n.lastCell = { sentMs: this.nowMs, key, cpu: new Map(instances.map(i => [i.id, i.cpuPercent])) }
    this.cellMessages++
    this.cellNet!.broadcast(n.index, this.nowMs, { sentMs: this.nowMs, instances, events: n.eventList() })
  }

  /** Per-cell mode: the refresh period for the hosts this node sees (the topic's rate cap). */
  private refreshMs (n: SimNode): number {
    let hosts = n.own.size > 0 ? 1 : 0
    const staleMs = this.options.params.heartbeatStaleMs ?? 15_000
    for (const p of n.peers) if (p?.hosting === true && this.nowMs - p.sentMs <= staleMs) hosts++
    return Math.max(PER_CELL.refreshMinMs, 1000 * hosts / PER_CELL.topicCapPerS)
  }

  private paramsFor (n: SimNode): Partial<BiologyParams> {
    if (!this.perCell) return this.options.params
    return { ...this.options.params, heartbeatStaleMs: PER_CELL.staleFactor * this.refreshMs(n) }
  }

  /**
   * Per-cell mode: whether the node follows the cell and has had its state long enough to decide
   * (hosts, and the standby candidates by rendezvous hash among the eligible non-hosting nodes it
   * sees). A node that stops following forgets the cell's instances and its remembered counts.
   */
  private follows (n: SimNode): boolean {
    this.readMembers(n)
    const following = n.own.size > 0 || this.candidates(n).has(n.index)
    if (!following) {
      if (n.followSince !== undefined) {
        n.followSince = undefined
        n.cellPeers.fill(undefined)
        n.state = { ...initialCellState(this.options.cell), desired: n.state.desired, halts: n.state.halts }
      }
      return false
    }
    n.followSince ??= this.nowMs
    return this.nowMs >= n.followSince + PER_CELL.joinMs
  }

  /** Candidates as node `n` sees them: its own record is current, the others' are the member records it holds. */
  private candidates (n: SimNode): Set<number> {
    const staleMs = this.options.params.heartbeatStaleMs ?? 15_000
    const records: NodeRecord[] = []
    const hosts = new Set<string>()
    const indexOf = new Map<string, number>()
    for (let j = 0; j < this.nodes.length; j++) {
      const p = j === n.index ? undefined : n.peers[j]
      const record = j === n.index ? this.nodeRecord(n) : p === undefined || this.nowMs - p.sentMs > staleMs ? undefined : p.node
      if (record === undefined) continue
      records.push(record)
      indexOf.set(record.id, j)
      if (j === n.index ? n.own.size > 0 : p?.hosting === true) hosts.add(record.id)
    }
    // The same ranking node-host's autonomic loop follows cells by.
    const ids = standbyCandidates(this.options.cell, records, (id) => hosts.has(id), this.options.authority, this.resolved, PER_CELL.candidates)
    return new Set([...ids].map(id => indexOf.get(id)!))
  }

  /** Member records (and the releases and halts that travel fleet-wide) that arrived by now. */
  private readMembers (n: SimNode): void {
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === n.index) continue
      const fresh = this.net.receive(n.index, j, this.nowMs)
      if (fresh === undefined) continue
      n.peers[j] = fresh
      for (const r of fresh.releases) if (!n.releases.has(r.digest)) { n.releases.set(r.digest, r); n.touch() }
      for (const h of fresh.halts) if (!n.halts.has(h.digest)) { n.halts.set(h.digest, h); n.touch() }
      if (n.halts.size > 0) n.haltKnownMs ??= this.nowMs
    }
  }

  /** Per-cell mode: the view of a follower: followers' member records, hosts' instances while their node is alive. */
  private perCellView (n: SimNode): BiologyView {
    const staleMs = this.options.params.heartbeatStaleMs ?? 15_000
    this.readMembers(n)
    const candidates = this.candidates(n)
    const nodes: NodeRecord[] = [this.nodeRecord(n)]
    const instances: InstanceRecord[] = []
    const ready = this.counts().ready
    for (const t of n.own.values()) instances.push(this.instanceRecord(t, ready, this.nowMs, n.random))
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === n.index) continue
      const cell = this.cellNet!.receive(n.index, j, this.nowMs)
      if (cell !== undefined) {
        n.cellPeers[j] = cell
        for (const e of cell.events) if (!n.events.has(e.id)) { n.events.set(e.id, e); n.touch() }
      }
      const p = n.peers[j]
      if (p === undefined) continue
      const alive = this.nowMs - p.sentMs <= staleMs
      if (p.hosting === true || candidates.has(j)) nodes.push(alive ? p.node : { ...p.node, alive: false })
      // The new expiry rule: a node's replicas count only while the member layer has the node alive.
      const c = n.cellPeers[j]
      if (alive && c !== undefined) for (const i of c.instances) instances.push(i)
    }
    return { nodes, instances, releases: n.releaseList(), desired: [], events: n.eventList(), halts: n.haltList() }
  }

  private viewOf (n: SimNode): BiologyView {
    if (this.perCell) return this.perCellView(n)
    const staleMs = this.options.params.heartbeatStaleMs ?? 15_000
    const nodes: NodeRecord[] = [this.nodeRecord(n)]
    const instances: InstanceRecord[] = []
    const ready = this.counts().ready
    for (const t of n.own.values()) instances.push(this.instanceRecord(t, ready, this.nowMs, n.random))
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === n.index) continue
      const fresh = this.net.receive(n.index, j, this.nowMs)
      if (fresh !== undefined) {
        n.peers[j] = fresh
        for (const r of fresh.releases) if (!n.releases.has(r.digest)) { n.releases.set(r.digest, r); n.touch() }
        for (const h of fresh.halts) if (!n.halts.has(h.digest)) { n.halts.set(h.digest, h); n.touch() }
        if (n.halts.size > 0) n.haltKnownMs ??= this.nowMs
        for (const e of fresh.events) if (!n.events.has(e.id)) { n.events.set(e.id, e); n.touch() }
      }
      const p = n.peers[j]
      if (p === undefined) continue
      nodes.push(this.nowMs - p.sentMs <= staleMs ? p.node : { ...p.node, alive: false })
      for (const i of p.instances) instances.push(i)
    }
    return { nodes, instances, releases: n.releaseList(), desired: [], events: n.eventList(), halts: n.haltList() }
  }

  get networkStats (): { sent: number, lost: number } {
    return { sent: this.net.sent, lost: this.net.lost }
  }
}

