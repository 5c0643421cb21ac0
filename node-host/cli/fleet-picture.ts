// What `cell top` and `cell status` show, as data: the gossiped fleet view (nodes, replicas, load,
// releases, halts) joined with each node's own status report (`/cell/status/1`: desired replica
// count, min/max, releases it prepared, the loop's reasons). Pure: the commands fetch, this joins.
import type { Mesh } from '../../core/mesh/index.ts'
import type { FleetView, InstanceRecord } from '../../core/fleet/index.ts'
import { resolveTarget, retiredBy, isCrashLooping, haltRecordsOf, compareReleaseVersions } from '../../core/biology/index.ts'
import type { ReleaseRecord } from '../../core/fleet/index.ts'
import { meshGate } from '../artifacts/artifact-exchange.ts'
import { fetchStatus, type NodeStatusReport } from '../introspect/status-protocol.ts'
import { NotAuthorizedError } from '../introspect/operator-gate.ts'
import { dialableNode } from '../logs/log-follower.ts'

/** The parts of the fleet view a picture reads. */
export type PictureView = Pick<FleetView, 'instances' | 'nodes' | 'claimants' | 'releaseOf' | 'desired' | 'retired' | 'cells'>

export interface NodePicture {
  node: string
  cpuPercent: number
  cpuCores: number
  memoryBytes: number
  memoryUsedBytes: number
  memoryPercent: number
  slots: number
  freeSlots: number
  replicas: number
  uptimeMs: number
  roles: string[]
}

export interface ReleasePicture { version: string, digest: string, seq: number, authority: string }

export interface VersionPicture { version: string, digest: string, ready: number, starting: number, draining: number, crashed: number }

export interface CellPicture {
  cell: string
  /** Authorities claiming the name (two or more: a conflict, nothing starts). */
  claimants: string[]
  target?: { version: string, digest: string, seq: number }
  /** Why that target: newest release, a desired record (rollback), a halt falling back. */
  targetReason: string
  desiredRecord?: { version: string, seq: number }
  /** The digest the rules chose first when it is halted: the target is its fallback (or nothing is left). */
  haltedChoice?: string
  retired?: { authority: string, seq: number }
  /** Newest first: the view's newest release and every release a node reported it prepared. */
  releases: ReleasePicture[]
  versions: VersionPicture[]
  ready: number
  /** The replica count the nodes' loops aim for (the highest reported), when any node reported. */
  desired?: number
  min?: number
  max?: number
  /** canary_weight of the newest release a node prepared, when a node reported it. */
  canaryWeight?: number
  /** Ready replicas of two or more releases: callers send canaryWeight % to `canary` (the highest version ready), the rest to `others`. */
  split?: { canary: string, others: string[] }
  cpuPercent: number
  memoryBytes: number
  qps: number
  p99Ms: number
  /** A rollout under way: replicas of the target ready, of how many wanted. */
  rollout?: { to: string, ready: number, of: number }
  halts: Array<{ version: string, digest: string, node: string, reason: string, crashLooping: boolean }>
}

export interface FleetPicture {
  atMs: number
  nodes: NodePicture[]
  cells: CellPicture[]
}

export interface Reports {
  reports: NodeStatusReport[]
  failures: Array<{ node: string, error: string }>
}

/**
 * Every node's status report (of `cell`, or of every cell of the operator's authority), each within
 * `timeoutMs`. Throws NotAuthorizedError when every node that answered refused.
 */
export async function fetchReports (mesh: Mesh, cell: string | undefined, timeoutMs = 5_000): Promise<Reports> {
  const gate = meshGate(mesh.libp2p)
  const chain = gate?.chain(cell !== undefined ? mesh.view.claimants(cell)[0] : undefined) ?? new Uint8Array(0)
  const nodes = mesh.view.nodes().slice(0, 128)
  // One more try for a node that did not answer (a first dial on a loaded machine), never for a refusal.
  const ask = async (nodeId: string): Promise<NodeStatusReport> => {
    try {
      return await fetchStatus(mesh.libp2p, await dialableNode(mesh, nodeId), chain, cell, { signal: AbortSignal.timeout(timeoutMs) })
    } catch (err) {
      if (err instanceof NotAuthorizedError) throw err
      return await fetchStatus(mesh.libp2p, await dialableNode(mesh, nodeId), chain, cell, { signal: AbortSignal.timeout(timeoutMs) })
    }
  }
  const settled = await Promise.allSettled(nodes.map(async n => await ask(n.nodeId)))
  const out: Reports = { reports: [], failures: [] }
  let refusal: Error | undefined
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') { out.reports.push(s.value); return }
    const err = s.reason as Error
    if (err instanceof NotAuthorizedError) refusal ??= err
    out.failures.push({ node: nodes[i].nodeId, error: err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : `${err.name}: ${err.message}` })
  })
  if (refusal !== undefined && out.reports.length === 0) throw refusal
  return out
}

function isLive (i: InstanceRecord): boolean {
  return i.state === 'starting' || i.state === 'ready'
}

export function cellPicture (view: PictureView, cell: string, reports: readonly NodeStatusReport[]): CellPicture {
  const instances = view.instances(cell)
  const own = reports.flatMap(r => r.cells.filter(c => c.cell === cell))
  // Releases: what the view gossips (the newest per claimant) and what the nodes prepared.
  const releases = new Map<string, ReleasePicture>()
  for (const a of view.claimants(cell)) {
    const r = view.releaseOf(a, cell)
    if (r !== undefined) releases.set(r.digest, { version: r.version, digest: r.digest, seq: r.seq, authority: r.authority })
  }
  for (const c of own) for (const p of c.prepared) if (!releases.has(p.digest)) releases.set(p.digest, p)
  const sorted = [...releases.values()].sort((a, b) => b.seq - a.seq)
  const haltRecords = haltRecordsOf(view.nodes(), cell)
  const halts: CellPicture['halts'] = haltRecords.map(h => ({ version: h.version, digest: h.digest, node: h.nodeId ?? '', reason: h.reason, crashLooping: isCrashLooping(h) }))
  const desiredRecord = view.desired(cell)
  const asRecords: ReleaseRecord[] = sorted.map(r => ({ cell, ...r, signed: new Uint8Array(0) }))
  const resolved = resolveTarget({ cell, releases: asRecords, ...(desiredRecord !== undefined ? { desired: desiredRecord } : {}), halts: haltRecords })
  const retireRecord = view.retired(cell)
  const retired = retiredBy(cell, retireRecord !== undefined ? [retireRecord] : [], asRecords, desiredRecord)
  const versions = new Map<string, VersionPicture>()
  for (const i of instances) {
    const v = versions.get(i.digest) ?? { version: i.version, digest: i.digest, ready: 0, starting: 0, draining: 0, crashed: 0 }
    if (i.state === 'ready') v.ready++
    else if (i.state === 'starting') v.starting++
    else if (i.state === 'draining') v.draining++
    else if (i.state === 'crashed') v.crashed++
    versions.set(i.digest, v)
  }
  const live = instances.filter(isLive)
  const ready = instances.filter(i => i.state === 'ready')
  const desiredCounts = own.map(c => c.desiredReplicas).filter((n): n is number => n !== undefined)
  const policy = own.find(c => c.policy !== undefined)?.policy
  const desired = desiredCounts.length > 0 ? Math.max(...desiredCounts) : undefined
  const target = resolved.target
  let rollout: CellPicture['rollout']
  if (target !== undefined && retired === undefined) {
    const onTarget = ready.filter(i => i.digest === target.digest).length
    const others = live.filter(i => i.digest !== target.digest).length
    if (others > 0 || onTarget < (desired ?? policy?.minReplicas ?? 1)) rollout = { to: target.version, ready: onTarget, of: desired ?? policy?.minReplicas ?? Math.max(1, live.length) }
  }
  // As callers split (core/routing): the highest version ready is the canary, every other release the rest.
  const readyReleases = new Map<string, string>()
  for (const i of ready) readyReleases.set(i.digest, i.version)
  let split: CellPicture['split']
  if (readyReleases.size > 1) {
    const [canaryDigest, canary] = [...readyReleases].reduce((best, r) => compareReleaseVersions(r[1], best[1]) > 0 ? r : best)
    split = { canary, others: [...readyReleases].filter(([d]) => d !== canaryDigest).map(([, v]) => v) }
  }
  return {
    cell,
    claimants: view.claimants(cell),
    ...(target !== undefined ? { target: { version: target.version, digest: target.digest, seq: target.seq } } : {}),
    targetReason: retired !== undefined ? `retired by ${retired.authority.slice(0, 12)}… (seq ${retired.seq}): runs nowhere until a later publish or rollback` : resolved.reason,
    ...(desiredRecord !== undefined ? { desiredRecord: { version: desiredRecord.version, seq: desiredRecord.seq } } : {}),
    ...(resolved.halted !== undefined ? { haltedChoice: resolved.halted.digest } : {}),
    ...(retired !== undefined ? { retired: { authority: retired.authority, seq: retired.seq } } : {}),
    releases: sorted,
    versions: [...versions.values()].sort((a, b) => b.ready + b.starting - a.ready - a.starting),
    ready: ready.length,
    ...(desired !== undefined ? { desired } : {}),
    ...(policy !== undefined ? { min: policy.minReplicas, max: policy.maxReplicas } : {}),
    ...(policy?.canaryWeight !== undefined ? { canaryWeight: policy.canaryWeight } : {}),
    ...(split !== undefined ? { split } : {}),
    cpuPercent: live.reduce((s, i) => s + i.cpuPercent, 0),
    memoryBytes: live.reduce((s, i) => s + i.memoryBytes, 0),
    qps: ready.reduce((s, i) => s + i.qps, 0),
    p99Ms: ready.reduce((m, i) => Math.max(m, i.p99Ms), 0),
    ...(rollout !== undefined ? { rollout } : {}),
    halts
  }
}

export function fleetPicture (view: PictureView, reports: readonly NodeStatusReport[], nowMs = Date.now()): FleetPicture {
  const instances = view.instances()
  const nodes = view.nodes().map((n): NodePicture => ({
    node: n.nodeId,
    cpuPercent: n.load.cpuPercent,
    cpuCores: n.capacity.cpuCores,
    memoryBytes: n.capacity.memoryBytes,
    memoryUsedBytes: Math.max(0, n.capacity.memoryBytes - n.capacity.freeMemoryBytes),
    memoryPercent: n.load.memoryPercent,
    slots: n.capacity.slots,
    freeSlots: n.capacity.freeSlots,
    replicas: instances.filter(i => i.nodeId === n.nodeId && isLive(i)).length,
    uptimeMs: Math.max(0, nowMs - n.startedMs),
    roles: n.roles
  })).sort((a, b) => a.node < b.node ? -1 : 1)
  return { atMs: nowMs, nodes, cells: view.cells().map(c => cellPicture(view, c, reports)) }
}
