// A made-up fleet for development and tests ONLY (the dev page dashboard/dev.html and the
// Chromium smoke test). The real source is the browser light peer; main.tsx never uses this.
import { CHANGE_EVENT, STATUS_EVENT, WARNINGS_EVENT } from './source.ts'
import { MeshNotStartedError, NoReplicaError, UnknownCellError } from '../../core/mesh/errors.ts'
import { UnknownMethodError } from '../../core/synapse/errors.ts'
import { CRASH_LOOPING_PREFIX } from '../../core/biology/health.ts'
import type {
  CallResult, CellPolicy, DesiredVersionRecord, FleetChange, FleetSource, FleetStats, FleetViewLike,
  InstanceRecord, NodeRecord, ReleaseRecord, SnapshotRecord, SourceCallOptions, SourceStatus
} from './source.ts'

class FakeView extends EventTarget implements FleetViewLike {
  readonly nodeMap = new Map<string, NodeRecord>()
  readonly instanceMap = new Map<string, InstanceRecord>()
  readonly releaseMap = new Map<string, ReleaseRecord>()
  readonly desiredMap = new Map<string, DesiredVersionRecord>()

  nodes (): NodeRecord[] { return [...this.nodeMap.values()] }
  instances (cell?: string): InstanceRecord[] { return [...this.instanceMap.values()].filter(i => cell === undefined || i.cell === cell) }
  liveInstances (cell: string): InstanceRecord[] { return this.instances(cell).filter(i => i.state === 'starting' || i.state === 'ready') }
  release (cell: string): ReleaseRecord | undefined { return this.releaseMap.get(cell) }
  desired (cell: string): DesiredVersionRecord | undefined { return this.desiredMap.get(cell) }
  cells (): string[] {
    return [...new Set([...this.releaseMap.keys(), ...this.instances().map(i => i.cell)])].sort()
  }

  /** Snapshots per claim, newest first, with the nodes other than its owner that hold each. */
  readonly snapshotMap = new Map<string, Array<{ record: SnapshotRecord, holders: string[] }>>()
  snapshotClaims (cell: string): string[] { return [...this.snapshotMap.keys()].filter(c => c.startsWith(`${cell}/`)) }
  snapshots (claimId: string): SnapshotRecord[] { return (this.snapshotMap.get(claimId) ?? []).map(s => s.record) }
  snapshotHolders (snapshot: SnapshotRecord): string[] { return this.snapshotMap.get(snapshot.claimId)?.find(s => s.record === snapshot)?.holders ?? [] }
  isSafeSnapshot (snapshot: SnapshotRecord): boolean { return this.snapshotHolders(snapshot).length >= 2 }

  stats (): FleetStats {
    return {
      nodes: this.nodeMap.size,
      instances: this.instanceMap.size,
      releases: this.releaseMap.size,
      desired: this.desiredMap.size,
      accepted: { node: 0, instance: 0, release: 0, desired: 0, retire: 0, member: 0, down: 0 },
      dropped: {} as FleetStats['dropped'],
      expired: { node: 0, instance: 0 },
      snapshotTruncated: 0
    }
  }

  emit (detail: FleetChange): void {
    this.dispatchEvent(new CustomEvent(CHANGE_EVENT, { detail }))
  }
}

export interface FakeSourceOptions {
  /** Default Date.now. */
  now?: () => number
  /** Heartbeat period of the fake fleet; 0 = only on `step()`. Default 1000. */
  tickMs?: number
  /** Initial status, default 'live'. */
  status?: SourceStatus
  /** Whether `policy(cell)` is offered (default true). */
  withPolicy?: boolean
  /** Whether calls report the answering replica (default true). */
  withRoutes?: boolean
  /** Start with an empty fleet (the "joining" state) until `addNode()`. */
  empty?: boolean
  /**
   * A scripted history (deterministic, by step count): billing runs 1.2.0 until step 420, when
   * 1.3.0 is published; at step 520 a second 1.3.0 replica starts and a 1.2.0 one retires; at
   * step 780 importer crash-loops and is halted. From step 780 on it is the default fleet.
   */
  script?: boolean
}

export interface FakeSource extends FleetSource {
  readonly view: FakeView
  /** Advance the fake fleet by one heartbeat. */
  step: () => void
  setStatus: (status: SourceStatus, reason?: string) => void
  /** Replaces the source's warnings (e.g. a full node of the other dissemination mode connected). */
  setWarnings: (warnings: string[]) => void
  /** Adds a node with one billing replica (like `cell up` on a fourth machine). */
  addNode: () => string
  stop: () => void
}

const PEER = (k: number): string => `12D3KooWFake${'ABCDEFGHJKLMNPQRSTUVWXYZ'[k % 24]}${String(k).padStart(4, '0')}peerid${k}xyz`
const POLICIES: Record<string, CellPolicy> = {
  billing: { minReplicas: 2, maxReplicas: 6, canaryWeight: 10, maxSurge: 25, healthGraceMs: 30_000, update: 'live' },
  ledger: { minReplicas: 1, maxReplicas: 3, canaryWeight: 5, maxSurge: 50, healthGraceMs: 10_000, update: 'stop' },
  importer: { minReplicas: 1, maxReplicas: 2, canaryWeight: 5, maxSurge: 25, healthGraceMs: 10_000, update: 'live' }
}
const RELEASES = {
  billing: [{ version: '1.2.0', digest: 'sha256-9f2c1ab0e4d1' }, { version: '1.3.0', digest: 'sha256-4be07d5a11c3' }],
  ledger: [{ version: '0.4.1', digest: 'sha256-c0ffee12aa90' }],
  // Throws at import (issue 8): crash-looping, with its crash reason in the heartbeat.
  importer: [{ version: '0.1.0', digest: 'sha256-dead0b5e7a21' }]
}

export function createFakeSource (options: FakeSourceOptions = {}): FakeSource {
  const now = options.now ?? (() => Date.now())
  const view = new FakeView()
  const target = new EventTarget()
  let status: SourceStatus = options.status ?? 'live'
  let statusReason: string | undefined
  let warnings: string[] = []
  let seed = 7
  const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
  let seq = 0
  let nodeCount = 0
  const t0 = now()

  const addNodeRecord = (): string => {
    const k = nodeCount++
    const nodeId = PEER(k)
    view.nodeMap.set(nodeId, {
      nodeId,
      addrs: [`/ip4/10.0.0.${k + 11}/tcp/4001/p2p/${nodeId}`, `/ip4/10.0.0.${k + 11}/udp/4002/webrtc-direct/certhash/uEiB${k}x/p2p/${nodeId}`],
      capacity: { slots: 8, freeSlots: 8, cpuCores: 4, memoryBytes: 8 * 2 ** 30, freeMemoryBytes: 6 * 2 ** 30 },
      load: { cpuPercent: 40, memoryPercent: 25 },
      roles: k === 0 ? ['host', 'relay'] : ['host'],
      startedMs: t0 - 3_600_000 + k * 60_000,
      seq: 0,
      sentMs: t0
    })
    return nodeId
  }
  const addInstance = (cell: 'billing' | 'ledger' | 'importer', rel: { version: string, digest: string }, nodeId: string, p: Partial<InstanceRecord> = {}): void => {
    const instanceId = `${cell}-${(++seq).toString(36)}${rel.digest.slice(7, 11)}`
    view.instanceMap.set(`${nodeId}/${instanceId}`, {
      instanceId, cell, ...rel, nodeId, startedMs: t0 - 600_000, state: 'ready', readyMs: t0 - 590_000,
      cpuPercent: 20, memoryBytes: 90 * 2 ** 20, memoryPercent: 35, qps: 20, p99Ms: 12, inflight: 1, sentMs: t0, seq: 0, ...p
    })
  }

  let steps = 0
  const scriptNodes: string[] = []
  function publish (cell: keyof typeof RELEASES, k: number): void {
    view.releaseMap.set(cell, { cell, ...RELEASES[cell][k], authority: 'a1b2c3d4'.repeat(8), seq: k + 1, signed: new Uint8Array() })
    view.emit({ kind: 'release', op: 'upsert', key: cell, cell })
  }
  function seedScript (): void {
    scriptNodes.push(addNodeRecord(), addNodeRecord(), addNodeRecord())
    publish('billing', 0)
    publish('ledger', 0)
    for (const n of scriptNodes) addInstance('billing', RELEASES.billing[0], n, { startedMs: now() - 60_000, readyMs: now() - 55_000 })
    addInstance('ledger', RELEASES.ledger[0], scriptNodes[0], { qps: 5, p99Ms: 40, memoryBytes: 300 * 2 ** 20, startedMs: now() - 60_000, readyMs: now() - 55_000 })
  }
  function runScript (t: number): void {
    steps++
    if (steps === 420) {
      publish('billing', 1)
      addInstance('billing', RELEASES.billing[1], scriptNodes[2], { state: 'starting', startedMs: t, readyMs: undefined, qps: 0 })
    } else if (steps === 520) {
      addInstance('billing', RELEASES.billing[1], scriptNodes[1], { state: 'starting', startedMs: t, readyMs: undefined, qps: 0 })
      for (const [key, i] of view.instanceMap) {
        if (i.cell === 'billing' && i.nodeId === scriptNodes[2] && i.digest === RELEASES.billing[0].digest) view.instanceMap.set(key, { ...i, state: 'draining' })
      }
    } else if (steps === 700) {
      publish('importer', 0)
    } else if (steps === 780) {
      addInstance('importer', RELEASES.importer[0], scriptNodes[1], {
        state: 'crashed', readyMs: undefined, startedMs: t - 1_000, endedMs: t - 900, cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0,
        exitReason: 'CapsidStartError: replica of importer exited (code 1, signal null) before it was ready',
        stderrTail: ['Error: DATABASE_URL is not set']
      })
      const n1 = view.nodeMap.get(scriptNodes[1])!
      n1.halts = [{ cell: 'importer', ...RELEASES.importer[0], atMs: t, reason: `${CRASH_LOOPING_PREFIX}3 crashes within 120000 ms and no earlier release to return to` }]
    }
  }
  if (options.script === true) seedScript()
  else if (options.empty !== true) seedFleet()
  function seedFleet (): void {
    const nodes = [addNodeRecord(), addNodeRecord(), addNodeRecord()]
    for (const [cell, list] of Object.entries(RELEASES)) {
      const last = list[list.length - 1]
      view.releaseMap.set(cell, { cell, ...last, authority: 'a1b2c3d4'.repeat(8), seq: list.length, signed: new Uint8Array() })
    }
    // billing: mid-rollout 1.2.0 → 1.3.0, one new replica proven, one within its grace.
    addInstance('billing', RELEASES.billing[0], nodes[0])
    addInstance('billing', RELEASES.billing[0], nodes[1])
    addInstance('billing', RELEASES.billing[0], nodes[2], { state: 'draining' })
    addInstance('billing', RELEASES.billing[1], nodes[2], { startedMs: t0 - 60_000, readyMs: t0 - 55_000, qps: 4 })
    addInstance('billing', RELEASES.billing[1], nodes[1], { startedMs: t0 - 12_000, readyMs: t0 - 9_000, qps: 2 })
    addInstance('ledger', RELEASES.ledger[0], nodes[0], { qps: 5, p99Ms: 40, memoryBytes: 300 * 2 ** 20, claim: { ordinal: 0, epoch: 3 } })
    // ledger/0's newest snapshot (1 min old) is held by one other node so far; the one before (6 min) by two.
    const snapshot = (ageMs: number): SnapshotRecord => ({
      nodeId: nodes[0], cell: 'ledger', claimId: 'ledger/0', epoch: 3, tag: `snapshot-e3-${new Date(t0 - ageMs).toISOString().slice(0, 19).replace(/[-:]/g, '')}Z`,
      takenMs: t0 - ageMs, sizeBytes: 4 * 2 ** 20, plainManifestDigest: `sha256:${'1'.repeat(64)}`, blobs: [`sha256:${'1'.repeat(64)}`], seq: 1, sentMs: t0
    })
    view.snapshotMap.set('ledger/0', [{ record: snapshot(60_000), holders: [nodes[1]] }, { record: snapshot(360_000), holders: [nodes[1], nodes[2]] }])
    addInstance('importer', RELEASES.importer[0], nodes[1], {
      state: 'crashed', readyMs: undefined, startedMs: t0 - 8_000, endedMs: t0 - 7_900, cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0, inflight: 0,
      exitReason: 'CapsidStartError: replica of importer exited (code 1, signal null) before it was ready',
      stderrTail: ['file:///cell/app/main.js:3', 'if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is not set")', '                                        ^', 'Error: DATABASE_URL is not set']
    })
    const n1 = view.nodeMap.get(nodes[1])!
    n1.halts = [{ cell: 'importer', ...RELEASES.importer[0], atMs: t0 - 7_000, reason: `${CRASH_LOOPING_PREFIX}3 crashes or failed health checks fleet-wide within 120000 ms and no earlier release to return to; not started again until another artifact is published or rolled back to` }]
  }

  const step = (): void => {
    const t = now()
    if (options.script === true) runScript(t)
    for (const old of view.nodeMap.values()) {
      // A fresh object per heartbeat, as a real view holds a newly decoded record.
      const n: NodeRecord = { ...old, capacity: { ...old.capacity }, load: { ...old.load } }
      view.nodeMap.set(n.nodeId, n)
      const hosted = view.instances().filter(i => i.nodeId === n.nodeId && i.state !== 'stopped')
      n.capacity.freeSlots = Math.max(0, n.capacity.slots - hosted.length)
      n.load.cpuPercent = Math.min(400, hosted.reduce((s, i) => s + i.cpuPercent, 0) + 5 + rand() * 10)
      n.load.memoryPercent = Math.min(100, 20 + hosted.length * 6 + rand() * 3)
      n.capacity.freeMemoryBytes = Math.round(n.capacity.memoryBytes * (1 - n.load.memoryPercent / 100))
      n.seq++
      n.sentMs = t
      view.emit({ kind: 'node', op: 'upsert', key: n.nodeId, nodeId: n.nodeId })
    }
    const phase = (t - t0) / 10_000
    for (const [key, old] of view.instanceMap) {
      const i: InstanceRecord = { ...old }
      view.instanceMap.set(key, i)
      // A crashed replica's tombstone keeps being gossiped as it was.
      if (i.state === 'crashed') { i.seq++; i.sentMs = t; view.emit({ kind: 'instance', op: 'upsert', key, cell: i.cell, nodeId: i.nodeId }); continue }
      const base = i.cell === 'ledger' ? 5 : i.digest === RELEASES.billing[1].digest ? 3 : 22
      i.qps = Math.max(0, base * (1 + 0.3 * Math.sin(phase + i.seq)) + rand() * 2)
      i.cpuPercent = 5 + i.qps * 0.8 + rand() * 4
      i.p99Ms = (i.cell === 'ledger' ? 35 : 10) + rand() * 6
      i.memoryBytes = Math.round((i.cell === 'ledger' ? 300 : 90) * 2 ** 20 * (1 + rand() * 0.05))
      if (i.state === 'starting' && t - i.startedMs > 3000) { i.state = 'ready'; i.readyMs = t }
      i.seq++
      i.sentMs = t
      view.emit({ kind: 'instance', op: 'upsert', key, cell: i.cell, nodeId: i.nodeId })
    }
  }

  const timer = (options.tickMs ?? 1000) > 0 ? setInterval(step, options.tickMs ?? 1000) : undefined
  const withRoutes = options.withRoutes ?? true

  const callRouted = async (cell: string, method: string, request: unknown, opts: SourceCallOptions = {}): Promise<CallResult> => {
    opts.signal?.throwIfAborted()
    if (status !== 'live' && status !== 'stale') throw new MeshNotStartedError('the fake peer is not connected')
    const live = view.liveInstances(cell).filter(i => i.state === 'ready')
    if (live.length === 0) {
      throw view.release(cell) === undefined
        ? new UnknownCellError(`no trusted release of cell "${cell}" is known to this peer`)
        : new NoReplicaError(`no ready replica of "${cell}"`)
    }
    if (method === 'fail') throw new UnknownMethodError(`cell "${cell}" has no method "fail"`)
    const weight = POLICIES[cell]?.canaryWeight ?? 5
    const targetDigest = view.release(cell)?.digest
    const canary = live.filter(i => i.digest === targetDigest)
    const rest = live.filter(i => i.digest !== targetDigest)
    const group = canary.length > 0 && (rest.length === 0 || rand() * 100 < weight) ? canary : rest
    const pick = group[Math.floor(rand() * group.length)]
    const result = { ok: true, cell, method, echo: request, servedBy: pick.instanceId }
    return { result, route: withRoutes ? { nodeId: pick.nodeId, instanceId: pick.instanceId, version: pick.version, digest: pick.digest } : undefined }
  }

  // Object.assign would freeze the getters' values, so status is defined as real accessors.
  Object.defineProperties(target, {
    status: { get: () => status, enumerable: true },
    statusReason: { get: () => statusReason, enumerable: true }
  })
  const source = Object.assign(target, {
    view,
    peerId: '12D3KooWFakeTabPeer0000000000000000000000000tab',
    call: async (cell: string, method: string, request: unknown, opts?: SourceCallOptions) => (await callRouted(cell, method, request, opts)).result,
    ...(withRoutes ? { callRouted } : {}),
    ...(options.withPolicy ?? true ? { policy: (cell: string) => POLICIES[cell] } : {}),
    // The tab holds connections to the first two full nodes (a light peer dials a few, not all).
    connections: () => view.nodes().slice(0, 2).map(n => n.nodeId),
    step,
    setStatus (next: SourceStatus, reason?: string) {
      status = next
      statusReason = reason
      target.dispatchEvent(new Event(STATUS_EVENT))
    },
    warnings: () => [...warnings],
    setWarnings (next: string[]) {
      warnings = [...next]
      target.dispatchEvent(new Event(WARNINGS_EVENT))
    },
    addNode () {
      const nodeId = addNodeRecord()
      addInstance('billing', RELEASES.billing[1], nodeId, { state: 'starting', startedMs: now(), readyMs: undefined })
      step()
      return nodeId
    },
    stop () { if (timer !== undefined) clearInterval(timer) }
  }) as unknown as FakeSource
  return source
}
