// Pure view-model functions of the dashboard: everything the page shows is computed here from
// fleet records, a policy and `nowMs`, so it is unit tested without a DOM (test/dashboard/).
import { surgeCount } from '../../core/biology/rollout.ts'
import { haltRecordsOf, resolveTarget } from '../../core/biology/target.ts'
import { CRASH_LOOPING_PREFIX } from '../../core/biology/health.ts'
import { ERROR_WORDS } from '../../browser-host/error-words.ts'
import type { CellPolicy, DesiredVersionRecord, InstanceRecord, NodeRecord, ReleaseRecord, SourceStatus } from './source.ts'

export interface ReleaseRef { version: string, digest: string }

/**
 * The release a cell converges on, as every node decides it (core/biology/target.ts) from what a
 * view holds: the desired-version record unless a release was published after it (higher seq),
 * else the newest release; a halted one falls back to the release before it. `halted` is the release
 * the rules chose first when it is halted (the fleet fell back from it, or has nothing left to run).
 */
export function targetOf (cell: string, releases: readonly ReleaseRecord[], desired: DesiredVersionRecord | undefined, nodes: readonly NodeRecord[] = []): { target?: ReleaseRef, halted?: ReleaseRef } {
  const r = resolveTarget({ cell, releases, ...(desired !== undefined ? { desired } : {}), halts: haltRecordsOf(nodes, cell) })
  const ref = (x: { version: string, digest: string } | undefined): ReleaseRef | undefined => x === undefined ? undefined : { version: x.version, digest: x.digest }
  const target = ref(r.target)
  const halted = ref(r.halted)
  return { ...(target !== undefined ? { target } : {}), ...(halted !== undefined ? { halted } : {}) }
}

export function isLive (i: InstanceRecord): boolean {
  return i.state === 'starting' || i.state === 'ready'
}

export type ReplicaState = 'none' | 'below-min' | 'ok' | 'above-max' | 'no-policy'

export interface ReplicaSummary {
  live: number
  ready: number
  starting: number
  draining: number
  crashed: number
  min?: number
  max?: number
  state: ReplicaState
}

/** Replicas against the policy's [min, max]; 'no-policy' when the source cannot tell the bounds. */
export function replicaSummary (instances: readonly InstanceRecord[], policy?: CellPolicy): ReplicaSummary {
  const count = (s: InstanceRecord['state']): number => instances.filter(i => i.state === s).length
  const ready = count('ready')
  const starting = count('starting')
  const live = ready + starting
  const base = { live, ready, starting, draining: count('draining'), crashed: count('crashed') }
  if (policy === undefined) return { ...base, state: live === 0 ? 'none' : 'no-policy' }
  const state: ReplicaState = live < policy.minReplicas ? 'below-min' : live > policy.maxReplicas ? 'above-max' : 'ok'
  return { ...base, min: policy.minReplicas, max: policy.maxReplicas, state }
}

export interface GraceTimer {
  instanceId: string
  nodeId: string
  /** Time left until the replica is proven; 0 when proven. Undefined while it is still starting. */
  remainingMs?: number
  /** 0..1 of the grace elapsed. */
  fraction: number
}

export interface VersionCount extends ReleaseRef { live: number, ready: number }

export interface RolloutProgress {
  /** True while replicas of more than one release are live, or the target has none yet. */
  active: boolean
  target?: ReleaseRef
  /** Live replicas of the target. */
  newCount: number
  /** Live replicas of any other release. */
  oldCount: number
  /** Other releases still running, newest start first. */
  old: VersionCount[]
  /** Target replicas ready for at least healthGraceMs (only known with a policy). */
  proven: number
  /** Target replicas not yet proven: they hold surge slots. */
  unproven: number
  /** Surge bound max(1, ceil(maxSurge% × desired)) as core/biology computes it; needs a policy. */
  surge?: number
  /** Target share of live replicas, 0..1. */
  fraction: number
  graceTimers: GraceTimer[]
}

/**
 * Where a rollout stands. Without a known target, the release whose replicas started last is
 * taken as the target (a view that has not received the release record yet still shows motion).
 */
export function rolloutProgress (instances: readonly InstanceRecord[], target: ReleaseRef | undefined, policy: CellPolicy | undefined, nowMs: number): RolloutProgress {
  const live = instances.filter(isLive)
  let t = target
  if (t === undefined && live.length > 0) {
    const newest = live.reduce((a, b) => (b.startedMs > a.startedMs ? b : a))
    t = { version: newest.version, digest: newest.digest }
  }
  const newer = live.filter(i => t !== undefined && i.digest === t.digest)
  const oldLive = live.filter(i => t === undefined || i.digest !== t.digest)
  const groups = new Map<string, VersionCount & { lastStartMs: number }>()
  for (const i of oldLive) {
    const g = groups.get(i.digest) ?? { version: i.version, digest: i.digest, live: 0, ready: 0, lastStartMs: 0 }
    g.live++
    if (i.state === 'ready') g.ready++
    g.lastStartMs = Math.max(g.lastStartMs, i.startedMs)
    groups.set(i.digest, g)
  }
  const old = [...groups.values()].sort((a, b) => b.lastStartMs - a.lastStartMs).map(({ lastStartMs: _, ...g }) => g)

  const graceMs = policy?.healthGraceMs
  const graceTimers: GraceTimer[] = []
  let proven = 0
  for (const i of [...newer].sort((a, b) => a.startedMs - b.startedMs || (a.instanceId < b.instanceId ? -1 : 1))) {
    if (i.state !== 'ready') {
      graceTimers.push({ instanceId: i.instanceId, nodeId: i.nodeId, fraction: 0 })
      continue
    }
    if (graceMs === undefined) continue
    const readyFor = Math.max(0, nowMs - (i.readyMs ?? i.startedMs))
    const remainingMs = Math.max(0, graceMs - readyFor)
    if (remainingMs === 0) proven++
    else graceTimers.push({ instanceId: i.instanceId, nodeId: i.nodeId, remainingMs, fraction: graceMs === 0 ? 1 : readyFor / graceMs })
  }
  const unproven = graceMs === undefined ? newer.filter(i => i.state !== 'ready').length : newer.length - proven
  let surge: number | undefined
  if (policy !== undefined) {
    // The autonomic loop's desired count is not gossiped; old + proven new equals it in steady
    // rollout (each proven replica retires one old one), clamped to the policy's bounds.
    const desired = Math.min(policy.maxReplicas, Math.max(policy.minReplicas, oldLive.length + proven))
    surge = surgeCount(policy.maxSurge, desired)
  }
  const active = t !== undefined && (oldLive.length > 0 || (target !== undefined && newer.length === 0 && live.length > 0))
  return {
    active,
    target: t,
    newCount: newer.length,
    oldCount: oldLive.length,
    old,
    proven,
    unproven,
    surge,
    fraction: live.length === 0 ? 0 : newer.length / live.length,
    graceTimers
  }
}

export interface ShareRow {
  key: string
  version: string
  digest?: string
  value: number
  share: number
  isTarget: boolean
}

/** QPS share per release digest among live replicas: what the fleet is actually serving. */
export function qpsShareByDigest (instances: readonly InstanceRecord[], target: ReleaseRef | undefined): ShareRow[] {
  const by = new Map<string, ShareRow>()
  let total = 0
  for (const i of instances) {
    if (!isLive(i)) continue
    const row = by.get(i.digest) ?? { key: i.digest, version: i.version, digest: i.digest, value: 0, share: 0, isTarget: i.digest === target?.digest }
    row.value += i.qps
    total += i.qps
    by.set(i.digest, row)
  }
  const rows = [...by.values()]
  for (const r of rows) r.share = total > 0 ? r.value / total : 0
  return rows.sort((a, b) => b.value - a.value || (a.key < b.key ? -1 : 1))
}

export const UNATTRIBUTED = 'unattributed'
export const OTHER = 'other'

/** Counts of calls this page made, per cell and answering release; bounded so a long session cannot grow it. */
export interface CallTally {
  readonly maxCells: number
  readonly maxKeysPerCell: number
  cells: Map<string, Map<string, { version: string, digest?: string, ok: number, failed: number }>>
  dropped: number
}

export function createCallTally (maxCells = 64, maxKeysPerCell = 16): CallTally {
  return { maxCells, maxKeysPerCell, cells: new Map(), dropped: 0 }
}

/** Records one call. `route` undefined → counted as unattributed (the source cannot tell who answered). */
export function tallyCall (tally: CallTally, cell: string, route: ReleaseRef | undefined, ok: boolean): void {
  let perCell = tally.cells.get(cell)
  if (perCell === undefined) {
    if (tally.cells.size >= tally.maxCells) { tally.dropped++; return }
    perCell = new Map()
    tally.cells.set(cell, perCell)
  }
  let key = route?.digest ?? UNATTRIBUTED
  if (!perCell.has(key) && perCell.size >= tally.maxKeysPerCell - 1) key = OTHER
  const row = perCell.get(key) ?? { version: route === undefined ? UNATTRIBUTED : key === OTHER ? OTHER : route.version, digest: key === route?.digest ? route.digest : undefined, ok: 0, failed: 0 }
  if (ok) row.ok++
  else row.failed++
  perCell.set(key, row)
}

/** The measured split of this page's own calls to `cell`, by answering release. */
export function callSplit (tally: CallTally, cell: string, target: ReleaseRef | undefined): ShareRow[] {
  const perCell = tally.cells.get(cell)
  if (perCell === undefined) return []
  let total = 0
  const rows: ShareRow[] = []
  for (const [key, r] of perCell) {
    const value = r.ok + r.failed
    total += value
    rows.push({ key, version: r.version, digest: r.digest, value, share: 0, isTarget: r.digest !== undefined && r.digest === target?.digest })
  }
  for (const r of rows) r.share = total > 0 ? r.value / total : 0
  return rows.sort((a, b) => b.value - a.value || (a.key < b.key ? -1 : 1))
}

export type DisplayStatus = SourceStatus

/**
 * What the header shows. A source that claims 'live' but has delivered no fleet record for
 * `staleAfterMs` is shown stale: heartbeats arrive every second on a healthy fleet.
 */
export function displayStatus (source: SourceStatus, lastChangeMs: number | undefined, nowMs: number, staleAfterMs: number): DisplayStatus {
  if (source !== 'live') return source
  return isStale(lastChangeMs, nowMs, staleAfterMs) ? 'stale' : 'live'
}

export function isStale (lastChangeMs: number | undefined, nowMs: number, staleAfterMs: number): boolean {
  return lastChangeMs === undefined || nowMs - lastChangeMs > staleAfterMs
}

export interface CellSample {
  atMs: number
  /** Summed over live replicas (percent of one core each). */
  cpuPercent: number
  memoryBytes: number
  qps: number
  /** Worst replica: the tail a caller can hit. */
  p99Ms: number
}

export function cellSample (instances: readonly InstanceRecord[], atMs: number): CellSample {
  const s: CellSample = { atMs, cpuPercent: 0, memoryBytes: 0, qps: 0, p99Ms: 0 }
  for (const i of instances) {
    if (!isLive(i)) continue
    s.cpuPercent += i.cpuPercent
    s.memoryBytes += i.memoryBytes
    s.qps += i.qps
    s.p99Ms = Math.max(s.p99Ms, i.p99Ms)
  }
  return s
}

/** Appends to a bounded series, dropping the oldest; returns a new array (signals compare by identity). */
export function pushBounded<T> (series: readonly T[], item: T, max: number): T[] {
  const out = series.length >= max ? series.slice(series.length - max + 1) : series.slice()
  out.push(item)
  return out
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
export function formatBytes (bytes: number): string {
  let v = bytes
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++ }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[u]}`
}

export function formatDuration (ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  const s = ms / 1000
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

export function formatNumber (n: number, digits = 1): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(digits)}M`
  if (n >= 1e4) return `${(n / 1e3).toFixed(digits)}k`
  return Number.isInteger(n) ? String(n) : n.toFixed(digits)
}

/** Peer ids are long; the tail is what differs between them. */
export function shortId (id: string, chars = 8): string {
  return id.length <= chars + 1 ? id : `…${id.slice(-chars)}`
}

export interface ErrorDescription { name: string, words: string, message: string }

/** The error's name and what it means for the user, in words (remote errors carry `remoteName`). */
export function describeError (err: unknown): ErrorDescription {
  const e = err as { name?: unknown, remoteName?: unknown, message?: unknown } | null | undefined
  const name = typeof e?.remoteName === 'string' ? e.remoteName : typeof e?.name === 'string' ? e.name : 'Error'
  const message = typeof e?.message === 'string' ? e.message : String(err)
  const words = ERROR_WORDS[name] ?? `The call failed (${splitWords(name)}).`
  return { name, words, message }
}

function splitWords (name: string): string {
  return name.replace(/Error$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase() || 'error'
}

/** Why replicas of a cell crashed, as their heartbeats say (exit reason, last stderr lines). */
export interface CrashNote { version: string, nodeId: string, reason: string, stderr: string[] }

/** Distinct crash reasons of the crashed replicas in view, newest first, at most `max`. */
export function crashNotes (instances: readonly InstanceRecord[], max = 3): CrashNote[] {
  const seen = new Set<string>()
  const out: CrashNote[] = []
  const crashed = instances.filter(i => i.state === 'crashed').sort((a, b) => (b.endedMs ?? b.sentMs) - (a.endedMs ?? a.sentMs))
  for (const i of crashed) {
    const stderr = i.stderrTail ?? []
    const key = `${i.version} ${i.exitReason ?? ''} ${stderr[stderr.length - 1] ?? ''}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ version: i.version, nodeId: i.nodeId, reason: i.exitReason ?? 'crashed', stderr })
    if (out.length >= max) break
  }
  return out
}

/** The newest halt of a cell's release (of `digest`, when given) any node gossips; crash-looping when it had nothing to fall back to. */
export interface HaltNote { version: string, digest: string, reason: string, crashLooping: boolean, nodeId: string }

export function haltNote (nodes: readonly NodeRecord[], cell: string, digest?: string): HaltNote | undefined {
  let best: HaltNote & { atMs: number } | undefined
  for (const n of nodes) {
    for (const h of n.halts ?? []) {
      if (h.cell !== cell || (digest !== undefined && h.digest !== digest) || (best !== undefined && h.atMs <= best.atMs)) continue
      best = { version: h.version, digest: h.digest, reason: h.reason, crashLooping: h.reason.startsWith(CRASH_LOOPING_PREFIX), nodeId: n.nodeId, atMs: h.atMs }
    }
  }
  if (best === undefined) return undefined
  const { atMs: _, ...note } = best
  return note
}

/** A rollout event marked on a cell's charts: a new release or desired record, a halt, a replica retired. */
export interface HistoryEvent { atMs: number, kind: 'release' | 'halt' | 'retire', label: string }

/**
 * Per-cell history the tab keeps from gossiped heartbeats: a bounded ring of samples covering
 * `windowMs`, at most `maxPoints` per cell (older halves are merged pairwise when full, so the
 * window stays covered at a coarser step), at most `maxCells` cells and `maxEvents` events each.
 */
export interface CellHistory {
  readonly windowMs: number
  readonly maxPoints: number
  readonly maxCells: number
  readonly maxEvents: number
  samples: Map<string, CellSample[]>
  events: Map<string, HistoryEvent[]>
  /** Samples or events refused because `maxCells` cells are already charted. */
  dropped: number
}

export const HISTORY_WINDOW_MS = 15 * 60_000

export function createCellHistory (opts: { windowMs?: number, maxPoints?: number, maxCells?: number, maxEvents?: number } = {}): CellHistory {
  return {
    windowMs: opts.windowMs ?? HISTORY_WINDOW_MS,
    maxPoints: Math.max(4, opts.maxPoints ?? 900),
    maxCells: Math.max(1, opts.maxCells ?? 256),
    maxEvents: Math.max(1, opts.maxEvents ?? 64),
    samples: new Map(),
    events: new Map(),
    dropped: 0
  }
}

/** Two adjacent samples as one: mean of the rates and sizes, worst p99, at the later time. */
export function mergeSamples (a: CellSample, b: CellSample): CellSample {
  return {
    atMs: b.atMs,
    cpuPercent: (a.cpuPercent + b.cpuPercent) / 2,
    memoryBytes: (a.memoryBytes + b.memoryBytes) / 2,
    qps: (a.qps + b.qps) / 2,
    p99Ms: Math.max(a.p99Ms, b.p99Ms)
  }
}

/** Halves the older half of a series by merging neighbours; the newest half keeps full resolution. */
export function downsample (series: readonly CellSample[]): CellSample[] {
  const half = Math.floor(series.length / 2)
  const out: CellSample[] = []
  let i = 0
  for (; i + 1 < half; i += 2) out.push(mergeSamples(series[i], series[i + 1]))
  for (; i < series.length; i++) out.push(series[i])
  return out
}

function admitCell (h: CellHistory, cell: string): boolean {
  if (h.samples.has(cell) || h.events.has(cell)) return true
  const known = new Set([...h.samples.keys(), ...h.events.keys()])
  if (known.size >= h.maxCells) { h.dropped++; return false }
  return true
}

/** Appends a sample (ignored unless newer than the last), evicting what left the window. */
export function recordSample (h: CellHistory, cell: string, s: CellSample): void {
  if (!admitCell(h, cell)) return
  let series = h.samples.get(cell) ?? []
  if (series.length > 0 && s.atMs <= series[series.length - 1].atMs) return
  series = series.filter(x => x.atMs >= s.atMs - h.windowMs)
  series.push(s)
  if (series.length > h.maxPoints) series = downsample(series)
  h.samples.set(cell, series)
}

export function recordEvent (h: CellHistory, cell: string, e: HistoryEvent): void {
  if (!admitCell(h, cell)) return
  let list = (h.events.get(cell) ?? []).filter(x => x.atMs >= e.atMs - h.windowMs)
  list.push(e)
  if (list.length > h.maxEvents) list = list.slice(list.length - h.maxEvents)
  h.events.set(cell, list)
}

/** Forgets cells no longer in the view (their history would otherwise hold a slot forever). */
export function pruneHistory (h: CellHistory, keep: ReadonlySet<string>): void {
  for (const k of [...h.samples.keys()]) if (!keep.has(k)) h.samples.delete(k)
  for (const k of [...h.events.keys()]) if (!keep.has(k)) h.events.delete(k)
}

/** What the store remembers of a cell between samples, to notice rollout events. */
export interface CellMark { targetDigest?: string, haltKey?: string, draining: Set<string> }

/**
 * The rollout events between two looks at a cell: its target release changed (release or desired
 * record), a new halt, replicas that began draining or stopped (retired). The first look records none.
 */
export function rolloutEvents (prev: CellMark | undefined, target: ReleaseRef | undefined, halt: HaltNote | undefined, instances: readonly InstanceRecord[], atMs: number): { mark: CellMark, events: HistoryEvent[] } {
  const draining = new Set(instances.filter(i => i.state === 'draining' || i.state === 'stopped').map(i => `${i.nodeId}/${i.instanceId}`))
  const haltKey = halt === undefined ? undefined : `${halt.digest} ${halt.reason}`
  const mark: CellMark = { targetDigest: target?.digest, haltKey, draining }
  const events: HistoryEvent[] = []
  if (prev === undefined) return { mark, events }
  if (target !== undefined && target.digest !== prev.targetDigest) events.push({ atMs, kind: 'release', label: `v${target.version}` })
  if (halt !== undefined && haltKey !== prev.haltKey) events.push({ atMs, kind: 'halt', label: `${halt.crashLooping ? 'crash-loop' : 'halt'} v${halt.version}` })
  const retired = [...draining].filter(k => !prev.draining.has(k)).length
  if (retired > 0) events.push({ atMs, kind: 'retire', label: `retire ${retired}` })
  return { mark, events }
}

/** "Nice" upper bound of a value axis and its ticks (1, 2, 2.5, 5 × 10^k). */
export function niceTicks (max: number, count = 4): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1]
  const raw = max / count
  const pow = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map(m => m * pow).find(s => s >= raw) ?? raw
  const ticks: number[] = []
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

// A stateful cell's claims (owner, epoch, newest safe snapshot): shared with `cell status`.
export { claimNotes, MAX_CLAIM_NOTES, type ClaimNote } from '../../core/fleet/claim-notes.ts'
