// Real CPU and memory figures for a replica, read from /proc, for the fleet heartbeats.
//
// A replica is a process tree, not a process: in bwrap mode `Capsid.pid` is bwrap and the cell's
// node runs several levels below it in a new pid namespace (the host's /proc still lists every one
// of them with host pids), and a cell may spawn helpers of its own. So a sample is the sum over the
// root and all its descendants. Linux keeps no children index we can rely on (task/*/children
// needs CONFIG_PROC_CHILDREN and is per thread), so where a root has no such index a sample scans
// the process table once and walks the parent links from the root. Where it has one (most kernels
// build it), the sample follows /proc/<pid>/task/<tid>/children from the roots instead: a
// bwrap-sandboxed replica is a tree of three processes, and reading a dozen small files instead of
// every process's stat made a sample several times cheaper (most of a node's CPU with no calls).
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { totalmem } from 'node:os'
import { logger } from '@libp2p/logger'
import { CellError } from '../../core/errors.ts'
import { systemClock } from '../../core/ports.ts'
import type { Clock } from '../../core/ports.ts'

const log = logger('cell:capsid:usage')

/** Bytes per page on x86-64 and most arm64 kernels (`getconf PAGESIZE`). */
export const DEFAULT_PAGE_SIZE = 4096
/** USER_HZ, the unit of the /proc/<pid>/stat times; 100 on every mainstream Linux build (`getconf CLK_TCK`). */
export const DEFAULT_TICKS_PER_SECOND = 100
/** Most processes counted in one tree; the rest is left out (and the sample says `truncated`). */
export const DEFAULT_MAX_PIDS = 4096
/** Most /proc entries read in one scan; pid_max can be in the millions, a sane host runs far fewer. */
export const DEFAULT_MAX_SCAN = 65_536
/** Most pids whose previous sample a UsageSampler remembers; the least recently sampled are forgotten. */
export const DEFAULT_MAX_TRACKED = 1024

// Parallel stat reads per scan: enough to hide the thread-pool round trip, few enough to leave the
// pool to the node's own I/O.
const READ_CONCURRENCY = 64

/** The root process of a sample does not exist (any more). Its pid is on the error. */
export class ProcessGoneError extends CellError {
  static override readonly errorName = 'ProcessGoneError'
  readonly pid: number
  constructor (pid: number, options?: { cause?: unknown }) {
    super(`process ${pid} is gone`, options)
    this.pid = pid
  }
}

/** The fields of /proc/<pid>/stat that a sample needs. */
export interface ProcStat {
  pid: number
  ppid: number
  /** utime + stime + cutime + cstime, in ticks (see sampleProcessTree for why the children's times). */
  cpuTicks: number
  /** Resident set, in pages. */
  rssPages: number
  /** Start time in ticks after boot: with the pid, identifies a process across pid reuse. */
  startTicks: number
}

/**
 * Parse one /proc/<pid>/stat line, or undefined when it is malformed. The command name (field 2)
 * is in parentheses and may itself contain spaces and parentheses, so the fields after it are
 * found from the LAST ')' of the line.
 */
export function parseProcStat (text: string): ProcStat | undefined {
  const open = text.indexOf(' (')
  const close = text.lastIndexOf(')')
  if (open <= 0 || close < open) return undefined
  const pid = Number(text.slice(0, open))
  // After ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  // cutime cstime priority nice threads itrealvalue starttime vsize rss ... (proc(5), from field 3).
  const f = text.slice(close + 1).trim().split(/\s+/)
  if (f.length < 22) return undefined
  const num = (i: number): number => Number(f[i])
  const stat: ProcStat = {
    pid,
    ppid: num(1),
    cpuTicks: num(11) + num(12) + num(13) + num(14),
    rssPages: Math.max(0, num(21)), // kernel threads and zombies can report odd values; never negative
    startTicks: num(19)
  }
  for (const v of [stat.pid, stat.ppid, stat.cpuTicks, stat.rssPages, stat.startTicks]) {
    if (!Number.isSafeInteger(v) || v < 0) return undefined
  }
  return stat
}

export interface ProcessTreeOptions {
  /** Where procfs is mounted; tests point this at a fake tree. */
  procRoot?: string
  pageSize?: number
  maxPids?: number
  maxScan?: number
  signal?: AbortSignal
}

export interface ProcessTreeSample {
  /** CPU time of the tree so far, in ticks (USER_HZ). */
  cpuTicks: number
  /** Sum of the resident sets; pages shared between processes of the tree count once per process. */
  rssBytes: number
  /** The root first, then descendants breadth-first. */
  pids: number[]
  /** Start time of the root, ticks after boot (identity of the root across pid reuse). */
  rootStartTicks: number
  /** The tree had more than maxPids processes, or /proc more than maxScan entries. */
  truncated: boolean
}

async function readStat (procRoot: string, pid: number): Promise<ProcStat | undefined> {
  try {
    const stat = parseProcStat(await readFile(join(procRoot, String(pid), 'stat'), 'utf8'))
    // A stat whose pid disagrees with its directory is not the process we asked about.
    return stat?.pid === pid ? stat : undefined
  } catch {
    // The process exited between readdir and read (ENOENT/ESRCH), or is not ours to read: skip it.
    return undefined
  }
}

/**
 * CPU ticks and resident bytes of `rootPid` and all its descendants, from procfs.
 *
 * CPU includes cutime/cstime, the times of children that exited and were reaped: a reaped
 * descendant's time moves into its parent's cutime at the moment it leaves the process table, so
 * the tree's total stays monotonic while helpers come and go. Descendants that exit mid-scan are
 * skipped; a root that does not exist rejects with ProcessGoneError.
 */
export async function sampleProcessTree (rootPid: number, options: ProcessTreeOptions = {}): Promise<ProcessTreeSample> {
  const tree = (await sampleProcessTrees([rootPid], options)).get(rootPid)
  if (tree === undefined) throw new ProcessGoneError(rootPid)
  return tree
}

/**
 * sampleProcessTree for several roots off ONE scan of the process table (one heartbeat, every
 * replica). Roots that do not exist are absent from the map. A process under two of the roots
 * (one root descends from another) counts in both.
 */
export async function sampleProcessTrees (rootPids: number[], options: ProcessTreeOptions = {}): Promise<Map<number, ProcessTreeSample>> {
  const procRoot = options.procRoot ?? '/proc'
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE
  const maxPids = options.maxPids ?? DEFAULT_MAX_PIDS
  const maxScan = options.maxScan ?? DEFAULT_MAX_SCAN
  const signal = options.signal
  signal?.throwIfAborted()
  const out = new Map<number, ProcessTreeSample>()
  const wanted = [...new Set(rootPids.filter(pid => Number.isSafeInteger(pid) && pid > 0))].slice(0, maxScan)
  if (wanted.length === 0) return out

  const roots = new Map<number, ProcStat>()
  for (const s of await readStats(procRoot, wanted, signal)) if (s !== undefined) roots.set(s.pid, s)
  if (roots.size === 0) return out

  let scanTruncated = false
  const candidates: number[] = []
  let descendants = await indexedDescendants(procRoot, [...roots.keys()], maxScan, signal)
  if (descendants !== undefined) {
    scanTruncated = descendants.truncated
  } else {
    let names: string[] = []
    try {
      names = await readdir(procRoot)
    } catch (err) {
      // Unlistable but readable procfs: report the roots alone, marked incomplete.
      log.error('cannot list %s: %e', procRoot, err)
      scanTruncated = true
    }
    for (const name of names) {
      if (!/^[0-9]+$/.test(name)) continue
      const pid = Number(name)
      if (roots.has(pid)) continue
      if (candidates.length >= maxScan) { scanTruncated = true; break }
      candidates.push(pid)
    }
    descendants = { stats: await readStats(procRoot, candidates, signal), truncated: scanTruncated }
  }
  const children = new Map<number, ProcStat[]>()
  // Roots go into the index too: one root may descend from another.
  for (const s of [...roots.values(), ...descendants.stats]) {
    if (s === undefined) continue
    const siblings = children.get(s.ppid)
    if (siblings === undefined) children.set(s.ppid, [s])
    else siblings.push(s)
  }
  for (const root of roots.values()) {
    const tree = walk(root, children, maxPids)
    const truncated = tree.truncated || scanTruncated
    if (truncated) log('process tree of %d truncated at %d pids (%d /proc entries)', root.pid, tree.pids.length, candidates.length)
    out.set(root.pid, { cpuTicks: tree.cpuTicks, rssBytes: tree.rssPages * pageSize, pids: tree.pids, rootStartTicks: root.startTicks, truncated })
  }
  return out
}

/**
 * The stats of every descendant of `roots`, found through the kernel's children index
 * (/proc/<pid>/task/<tid>/children, one file per thread), at most `maxScan` of them; undefined when
 * a root has no such index (CONFIG_PROC_CHILDREN off, or a procfs without it), and the caller
 * scans the table instead. Processes that exit during the walk are skipped.
 */
async function indexedDescendants (procRoot: string, roots: number[], maxScan: number, signal?: AbortSignal): Promise<{ stats: Array<ProcStat | undefined>, truncated: boolean } | undefined> {
  const seen = new Set<number>(roots)
  const stats: Array<ProcStat | undefined> = []
  let truncated = false
  let frontier = roots
  for (let depth = 0; frontier.length > 0; depth++) {
    const next: number[] = []
    for (const pid of frontier) {
      signal?.throwIfAborted()
      const kids = await childPids(procRoot, pid)
      if (kids === undefined) {
        if (depth === 0) return undefined
        continue
      }
      for (const kid of kids) {
        if (seen.has(kid)) continue
        if (seen.size - roots.length >= maxScan) { truncated = true; break }
        seen.add(kid)
        next.push(kid)
      }
    }
    stats.push(...await readStats(procRoot, next, signal))
    frontier = next
  }
  return { stats, truncated }
}

/** The children of every thread of `pid`; undefined when it has no children index (or is gone). */
async function childPids (procRoot: string, pid: number): Promise<number[] | undefined> {
  const task = join(procRoot, String(pid), 'task')
  let tids: string[]
  try {
    tids = await readdir(task)
  } catch {
    return undefined
  }
  const out: number[] = []
  let indexed = false
  for (const tid of tids) {
    if (!/^[0-9]+$/.test(tid)) continue
    let text: string
    try {
      text = await readFile(join(task, tid, 'children'), 'utf8')
    } catch {
      // A thread that ended since the listing, or no index at all (then none of them has the file).
      continue
    }
    indexed = true
    for (const word of text.split(' ')) {
      if (/^[0-9]+$/.test(word)) out.push(Number(word))
    }
  }
  return indexed ? out : undefined
}

async function readStats (procRoot: string, pids: number[], signal?: AbortSignal): Promise<Array<ProcStat | undefined>> {
  const out: Array<ProcStat | undefined> = []
  for (let i = 0; i < pids.length; i += READ_CONCURRENCY) {
    signal?.throwIfAborted()
    out.push(...await Promise.all(pids.slice(i, i + READ_CONCURRENCY).map(async pid => await readStat(procRoot, pid))))
  }
  signal?.throwIfAborted()
  return out
}

function walk (root: ProcStat, children: Map<number, ProcStat[]>, maxPids: number): { cpuTicks: number, rssPages: number, pids: number[], truncated: boolean } {
  let cpuTicks = 0
  let rssPages = 0
  let truncated = false
  const pids: number[] = []
  const seen = new Set<number>()
  const queue: ProcStat[] = [root]
  // Index-walked queue: breadth-first, and `seen` guards against a parent cycle in a corrupt table.
  for (let head = 0; head < queue.length; head++) {
    const s = queue[head]
    if (seen.has(s.pid)) continue
    if (pids.length >= maxPids) { truncated = true; break }
    seen.add(s.pid)
    pids.push(s.pid)
    cpuTicks += s.cpuTicks
    rssPages += s.rssPages
    for (const c of children.get(s.pid) ?? []) {
      // A process started before the root cannot descend from it: its parent link is a recycled pid.
      if (c.startTicks >= root.startTicks) queue.push(c)
    }
  }
  return { cpuTicks, rssPages, pids, truncated }
}

export interface UsageSamplerInit {
  clock?: Clock
  procRoot?: string
  pageSize?: number
  ticksPerSecond?: number
  /** The replica's memory limit for memoryPercent; default the host's total memory. */
  memoryLimitBytes?: number
  maxPids?: number
  maxTracked?: number
}

export interface ReplicaUsage {
  /** 100 × CPU seconds / wall seconds since the previous sample of this pid; >100 on several cores. 0 on the first. */
  cpuPercent: number
  /** Resident bytes of the whole tree. */
  memoryBytes: number
  /** 0..100 of the memory limit (clamped at 100). */
  memoryPercent: number
  /** Wall milliseconds the cpuPercent covers; 0 for a first (baseline) sample. */
  intervalMs: number
  /** Processes counted. */
  pids: number
}

interface Previous { atMs: number, cpuTicks: number, startTicks: number, cpuPercent: number }

/**
 * Per-replica usage for heartbeats. CPU is a rate, so it needs two samples: the first sample of a
 * pid is a baseline and reports cpuPercent 0 (a lifetime average would include node's start-up
 * burst and could make a fresh replica look overloaded). Call sample() at the heartbeat period.
 */
export class UsageSampler {
  private readonly clock: Clock
  private readonly procRoot: string
  private readonly pageSize: number
  private readonly ticksPerSecond: number
  private readonly memoryLimitBytes: number
  private readonly maxPids: number
  private readonly maxTracked: number
  private readonly previous = new Map<number, Previous>()

  constructor (init: UsageSamplerInit = {}) {
    this.clock = init.clock ?? systemClock
    this.procRoot = init.procRoot ?? '/proc'
    this.pageSize = init.pageSize ?? DEFAULT_PAGE_SIZE
    this.ticksPerSecond = init.ticksPerSecond ?? DEFAULT_TICKS_PER_SECOND
    this.memoryLimitBytes = init.memoryLimitBytes ?? totalmem()
    this.maxPids = init.maxPids ?? DEFAULT_MAX_PIDS
    this.maxTracked = init.maxTracked ?? DEFAULT_MAX_TRACKED
  }

  /** Pids with a remembered previous sample. */
  get tracked (): number { return this.previous.size }

  /**
   * Usage of the tree rooted at `pid`. Rejects with ProcessGoneError when the process has exited
   * (and forgets it). A pid reused by a new process (different start time) starts a new baseline.
   */
  async sample (pid: number, options: { memoryLimitBytes?: number, signal?: AbortSignal } = {}): Promise<ReplicaUsage> {
    const usage = (await this.sampleMany([{ pid, memoryLimitBytes: options.memoryLimitBytes }], { signal: options.signal })).get(pid)
    if (usage === undefined) throw new ProcessGoneError(pid)
    return usage
  }

  /**
   * sample() for every replica off one scan of the process table. Pids that have exited are
   * absent from the result (and forgotten).
   */
  async sampleMany (replicas: Array<{ pid: number, memoryLimitBytes?: number }>, options: { signal?: AbortSignal } = {}): Promise<Map<number, ReplicaUsage>> {
    const trees = await sampleProcessTrees(replicas.map(r => r.pid),
      { procRoot: this.procRoot, pageSize: this.pageSize, maxPids: this.maxPids, signal: options.signal })
    const now = this.clock.now()
    const out = new Map<number, ReplicaUsage>()
    for (const { pid, memoryLimitBytes } of replicas) {
      const tree = trees.get(pid)
      if (tree === undefined) { this.previous.delete(pid); continue }
      out.set(pid, this.usage(pid, tree, now, memoryLimitBytes ?? this.memoryLimitBytes))
    }
    return out
  }

  private usage (pid: number, tree: ProcessTreeSample, now: number, limit: number): ReplicaUsage {
    const memoryPercent = limit > 0 ? Math.min(100, 100 * tree.rssBytes / limit) : 0
    const prev = this.previous.get(pid)
    let cpuPercent = 0
    let intervalMs = 0
    let next: Previous = { atMs: now, cpuTicks: tree.cpuTicks, startTicks: tree.rootStartTicks, cpuPercent: 0 }
    if (prev !== undefined && prev.startTicks === tree.rootStartTicks) {
      if (now > prev.atMs) {
        intervalMs = now - prev.atMs
        // A descendant killed before its parent reaped it takes its time with it: never negative.
        const ticks = Math.max(0, tree.cpuTicks - prev.cpuTicks)
        cpuPercent = 100 * (ticks / this.ticksPerSecond) / (intervalMs / 1000)
        next.cpuPercent = cpuPercent
      } else {
        // No wall time has passed (same millisecond, or a clock step back): repeat the last figure
        // and keep the older baseline, rather than divide by zero.
        cpuPercent = prev.cpuPercent
        next = prev
      }
    }
    // Re-insert so Map order is least recently sampled first; evict from the front past the bound.
    this.previous.delete(pid)
    this.previous.set(pid, next)
    while (this.previous.size > this.maxTracked) {
      const oldest = this.previous.keys().next().value as number
      this.previous.delete(oldest)
    }
    return { cpuPercent, memoryBytes: tree.rssBytes, memoryPercent, intervalMs, pids: tree.pids.length }
  }

  /** Drop the baseline of a pid (its replica stopped). */
  forget (pid: number): void {
    this.previous.delete(pid)
  }
}
