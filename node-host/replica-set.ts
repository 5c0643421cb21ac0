// The replicas this full node runs: starts capsids, serves synapse calls into them, drains them and
// reports them to the fleet as instance heartbeats. A crashed replica stays listed (state `crashed`)
// for a while so the fleet hears about it — that is what halts a crashing release everywhere.
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { ServerCall } from '../core/synapse/server-call.ts'
import { startCapsid, sandboxLevel, satisfiesSandbox, SandboxTooWeakError, CapsidDrainingError, CapsidStoppedError, FencedReplicaError, type Capsid, type SandboxMode, type SandboxLevel, type CapsidLimits } from './capsid/index.ts'
import { NoReplicaError } from '../core/mesh/index.ts'
import type { SynapseHandler, CallContext, MessageContext } from '../core/synapse/index.ts'
import { boundExitReason, boundStderrTail, type LocalInstanceState } from '../core/fleet/index.ts'
import type { Clock, Random } from '../core/ports.ts'
import { CellError } from '../core/errors.ts'

export { FencedReplicaError } from './capsid/errors.ts'
import { LatencyHistogram } from '../core/synapse/index.ts'
import { UsageSampler } from './capsid/usage-sampler.ts'
import { traced, unsampledParentCheck, type Tracer } from '../core/telemetry/tracer.ts'

const log = logger('cell:replicas')

export class ReplicaLimitError extends CellError { static override readonly errorName = 'ReplicaLimitError' }
/**
 * The volume a replica of a stateful cell runs on: its claim acquired at an epoch (and restored from
 * a snapshot when this node was not its last writer). `serving()` turns false when the lease on the
 * claim cannot be renewed; `close` ends the replica's hold (a planned close snapshots first).
 */
export interface ReplicaVolume {
  readonly path: string
  readonly claimId: string
  readonly epoch: number
  /** The snapshot tag the volume was restored from, when it was. */
  readonly restoredFrom?: string
  serving(): boolean
  /** Called once the replica's process has ended. */
  close(options: { planned: boolean }): Promise<void>
  /** Refuse calls from now on (the volume is about to be replaced), keeping the claim. */
  pause(): void
  /** Serve again (the volume was replaced and a new replica runs on it). */
  resume(): void
  /** Called once if the lease ends unrenewed while the replica runs. */
  onLost?(fn: () => void): void
}

/** Opens a claim's volume for a new replica (node-host/volumes). */
export interface ReplicaVolumes {
  open(spec: SpawnSpec, instanceId: string, options: { signal?: AbortSignal }): Promise<ReplicaVolume>
}

export interface ReplicaInfo {
  instanceId: string
  cell: string
  version: string
  digest: string
  startedMs: number
  readyMs?: number
  state: 'starting' | 'ready' | 'draining' | 'stopped' | 'crashed'
  capsid?: Capsid
  /** A stateful cell's claim volume (absent for stateless cells). */
  volume?: ReplicaVolume
  /** What the replica was started from (a restore starts it again on its volume). */
  spec?: SpawnSpec
  /** Its process ends for a restore: the volume and its claim stay. */
  keepVolume?: boolean
  /**
   * Still acquiring its claim (which may mean waiting out another node's lease): not in heartbeats
   * yet, or the fleet would count it as a live replica and drain the one that holds the claim.
   */
  opening?: boolean
  endedMs?: number
  /** Why a crashed replica ended and its last stderr lines (bounded as heartbeats carry them). */
  exitReason?: string
  stderrTail?: string[]
  calls: number
  /** Load as last sampled: CPU and memory from the OS, QPS and p99 from the calls served. */
  load: { cpuPercent: number, memoryBytes: number, memoryPercent: number, qps: number, p99Ms: number }
  window: { calls: number, latency: LatencyHistogram, sinceMs: number }
}

export interface ReplicaSetInit {
  dataDir: string
  runDir: string
  sandbox: SandboxMode
  clock: Clock
  random: Random
  maxReplicas: number
  /** How long a crashed or stopped replica stays in heartbeats. */
  tombstoneMs?: number
  /** Per-replica limits of strict capsids (defaults: capsid DEFAULT_LIMITS). */
  limits?: Partial<CapsidLimits>
  /** How long a draining replica's calls in flight may take before it is stopped anyway (default 30 s). */
  drainGraceMs?: number
  /** Calls into a capsid run in a child span of the node's server span (the replica's host side). */
  tracer?: Tracer
  /** Claim volumes for stateful cells; without it a stateful replica gets a plain directory that outlives it. */
  volumes?: ReplicaVolumes
}

export const DEFAULT_DRAIN_GRACE_MS = 30_000

/** What spawn needs of a release: a PreparedRelease fits. */
export interface SpawnSpec {
  cell: string
  version: string
  digest: string
  codePath: string
  /**
   * The release's Cell.toml; `sandbox.require` (default strict) is checked against this node's level,
   * and a cell with `[cell.storage]` is stateful: its replicas' volumes outlive them.
   */
  manifest?: { sandbox?: { require?: SandboxLevel }, storage?: { claimBytes: number, class: string, snapshotEveryMs: number }, biology?: { maxReplicas: number } }
  /** The release's authority (whose host grants decide a claim's voters). */
  authority?: string
}

/** Starting, ready or draining: a replica with a process (or one on its way). */
function isRunning (r: ReplicaInfo): boolean {
  return r.state === 'starting' || r.state === 'ready' || r.state === 'draining'
}

export class ReplicaSet extends EventTarget {
  private readonly init: ReplicaSetInit
  private readonly replicas = new Map<string, ReplicaInfo>()
  private readonly sampler: UsageSampler
  private samplingTimer: unknown
  private sampling = false
  private level?: SandboxLevel
  /** Set by stopAll: nothing new starts, a replica that was starting drains as soon as it is up. */
  private closing = false
  /** What stopAll was asked for: a replica that finishes starting after it drains the same way. */
  private closingOptions: { graceMs?: number, signal?: AbortSignal } = {}
  /** Spawns and drains under way, so stopAll can wait for every one (each is bounded by its own deadline). */
  private readonly pendingWork = new Set<Promise<unknown>>()
  /**
   * Aborted by stopAll: a spawn still waiting for its claim (for a holder's lease to end, up to a
   * minute) gives up instead of holding the node's stop, and never opens a claim it would hand over
   * at once.
   */
  private readonly closingAbort = new AbortController()
  /** Calls the synapse server handed to a replica that have not returned yet (what a stop waits for). */
  private handling = 0
  /** Is a call's traceparent unsampled (then its replica span is skipped)? */
  private readonly unsampled = unsampledParentCheck()
  private readonly idleWaiters = new Set<() => void>()

  constructor (init: ReplicaSetInit) {
    super()
    this.init = init
    this.sampler = new UsageSampler({ clock: init.clock })
  }

  /** Sample every running replica's OS usage and call rates every `intervalMs`. Idempotent. */
  startSampling (intervalMs: number): void {
    if (this.sampling) return
    this.sampling = true
    const loop = (): void => {
      this.samplingTimer = this.init.clock.setTimeout(() => {
        void this.sampleLoad().catch((err) => { log('sampling failed: %e', err) }).finally(() => { if (this.sampling) loop() })
      }, intervalMs)
    }
    loop()
  }

  stopSampling (): void {
    this.sampling = false
    if (this.samplingTimer !== undefined) this.init.clock.clearTimeout(this.samplingTimer)
  }

  async sampleLoad (): Promise<void> {
    const live = this.list().filter(r => r.capsid?.pid != null && (r.state === 'ready' || r.state === 'draining' || r.state === 'starting'))
    const usage = await this.sampler.sampleMany(live.map(r => ({ pid: r.capsid!.pid! })))
    const now = this.init.clock.now()
    for (const r of live) {
      const u = usage.get(r.capsid!.pid!)
      if (u != null) Object.assign(r.load, { cpuPercent: u.cpuPercent, memoryBytes: u.memoryBytes, memoryPercent: u.memoryPercent })
      const seconds = Math.max(0.001, (now - r.window.sinceMs) / 1000)
      r.load.qps = r.window.calls / seconds
      const p99 = r.window.latency.quantile(0.99)
      r.load.p99Ms = Number.isFinite(p99) ? p99 : 60_000
      r.window = { calls: 0, latency: new LatencyHistogram(), sinceMs: now }
    }
  }

  /**
   * The sandbox level this node runs replicas at ('strict' = bubblewrap, 'process' = Node's
   * permission model, only when the operator chose `--sandbox process`). Throws
   * SandboxUnavailableError when `auto`/`bwrap` was asked for and bubblewrap does not work here.
   */
  get sandboxLevel (): SandboxLevel {
    this.level ??= sandboxLevel(this.init.sandbox)
    return this.level
  }

  list (cell?: string): ReplicaInfo[] {
    return [...this.replicas.values()].filter(r => cell == null || r.cell === cell)
  }

  /** Sum of the running replicas' sampled CPU (100 = one core). */
  cpuPercentTotal (): number {
    let total = 0
    for (const r of this.replicas.values()) if (isRunning(r)) total += r.load.cpuPercent
    return total
  }

  running (): number {
    return this.list().filter(isRunning).length
  }

  /** Whether a replica here still runs (or starts, or drains) from the artifact `digest`. */
  runsDigest (digest: string): boolean {
    for (const r of this.replicas.values()) if (r.digest === digest && isRunning(r)) return true
    return false
  }

  async spawn (spec: SpawnSpec, options: { signal?: AbortSignal, volume?: ReplicaVolume } = {}): Promise<ReplicaInfo> {
    const required = spec.manifest?.sandbox?.require ?? 'strict'
    if (!satisfiesSandbox(this.sandboxLevel, required)) {
      throw new SandboxTooWeakError(`${spec.cell}@${spec.version} requires a ${required} sandbox; this node runs replicas in ${this.sandboxLevel} mode (--sandbox ${this.init.sandbox})`)
    }
    if (this.closing) throw new CapsidStoppedError(`node is stopping; ${spec.cell}@${spec.version} not started`)
    if (this.running() >= this.init.maxReplicas) throw new ReplicaLimitError(`node runs ${this.running()} replicas, its limit`)
    const suffix = Array.from(this.init.random.bytes(4), b => b.toString(16).padStart(2, '0')).join('')
    const instanceId = `${spec.cell}-${spec.version.replace(/[^A-Za-z0-9._-]/g, '_')}-${suffix}`
    const startedMs = this.init.clock.now()
    const info: ReplicaInfo = {
      instanceId, cell: spec.cell, version: spec.version, digest: spec.digest, startedMs, state: 'starting', calls: 0,
      load: { cpuPercent: 0, memoryBytes: 0, memoryPercent: 0, qps: 0, p99Ms: 0 },
      window: { calls: 0, latency: new LatencyHistogram(), sinceMs: startedMs },
      spec
    }
    this.replicas.set(instanceId, info)
    this.prune()
    // Volumes sit in the node's data dir (beside its keys) but a strict capsid binds only its own
    // one at /cell/data; 0700 keeps the others from any local user.
    let dataDir: string
    let removeVolume = (): void => {}
    if (spec.manifest?.storage != null && (this.init.volumes !== undefined || options.volume !== undefined)) {
      // A stateful replica runs on its claim's volume: acquired at a new epoch, restored when needed
      // (or, after a restore, the volume its predecessor ran on).
      info.opening = true
      try {
        const signal = options.signal !== undefined ? AbortSignal.any([options.signal, this.closingAbort.signal]) : this.closingAbort.signal
        info.volume = options.volume ?? await this.track(this.init.volumes!.open(spec, instanceId, { ...options, signal }))
        info.opening = false
      } catch (err) {
        // No claim to run on (all held, no quorum yet): nothing started, so no crash to report; the
        // autonomic loop tries again on a later tick.
        this.replicas.delete(instanceId)
        throw err
      }
      dataDir = info.volume.path
      const volume = info.volume
      // The lease ended unrenewed (cut off from the claim's voters): the replica stops at once, so
      // the fleet sees it gone, even with no call arriving to find out.
      volume.onLost?.(() => { if (info.state === 'ready' || info.state === 'starting') void this.fenced(info) })
      // Tracked: a node that stops waits for the final snapshot and the hand-over (each bounded).
      removeVolume = () => {
        if (info.keepVolume === true) return
        void this.track(volume.close({ planned: info.state === 'stopped' || info.state === 'draining' })).catch((err) => { log.error('closing the volume of %s: %e', instanceId, err) })
      }
    } else {
      const volumes = join(this.init.dataDir, 'volumes')
      await mkdir(volumes, { recursive: true, mode: 0o700 })
      dataDir = join(volumes, `${spec.cell}-${suffix}`)
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      // A stateless replica's volume ends with it (a crash loop must not leave one per attempt).
      removeVolume = (): void => {
        if (spec.manifest?.storage == null) void rm(dataDir, { recursive: true, force: true }).catch(() => {})
      }
    }
    try {
      const capsid = await this.track(startCapsid({ artifactPath: spec.codePath, dataDir, cell: spec.cell, instanceId, runDir: this.init.runDir, sandbox: this.init.sandbox, clock: this.init.clock, ...(this.init.limits !== undefined ? { limits: this.init.limits } : {}) }, options))
      info.capsid = capsid
      capsid.onCallEnded = (elapsedMs) => { this.callEnded(info, elapsedMs) }
      info.state = 'ready'
      info.readyMs = this.init.clock.now()
      capsid.onExit((exit) => {
        if (info.state === 'draining' || info.state === 'stopped') {
          info.state = 'stopped'
        } else {
          info.state = exit.crashed ? 'crashed' : 'stopped'
          log.error('replica %s exited (code %s, signal %s)%s', instanceId, exit.code, exit.signal, exit.crashed ? ' — crashed' : '')
          if (exit.crashed) recordExit(info, exit.limit !== undefined ? `killed by the ${exit.limit} limit${exit.reason !== undefined ? `: ${exit.reason}` : ''}` : exit.signal != null ? `killed by ${exit.signal}` : `exited with code ${exit.code}`, exit.stderrTail)
        }
        info.endedMs = this.init.clock.now()
        removeVolume()
        this.dispatchEvent(new CustomEvent('exit', { detail: { info, exit } }))
      })
      log('replica %s of %s@%s ready (pid %d, %s)', instanceId, spec.cell, spec.version, capsid.pid, capsid.mode)
      this.dispatchEvent(new CustomEvent('ready', { detail: info }))
      if (this.closing) void this.drain(instanceId, this.closingOptions).catch(() => {})
      return info
    } catch (err) {
      info.state = 'crashed'
      info.endedMs = this.init.clock.now()
      const e = err as Error & { stderrTail?: unknown }
      recordExit(info, `${e.name}: ${String(e.message).split('\n')[0]}`, Array.isArray(e.stderrTail) ? e.stderrTail.map(String) : [])
      removeVolume()
      this.dispatchEvent(new CustomEvent('exit', { detail: { info, error: err } }))
      throw err
    }
  }

  /**
   * Drains one replica: from now on its heartbeat says `draining` (callers stop picking it) and new
   * calls are refused with CapsidDrainingError (nothing ran: the caller retries elsewhere); calls in
   * flight get up to the grace period, then the capsid stops. The state turns before the first await,
   * so a caller may publish a heartbeat right after calling this. Aborting `signal` kills it at once.
   */
  async drain (instanceId: string, options: { graceMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    const info = this.replicas.get(instanceId)
    if (info?.capsid == null || info.state === 'stopped' || info.state === 'crashed') return
    info.state = 'draining'
    const graceMs = options.graceMs ?? this.init.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS
    await this.track(info.capsid.stop({ drainMs: graceMs, ...(options.signal !== undefined ? { signal: options.signal } : {}) }))
    info.state = 'stopped'
    info.endedMs ??= this.init.clock.now()
  }

  /**
   * Replaces a stateful replica's volume contents: calls are refused from now on (FencedReplicaError,
   * nothing ran), the replica stops (calls in flight get `graceMs`), `restore` rewrites the volume
   * while the claim stays held, and a new replica starts on it. Resolves with the new replica.
   */
  async restartOnRestoredVolume (instanceId: string, restore: (volume: ReplicaVolume) => Promise<void>, options: { graceMs?: number, signal?: AbortSignal } = {}): Promise<ReplicaInfo> {
    const info = this.replicas.get(instanceId)
    if (info?.volume === undefined || info.spec === undefined || info.state !== 'ready') throw new NoReplicaError(`no ready stateful replica ${instanceId} on this node`)
    const volume = info.volume
    volume.pause()
    info.keepVolume = true
    try {
      await this.drain(instanceId, { graceMs: options.graceMs ?? 5_000, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
      await restore(volume)
    } finally {
      volume.resume()
    }
    return await this.spawn(info.spec, { volume, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  }

  /**
   * Drains every replica at once (see drain); a replica still starting drains as soon as it is up.
   * Resolves when all stopped (drains started elsewhere included) and no call is being answered.
   */
  async stopAll (options: { graceMs?: number, signal?: AbortSignal } = {}): Promise<void> {
    this.closing = true
    this.closingOptions = options
    this.closingAbort.abort(new CapsidStoppedError('node is stopping; a replica waiting for its claim was not started'))
    for (const r of this.list()) void this.drain(r.instanceId, options).catch(() => {})
    // Bounded: no spawn starts once closing, and every start and drain has its own deadline.
    while (this.pendingWork.size > 0) await Promise.allSettled([...this.pendingWork])
    await this.idle(options)
    // The run directory (one socket directory per replica) goes with the replicas: a node started
    // with a fresh identity each time, as tests and throwaway fleets do, would leave one per run.
    await rm(this.init.runDir, { recursive: true, force: true }).catch((err: unknown) => { log('removing %s: %e', this.init.runDir, err) })
  }

  /** Where the replicas' socket directories are (removed by stopAll). */
  get runDir (): string { return this.init.runDir }

  private async track<T> (work: Promise<T>): Promise<T> {
    this.pendingWork.add(work)
    try {
      return await work
    } finally {
      this.pendingWork.delete(work)
    }
  }

  /** Resolves once no call handed to a replica is still being answered (or `signal` aborts). */
  async idle (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.handling === 0 || options.signal?.aborted === true) return
    await new Promise<void>((resolve) => {
      const done = (): void => { this.idleWaiters.delete(done); options.signal?.removeEventListener('abort', done); resolve() }
      this.idleWaiters.add(done)
      options.signal?.addEventListener('abort', done, { once: true })
    })
  }

  /** Forget replicas that ended longer ago than the tombstone time. */
  private prune (): void {
    const horizon = this.init.clock.now() - (this.init.tombstoneMs ?? 60_000)
    for (const [id, r] of this.replicas) if (r.endedMs != null && r.endedMs < horizon) this.replicas.delete(id)
  }

  /** Heartbeats for the fleet. */
  instanceStates (): LocalInstanceState[] {
    this.prune()
    return this.list().filter(r => r.opening !== true).map(r => ({
      instanceId: r.instanceId,
      cell: r.cell,
      version: r.version,
      digest: r.digest,
      startedMs: r.startedMs,
      // A stateful replica whose lease ran out (a paused node that just resumed) is not ready,
      // whatever its process says: a heartbeat saying so would count it against the new owner.
      state: r.state === 'ready' && r.volume !== undefined && !r.volume.serving() ? 'draining' : r.state,
      cpuPercent: Math.min(r.load.cpuPercent, 100_000),
      memoryBytes: Math.round(r.load.memoryBytes),
      memoryPercent: Math.min(100, r.load.memoryPercent),
      qps: r.load.qps,
      p99Ms: r.load.p99Ms,
      inflight: r.capsid?.inFlight ?? 0,
      ...(r.readyMs != null ? { readyMs: r.readyMs } : {}),
      ...(r.endedMs != null ? { endedMs: r.endedMs } : {}),
      ...(r.exitReason != null && r.exitReason !== '' ? { exitReason: r.exitReason } : {}),
      ...(r.stderrTail != null && r.stderrTail.length > 0 ? { stderrTail: r.stderrTail } : {}),
      ...(r.capsid != null && r.capsid.idempotent.length > 0 ? { idempotent: r.capsid.idempotent.slice(0, 64) } : {}),
      ...(r.volume !== undefined ? { claim: { ordinal: Number(r.volume.claimId.slice(r.volume.claimId.lastIndexOf('/') + 1)), epoch: r.volume.epoch } } : {})
    }))
  }

  /**
   * The least busy ready replica of `cell`, of the `release` (digest) the caller chose when this node
   * runs one (during a rollout a node may run both releases: the caller's canary split holds only if
   * the node keeps it), else of any release; CapsidDrainingError when the ones here are draining,
   * else NoReplicaError (both: nothing ran, callers retry elsewhere).
   */
  private pick (cell: string, release: string | undefined): ReplicaInfo & { capsid: Capsid } {
    let best: (ReplicaInfo & { capsid: Capsid }) | undefined
    let chosen: (ReplicaInfo & { capsid: Capsid }) | undefined
    let draining = false
    for (const r of this.replicas.values()) {
      if (r.cell === cell && r.state === 'draining') draining = true
      // The capsid's own state turns first when its socket drops, before the process exit is reaped.
      if (r.cell !== cell || r.state !== 'ready' || r.capsid == null || r.capsid.state !== 'ready') continue
      if (best == null || r.capsid.inFlight < best.capsid.inFlight) best = r as ReplicaInfo & { capsid: Capsid }
      if (r.digest === release && (chosen == null || r.capsid.inFlight < chosen.capsid.inFlight)) chosen = r as ReplicaInfo & { capsid: Capsid }
    }
    if (chosen != null) return chosen
    if (best == null && draining) throw new CapsidDrainingError(`the replicas of "${cell}" on this node are draining`)
    if (best == null) throw new NoReplicaError(`this node runs no ready replica of "${cell}"`)
    return best
  }

  /**
   * A call into a stateful replica (its lease checked before and after) or in a sampled trace (a
   * child span of the node's server span).
   */
  private async callTracedOrStateful (r: ReplicaInfo & { capsid: Capsid }, ctx: CallContext, abortSlot: ServerCall | undefined, tracer: Tracer | undefined): Promise<Uint8Array> {
    const signal = abortSlot === undefined ? ctx.signal : undefined
    const send = (traceparent: string | undefined): Promise<Uint8Array> => { // eslint-disable-line @typescript-eslint/promise-function-async
      this.handling++
      return r.capsid.call(ctx.method, ctx.payload, { deadlineMs: ctx.deadlineMs, traceparent, caller: ctx.principal, signal, abortSlot, reported: true })
    }
    const answer = tracer === undefined || this.unsampled(ctx.traceparent)
      ? await send(ctx.traceparent)
      : await traced(tracer, `capsid ${ctx.cell}/${ctx.method}`, { kind: 'internal', ...(ctx.traceparent !== undefined ? { parent: ctx.traceparent } : {}), attributes: { 'cell.replica': r.instanceId } }, send)
    // The lease may have ended while the replica worked (the node was paused): that answer is never sent.
    if (r.volume !== undefined && !r.volume.serving()) throw this.fenced(r)
    return answer
  }

  /** A call into a capsid ended (Capsid.onCallEnded): its latency, and a stop waiting for calls to end. */
  private callEnded (info: ReplicaInfo, elapsedMs: number): void {
    info.window.latency.record(elapsedMs)
    // Only calls this set handed to the capsid are reported (`reported`), each once: a call made
    // straight into the capsid neither counts nor uncounts.
    if (--this.handling === 0) for (const wake of [...this.idleWaiters]) wake()
  }

  /**
   * A replica whose claim lease ended: the error for its caller, and the replica stops at once (no
   * grace: another node may own the claim now) so the fleet sees it gone.
   */
  private fenced (r: ReplicaInfo): FencedReplicaError {
    if (r.state === 'ready') {
      log.error('replica %s lost the lease on claim %s (epoch %d): stopping it, refusing its calls', r.instanceId, r.volume?.claimId, r.volume?.epoch)
      void this.drain(r.instanceId, { graceMs: 0 }).catch(() => {})
    }
    return new FencedReplicaError(`the lease of replica ${r.instanceId} on claim ${r.volume?.claimId ?? '?'} (epoch ${r.volume?.epoch ?? '?'}) has ended; the claim may have a new owner`)
  }

  /**
   * The synapse server port: calls land in a local capsid.
   *
   * A call's cancellation (the caller's CANCEL, the session's deadline, the channel closing) reaches
   * the capsid through the session's call context itself: the capsid's call in flight is its one
   * `onAbort` listener (ServerCall, a CallAbortSlot), so a call needs no AbortController (ctx.signal
   * makes one on first use), EventTarget listener or object of its own for it. A context the session
   * did not make (a wrapper's) is followed through ctx.signal.
   */
  handler (): SynapseHandler {
    return {
      call: (ctx: CallContext): Promise<Uint8Array> => { // eslint-disable-line @typescript-eslint/promise-function-async
        // Not async: an untraced call into a stateless replica returns the capsid's own promise,
        // with no async frame, await or options of its own (the largest allocation per call on the
        // node's path when it was async). The capsid tells onCallEnded (set at spawn) when it ends.
        let r: ReplicaInfo & { capsid: Capsid }
        try {
          r = this.pick(ctx.cell, ctx.release)
        } catch (err) {
          return Promise.reject(err)
        }
        if (r.volume !== undefined && !r.volume.serving()) return Promise.reject(this.fenced(r))
        r.calls++
        r.window.calls++
        // The session's own context only: a wrapper's, even one inheriting from it, would keep the listener to itself.
        const abortSlot = Object.getPrototypeOf(ctx) === ServerCall.prototype ? ctx as ServerCall : undefined
        const tracer = this.init.tracer
        if (r.volume === undefined && (tracer === undefined || this.unsampled(ctx.traceparent))) {
          this.handling++
          // The capsid copies the payload into its batch before call() returns: no copy of our own.
          return abortSlot !== undefined
            ? r.capsid.serve(ctx.method, ctx.payload, ctx.deadlineMs, ctx.traceparent, ctx.principal, abortSlot)
            : r.capsid.call(ctx.method, ctx.payload, { deadlineMs: ctx.deadlineMs, traceparent: ctx.traceparent, caller: ctx.principal, signal: ctx.signal, reported: true })
        }
        return this.callTracedOrStateful(r, ctx, abortSlot, tracer)
      },
      message: (ctx: MessageContext) => {
        const r = this.pick(ctx.cell, ctx.release)
        if (r.volume !== undefined && !r.volume.serving()) throw this.fenced(r)
        // Copied into the capsid's batch before message() returns, like a call's payload.
        r.capsid.message(ctx.method, ctx.payload, { traceparent: ctx.traceparent, caller: ctx.principal })
      },
      stream: (ctx: CallContext) => {
        const r = this.pick(ctx.cell, ctx.release)
        if (r.volume !== undefined && !r.volume.serving()) throw this.fenced(r)
        return r.capsid.stream(ctx.method, ctx.payload.slice(), { deadlineMs: ctx.deadlineMs, traceparent: ctx.traceparent, caller: ctx.principal, signal: ctx.signal })
      }
    }
  }
}

/** Keep a crash's reason and stderr tail on the replica, bounded as its heartbeat will carry them. */
function recordExit (info: ReplicaInfo, reason: string, stderr: readonly string[]): void {
  const why = boundExitReason(reason)
  if (why !== '') info.exitReason = why
  const tail = boundStderrTail(stderr)
  if (tail.length > 0) info.stderrTail = tail
}
