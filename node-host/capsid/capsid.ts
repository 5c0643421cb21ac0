// One replica of a cell artifact, running in a sandbox and spoken to over a Unix socket: the
// host-side handle (calls, streams, messages, drain, crash detection, logs). start-capsid.ts
// launches the process and hands it here.
import type { ChildProcess } from 'node:child_process'
import type { Server, Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import { logger } from '@libp2p/logger'
import type { CallerInfo } from '../../core/cell.ts'
import { systemClock } from '../../core/ports.ts'
import type { Clock } from '../../core/ports.ts'
import {
  CapsidStartError, ReplicaCrashedError, UnknownMethodError, CapsidBusyError, CapsidStoppedError,
  CapsidDrainingError, DeadlineExceededError, CapsidProtocolError, RemoteHandlerError
} from './errors.ts'
import type { ExitInfo } from './errors.ts'
import { FrameBatch, FrameDecoder, FrameType, MAX_CALLER_SLOTS, MAX_FRAME_BYTES } from './protocol.ts'
import type { SandboxMode } from './sandbox.ts'
import type { CapsidLimits } from './limits.ts'
import { LogRing } from './log-ring.ts'
import { DeadlineWheel } from '../../core/synapse/deadlines.ts'
import { turnCached } from '../../core/synapse/turn-clock.ts'
import type { CallAbortSlot } from '../../core/synapse/types.ts'
import type { LogLine } from './log-ring.ts'

const log = logger('cell:capsid')

export type CapsidState = 'starting' | 'ready' | 'draining' | 'stopped' | 'crashed'

export interface CapsidInit {
  /** The built artifact (an ESM bundle), e.g. from ArtifactStore.pathOf(digest). */
  artifactPath: string
  /** The replica's volume on the host; mounted at /cell/data (bwrap) or passed as CELL_DATA_DIR. */
  dataDir: string
  cell: string
  instanceId: string
  /** Parent of the per-instance socket directory. Keep it short: Unix socket paths max ~107 bytes. */
  runDir: string
  sandbox?: SandboxMode
  /** Extra environment for the replica. Nothing of the host's environment is inherited. */
  env?: Record<string, string>
  startTimeoutMs?: number
  maxInFlight?: number
  logLines?: number
  /** V8 old-space limit for the replica; past it the replica dies (reported as a crash). */
  maxHeapMb?: number
  /**
   * Strict (bwrap) capsids only: memory, processes, open files and /tmp size; unset fields take
   * DEFAULT_LIMITS (512 MiB, 128, 1024, 64 MiB). A replica past its memory limit is killed and
   * reported as a crash with `exit.limit = 'memory'`; past the others its syscalls fail (EAGAIN,
   * EMFILE, ENOSPC) and it lives on.
   */
  limits?: Partial<CapsidLimits>
  /** Chunks a stream may send ahead of the consumer. */
  streamCredit?: number
  clock?: Clock
}

export interface CapsidExit extends ExitInfo {
  /** True when the replica exited without being asked to stop. */
  crashed: boolean
}

export interface CapsidCallOptions {
  /** Absolute deadline, ms since epoch. */
  deadlineMs: number
  traceparent?: string
  caller?: CallerInfo
  /** An AbortSignal, or a CallAbort where one per call would cost too much. */
  signal?: CapsidAbortSignal
  /**
   * A synapse call's one-listener abort hook (its ServerCall): the call in the capsid becomes its
   * `onAbort` until it settles, so the session's abort (CANCEL, deadline, channel closed) reaches the
   * replica with no signal, listener or closure made for it.
   */
  abortSlot?: CallAbortSlot
  /**
   * Report this call to Capsid.onCallEnded when it ends (the replica set counts the calls it hands
   * to a capsid until then). Calls made straight into the capsid leave it unset and are not reported.
   */
  reported?: boolean
}

/** What the capsid uses of a call's signal: AbortSignal has it, and so has CallAbort. */
export interface CapsidAbortSignal {
  readonly aborted: boolean
  readonly reason: unknown
  throwIfAborted(): void
  addEventListener(type: 'abort', listener: EventListenerObject, options?: { once?: boolean }): void
  removeEventListener(type: 'abort', listener: EventListenerObject): void
}

/**
 * A one-listener abort source for one call: what an AbortController and its signal do for a call
 * into a capsid, without the EventTarget (its listener bookkeeping cost about half a microsecond
 * per call on the node's hot path).
 */
export class CallAbort implements CapsidAbortSignal {
  aborted = false
  reason: unknown = undefined
  private listener: EventListenerObject | undefined

  abort (reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    const l = this.listener
    this.listener = undefined
    l?.handleEvent(new Event('abort'))
  }

  throwIfAborted (): void {
    if (this.aborted) throw this.reason
  }

  addEventListener (_type: 'abort', listener: EventListenerObject): void {
    if (this.listener !== undefined && this.listener !== listener) throw new TypeError('a CallAbort takes one listener')
    this.listener = listener
  }

  removeEventListener (_type: 'abort', listener: EventListenerObject): void {
    if (this.listener === listener) this.listener = undefined
  }
}

export interface CapsidStopOptions {
  /** How long in-flight calls may take to finish before SIGTERM. */
  drainMs?: number
  /** How long after SIGTERM before SIGKILL. */
  killMs?: number
  signal?: AbortSignal
}

/** @internal what start-capsid hands the capsid about the sandbox it built. */
export interface CapsidHooks {
  /** The limits in force (strict capsids). */
  limits?: CapsidLimits
  /** Which limit, if any, ended the process: asked once it has exited. */
  exitReason?: () => Promise<{ limit: 'memory', reason: string } | undefined>
  /** Release what the sandbox held on the host (cgroups, uid) once the process is gone. */
  release?: () => Promise<void>
}

interface Pending {
  onResult(payload: Uint8Array): void
  onChunk(payload: Uint8Array): void
  onEnd(): void
  onError(err: Error): void
}

/**
 * One call or stream in flight: settles once (result, end, error, deadline, abort), then lets go
 * of its deadline slot, its abort listener (itself: handleEvent) and its caller slot. A unary
 * call's promise is settled directly (resolve/reject), a stream's through its handlers: one object
 * per call, no closures of its own.
 */
class OpenCall implements Pending {
  deadlineKey: number | undefined
  id = 0
  readonly method: string
  readonly signal: CapsidAbortSignal | undefined
  /** The synapse call whose `onAbort` this is while it is in flight (CapsidCallOptions.abortSlot). */
  abortSlot: CallAbortSlot | undefined = undefined
  /** When it was sent (the capsid's clock, read once per turn), for Capsid.onCallEnded. */
  startedMs = 0
  /** Told to Capsid.onCallEnded when it ends (CapsidCallOptions.reported; always for serve()). */
  reported = false
  callerSlot = 0
  private readonly owner: { settle: (call: OpenCall) => boolean, cancel: (id: number) => void }
  /** A stream's handlers; undefined for a unary call. */
  readonly handlers: Pending | undefined
  private readonly resolve: ((payload: Uint8Array) => void) | undefined
  private readonly reject: ((err: Error) => void) | undefined

  constructor (owner: OpenCall['owner'], method: string, signal: CapsidAbortSignal | undefined, handlers: Pending | undefined,
    resolve?: (payload: Uint8Array) => void, reject?: (err: Error) => void) {
    this.owner = owner
    this.method = method
    this.handlers = handlers
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
  }

  onResult (payload: Uint8Array): void {
    if (!this.owner.settle(this)) return
    if (this.handlers !== undefined) this.handlers.onResult(payload)
    else this.resolve?.(payload)
  }

  onChunk (payload: Uint8Array): void {
    if (this.handlers !== undefined) this.handlers.onChunk(payload)
    else this.onError(new CapsidProtocolError('chunk for a unary call'))
  }

  onEnd (): void {
    if (this.handlers === undefined) { this.onError(new CapsidProtocolError('end for a unary call')); return }
    if (this.owner.settle(this)) this.handlers.onEnd()
  }

  onError (err: Error): void { this.fail(err, false) }
  /** The caller's signal aborted. */
  handleEvent (): void { this.fail(this.signal?.reason as Error, true) }
  /** The synapse call's abort slot fired (CallAbortListener). */
  callAborted (reason: Error): void { this.fail(reason, true) }
  expire (): void { this.fail(new DeadlineExceededError(`${this.method} passed its deadline`), true) }

  private fail (err: Error, cancel: boolean): void {
    if (!this.owner.settle(this)) return
    if (cancel) this.owner.cancel(this.id)
    if (this.handlers !== undefined) this.handlers.onError(err)
    else this.reject?.(err)
  }
}

/** Bytes queued on the socket before new calls are refused as busy. */
const MAX_WRITE_BUFFER_BYTES = 64 * 1024 * 1024
/** After the process exits, how long to wait for its pipes to close so the stderr tail is whole. */
const PIPE_CLOSE_WAIT_MS = 1000
/** After the socket drops unexpectedly, how long the process gets to exit on its own. */
const SOCKET_LOSS_KILL_MS = 2000
const MAX_TIMER_MS = 0x7fff_ffff

function remoteError (meta: any): Error {
  const name = typeof meta?.name === 'string' ? meta.name : 'Error'
  const message = typeof meta?.message === 'string' ? meta.message : ''
  switch (name) {
    case UnknownMethodError.errorName: return new UnknownMethodError(message)
    case CapsidDrainingError.errorName: return new CapsidDrainingError(message)
    case DeadlineExceededError.errorName: return new DeadlineExceededError(message)
    // The runner aborts handlers with this when SIGTERM ends the drain grace period.
    case 'ReplicaStoppingError': return new CapsidStoppedError(message)
    default: return new RemoteHandlerError(name, message, typeof meta?.code === 'string' ? meta.code : undefined)
  }
}

export class Capsid extends EventTarget {
  readonly cell: string
  readonly instanceId: string
  readonly mode: 'bwrap' | 'process'
  readonly startedAtMs: number
  state: CapsidState = 'starting'
  /** Methods marked idempotent by the cell (from READY). */
  idempotent: string[] = []
  methods: string[] = []
  /** Resolves once the process has exited and everything is released. */
  readonly exited: Promise<CapsidExit>

  private readonly child: ChildProcess
  private readonly server: Server
  private readonly instDir: string
  private readonly clock: Clock
  private readonly logRing: LogRing
  private readonly maxInFlight: number
  private readonly streamCredit: number
  private readonly pending = new Map<number, Pending>()
  private readonly deadlines: DeadlineWheel
  /** The clock read once per batch of calls (core/synapse/turn-clock.ts): clock reads cost here. */
  private readonly turnNow: () => number
  /** What an OpenCall may do to this capsid: settle itself, cancel its id. */
  private readonly callOwner = {
    settle: (call: OpenCall): boolean => {
      if (this.pending.get(call.id) !== call) return false
      this.pending.delete(call.id)
      if (call.deadlineKey !== undefined) this.deadlines.remove(call.id, call.deadlineKey)
      call.signal?.removeEventListener('abort', call)
      const abortSlot = call.abortSlot
      if (abortSlot !== undefined && abortSlot.onAbort === call) abortSlot.onAbort = undefined
      this.releaseSlot(call.callerSlot)
      if (call.reported) this.callEnded(this.turnNow() - call.startedMs)
      return true
    },
    cancel: (id: number): void => { this.cancel(id) }
  }
  private readonly token: string
  private sock?: Socket
  /** Frames for the replica, written once per tick. */
  private readonly out = new FrameBatch(MAX_FRAME_BYTES)
  private flushScheduled = false
  /** Caller slots (1..MAX_CALLER_SLOTS): who fills each, calls in flight naming it, and the reverse lookup. */
  private readonly slotOwner: Array<CallerInfo | undefined> = []
  private readonly slotRefs = new Uint32Array(MAX_CALLER_SLOTS + 1)
  private readonly slotOf = new WeakMap<CallerInfo, number>()
  private slotsUsed = 0
  private slotCursor = 0
  private nextIdValue = 1
  private stopRequested = false
  private exitInfo?: CapsidExit
  private resolveExited!: (exit: CapsidExit) => void
  private readyWaiter?: { resolve: () => void, reject: (err: Error) => void }
  private killTimer?: unknown
  private exitStarted = false
  private readonly hooks: CapsidHooks
  /** The limits the replica runs under (strict capsids; undefined in process mode). */
  readonly limits?: CapsidLimits

  /** @internal use startCapsid */
  constructor (init: CapsidInit, mode: 'bwrap' | 'process', child: ChildProcess, server: Server, instDir: string, token: string, hooks: CapsidHooks = {}) {
    super()
    this.hooks = hooks
    this.limits = hooks.limits
    this.cell = init.cell
    this.instanceId = init.instanceId
    this.mode = mode
    this.child = child
    this.server = server
    this.instDir = instDir
    this.token = token
    this.clock = init.clock ?? systemClock
    this.startedAtMs = this.clock.now()
    this.logRing = new LogRing(init.logLines ?? 1000)
    this.maxInFlight = init.maxInFlight ?? 1024
    this.streamCredit = Math.max(2, init.streamCredit ?? 64)
    this.exited = new Promise(resolve => { this.resolveExited = resolve })
    const clock = this.clock
    this.turnNow = turnCached(() => clock.now())
    this.deadlines = new DeadlineWheel(this.clock, (id, key) => {
      const call = this.pending.get(id) as OpenCall | undefined
      // The wheel may name an id that ended, or whose id a later call reuses with another deadline.
      if (call === undefined || call.deadlineKey !== key) return
      call.deadlineKey = undefined
      call.expire()
    })

    child.stdout?.on('data', (chunk: Uint8Array) => { this.emitLogs(this.logRing.push('stdout', chunk, this.clock.now())) })
    child.stderr?.on('data', (chunk: Uint8Array) => { this.emitLogs(this.logRing.push('stderr', chunk, this.clock.now())) })
    let closeTimer: ReturnType<typeof setTimeout> | undefined
    child.once('exit', (code, signal) => {
      closeTimer = setTimeout(() => { this.handleExit(code, signal) }, PIPE_CLOSE_WAIT_MS)
    })
    child.once('close', (code, signal) => {
      clearTimeout(closeTimer)
      this.handleExit(code, signal)
    })
    // A spawn failure emits 'error' and may never emit 'exit'.
    child.once('error', (err) => {
      log.error('%s/%s process error %s', this.cell, this.instanceId, err.message)
      if (child.pid === undefined) this.handleExit(null, null)
    })
    server.on('connection', sock => { this.onConnection(sock) })
  }

  get pid (): number | undefined { return this.child.pid }

  /** The last `n` lines of stdout and stderr, oldest first. */
  logs (n?: number): string[] {
    return this.logRing.tail(n).map(l => l.line)
  }

  logEntries (n?: number): LogLine[] {
    return this.logRing.tail(n)
  }

  /** The lines after sequence number `seq` (LogRing.since): what a log reader has not seen yet. */
  logsSince (seq: number, max?: number): LogLine[] {
    return this.logRing.since(seq, max)
  }

  /** Register a callback for the replica's exit (crash or stop). */
  onExit (fn: (exit: CapsidExit) => void): void {
    void this.exited.then(fn)
  }

  get inFlight (): number { return this.pending.size }

  /** @internal */
  async waitReady (timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => { this.readyWaiter = { resolve, reject } })
    const timer = this.clock.setTimeout(() => {
      this.readyWaiter?.reject(new CapsidStartError(`replica of ${this.cell} did not become ready within ${timeoutMs} ms`, this.logRing.stderrTail()))
    }, timeoutMs)
    const onAbort = (): void => { this.readyWaiter?.reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted === true) onAbort()
    try {
      await ready
    } catch (err) {
      this.stopRequested = true
      this.child.kill('SIGKILL')
      await this.exited
      // An early exit is reported by onExit with the final stderr; prefer that to a bare timeout.
      throw err
    } finally {
      this.clock.clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      this.readyWaiter = undefined
    }
  }

  /**
   * Told once for every reported unary call (serve(), or call() with `reported`) as it ends:
   * answered, failed, aborted, or refused at once (then 0 ms), before its promise settles, with its
   * time in ms from when it was sent. One hook per capsid (the replica set's latency window and its
   * count of calls being answered), none per call; calls made straight into the capsid are not told.
   */
  onCallEnded: ((elapsedMs: number) => void) | undefined = undefined

  /** A unary call; a refusal (busy, stopped, past its deadline, too large) is a rejection too. */
  call (method: string, payload: Uint8Array, options: CapsidCallOptions): Promise<Uint8Array> { // eslint-disable-line @typescript-eslint/promise-function-async
    // Not async: the promise below is the call's, with no second one wrapped around it.
    return new Promise<Uint8Array>((resolve, reject) => {
      const call = new OpenCall(this.callOwner, method, options.signal, undefined, resolve, reject)
      call.reported = options.reported === true
      try {
        this.open(FrameType.CALL, method, payload, options.traceparent, options.caller, options.abortSlot, call, options.deadlineMs)
      } catch (err) {
        if (call.reported) this.callEnded(0)
        throw err
      }
    })
  }

  /**
   * call() for a synapse call's own context, its options as arguments: the node's hot path makes no
   * options object per call. `abortSlot` is the call's abort hook (CapsidCallOptions.abortSlot).
   */
  serve (method: string, payload: Uint8Array, deadlineMs: number, traceparent: string | undefined, caller: CallerInfo, abortSlot: CallAbortSlot): Promise<Uint8Array> { // eslint-disable-line @typescript-eslint/promise-function-async
    return new Promise<Uint8Array>((resolve, reject) => {
      const call = new OpenCall(this.callOwner, method, undefined, undefined, resolve, reject)
      call.reported = true
      try {
        this.open(FrameType.CALL, method, payload, traceparent, caller, abortSlot, call, deadlineMs)
      } catch (err) {
        this.callEnded(0)
        throw err
      }
    })
  }

  private callEnded (elapsedMs: number): void {
    const hook = this.onCallEnded
    if (hook === undefined) return
    try {
      hook(elapsedMs)
    } catch (err) {
      log.error('%s/%s: onCallEnded threw - %e', this.cell, this.instanceId, err)
    }
  }

  /** Fire-and-forget. Throws only when the capsid cannot take it (stopped, draining, too large). */
  message (method: string, payload: Uint8Array, options: { traceparent?: string, caller?: CallerInfo } = {}): void {
    this.checkAccepting()
    // No answer comes back for a message, so nothing upstream waits on it: a replica that stops
    // reading its socket would otherwise have the host buffer every message sent to it.
    this.notBackedUp()
    this.writable()
    this.out.frame(FrameType.MESSAGE, 0, { method, traceparent: options.traceparent, caller: options.caller }, payload)
    this.queued()
  }

  /** Server stream: the handler returns an (async) iterable; each element arrives as one chunk. */
  async * stream (method: string, payload: Uint8Array, options: CapsidCallOptions): AsyncGenerator<Uint8Array, void, undefined> {
    const queue: Uint8Array[] = []
    let ended = false
    let failure: Error | undefined
    let wake: (() => void) | undefined
    const notify = (): void => { const w = wake; wake = undefined; w?.() }
    const id = this.open(FrameType.STREAM, method, payload, options.traceparent, options.caller, options.abortSlot, new OpenCall(this.callOwner, method, options.signal, {
      onResult: () => { failure = new CapsidProtocolError('result for a stream'); notify() },
      onChunk: (p) => {
        // The replica may only send what we credited; more means it ignores flow control.
        if (queue.length >= this.streamCredit) {
          failure = new CapsidProtocolError('stream exceeded its credit')
          this.cancel(id)
        } else {
          queue.push(p)
        }
        notify()
      },
      onEnd: () => { ended = true; notify() },
      onError: (err) => { failure = err; notify() }
    }), options.deadlineMs, this.streamCredit)
    let consumed = 0
    try {
      while (true) {
        const next = queue.shift()
        if (next !== undefined) {
          if (++consumed >= this.streamCredit / 2) {
            this.writeQuiet(FrameType.CREDIT, id, { n: consumed })
            consumed = 0
          }
          yield next
          continue
        }
        if (failure !== undefined) throw failure
        if (ended) return
        await new Promise<void>(resolve => { wake = resolve })
      }
    } finally {
      if (this.pending.has(id)) {
        this.cancel(id)
        this.pending.get(id)?.onError(new CapsidStoppedError('stream consumer stopped'))
      }
    }
  }

  /** Drain in-flight calls, then SIGTERM, then SIGKILL; resolves once the process is gone. */
  async stop (options: CapsidStopOptions = {}): Promise<CapsidExit> {
    const { drainMs = 10_000, killMs = 2_000, signal } = options
    if (this.exitInfo !== undefined) return this.exitInfo
    this.stopRequested = true
    const onAbort = (): void => { this.child.kill('SIGKILL') }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      if (signal?.aborted === true) onAbort()
      if (this.state === 'ready') {
        this.setState('draining')
        this.writeQuiet(FrameType.DRAIN, 0, undefined)
      }
      if (this.state === 'draining' && !await this.exitWithin(drainMs)) {
        log('%s/%s did not drain within %d ms, SIGTERM', this.cell, this.instanceId, drainMs)
        this.child.kill('SIGTERM')
      } else if (this.state === 'starting') {
        this.child.kill('SIGTERM')
      }
      if (!await this.exitWithin(killMs)) {
        log('%s/%s ignored SIGTERM for %d ms, SIGKILL', this.cell, this.instanceId, killMs)
        this.child.kill('SIGKILL')
      }
      const exit = await this.exited
      signal?.throwIfAborted()
      return exit
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  private async exitWithin (ms: number): Promise<boolean> {
    if (this.exitInfo !== undefined) return true
    let timer: unknown
    const timeout = new Promise<false>(resolve => { timer = this.clock.setTimeout(() => { resolve(false) }, ms) })
    try {
      return await Promise.race([this.exited.then(() => true as const), timeout])
    } finally {
      this.clock.clearTimeout(timer)
    }
  }

  private checkAccepting (): void {
    switch (this.state) {
      case 'ready': return
      case 'draining': throw new CapsidDrainingError(`replica ${this.cell}/${this.instanceId} is draining`)
      case 'crashed': throw new ReplicaCrashedError(`replica ${this.cell}/${this.instanceId} crashed`, this.exitInfo)
      case 'starting': throw new CapsidStoppedError(`replica ${this.cell}/${this.instanceId} is not ready`)
      default: throw new CapsidStoppedError(`replica ${this.cell}/${this.instanceId} is stopped`)
    }
  }

  /** Send a CALL or STREAM and register its handlers; returns the call id. Throws synchronously. */
  private open (type: number, method: string, payload: Uint8Array, traceparent: string | undefined, caller: CallerInfo | undefined,
    abortSlot: CallAbortSlot | undefined, call: OpenCall, deadlineMs: number, credit = 0): number {
    const signal = call.signal
    signal?.throwIfAborted()
    if (abortSlot?.aborted === true) throw abortSlot.abortReason
    this.checkAccepting()
    if (this.pending.size >= this.maxInFlight) throw new CapsidBusyError(`${this.pending.size} calls in flight on ${this.cell}/${this.instanceId}`)
    this.notBackedUp()
    const now = this.turnNow()
    const remaining = deadlineMs - now
    if (!(remaining > 0)) throw new DeadlineExceededError(`deadline of ${method} already passed`)
    this.writable()
    const id = this.allocateId()
    const callerSlot = this.callerSlot(caller)
    try {
      this.out.callFrame(type, id, method, deadlineMs, traceparent, callerSlot, credit, payload)
    } catch (err) {
      this.releaseSlot(callerSlot)
      throw err
    }
    this.queued()
    call.id = id
    call.callerSlot = callerSlot
    call.startedMs = now
    // Deadlines share a timer per 10 ms slot (core/synapse's wheel); beyond setTimeout's range, none.
    if (remaining <= MAX_TIMER_MS) call.deadlineKey = this.deadlines.add(id, deadlineMs)
    signal?.addEventListener('abort', call, { once: true })
    if (abortSlot !== undefined) {
      call.abortSlot = abortSlot
      abortSlot.onAbort = call
    }
    this.pending.set(id, call)
    return id
  }

  /**
   * The slot naming `caller` in the replica, filled by a CALLER frame (queued ahead of the call)
   * when the replica does not hold it yet. A slot changes hands only while no call in flight
   * names it, so a call's caller is never another's; with every slot in use the call is refused.
   */
  private callerSlot (caller: CallerInfo | undefined): number {
    if (caller === undefined) return 0
    let slot = this.slotOf.get(caller)
    if (slot === undefined || this.slotOwner[slot] !== caller) {
      slot = this.freeSlot()
      this.out.frame(FrameType.CALLER, slot, caller)
      this.slotOwner[slot] = caller
      this.slotOf.set(caller, slot)
    }
    this.slotRefs[slot]++
    return slot
  }

  private freeSlot (): number {
    if (this.slotsUsed < MAX_CALLER_SLOTS) return ++this.slotsUsed
    for (let i = 0; i < MAX_CALLER_SLOTS; i++) {
      this.slotCursor = this.slotCursor >= MAX_CALLER_SLOTS ? 1 : this.slotCursor + 1
      if (this.slotRefs[this.slotCursor] === 0) return this.slotCursor
    }
    throw new CapsidBusyError(`${MAX_CALLER_SLOTS} distinct callers in flight on ${this.cell}/${this.instanceId}`)
  }

  private releaseSlot (slot: number): void {
    if (slot !== 0 && this.slotRefs[slot] > 0) this.slotRefs[slot]--
  }

  private allocateId (): number {
    // u32 ids, skipping 0 (used by connection-level frames) and any still in flight.
    do {
      this.nextIdValue = this.nextIdValue >= 0xffff_ffff ? 1 : this.nextIdValue + 1
    } while (this.pending.has(this.nextIdValue))
    return this.nextIdValue
  }

  private cancel (id: number): void {
    this.writeQuiet(FrameType.CANCEL, id, undefined)
  }

  /** Refuses new work while the replica is not taking what was written to it (MAX_WRITE_BUFFER_BYTES). */
  private notBackedUp (): void {
    if ((this.sock?.writableLength ?? 0) + this.out.byteLength > MAX_WRITE_BUFFER_BYTES) throw new CapsidBusyError(`socket to ${this.cell}/${this.instanceId} is backed up`)
  }

  private writable (): void {
    if (this.sock === undefined || !this.sock.writable) throw new CapsidStoppedError(`socket to ${this.cell}/${this.instanceId} is closed`)
  }

  /** Best-effort control frames: a closed socket means the replica is gone, which onExit reports. */
  private writeQuiet (type: number, id: number, meta: unknown): void {
    if (this.sock?.writable !== true) return
    this.out.frame(type, id, meta)
    this.queued()
  }

  /** Frames queued in this tick go out in one write once it ends (like core/synapse's writer). */
  private queued (): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    process.nextTick(this.flush)
  }

  private readonly flush = (): void => {
    this.flushScheduled = false
    const bytes = this.out.take()
    const sock = this.sock
    if (bytes.byteLength === 0 || sock?.writable !== true) return
    sock.write(bytes)
    // Nothing left queued: the kernel took every byte during write(), so the batch buffer is free.
    if (sock.writableLength === 0) this.out.written()
  }

  private onConnection (sock: Socket): void {
    if (this.sock !== undefined || this.state !== 'starting') {
      sock.destroy()
      return
    }
    const decoder = new FrameDecoder(MAX_FRAME_BYTES)
    let authenticated = false
    sock.on('error', (err) => { log('%s/%s socket error %s', this.cell, this.instanceId, err.message) })
    // Frames are handled as they are decoded (FrameDecoder.each): no list or object per frame.
    const onFrame = (type: number, id: number, meta: any, payload: Uint8Array): boolean => {
      if (authenticated) return this.onFrame(type, id, meta, payload)
      if (type !== FrameType.READY || meta?.token !== this.token) {
        log('%s/%s rejected a connection without the token', this.cell, this.instanceId)
        sock.destroy()
        return false
      }
      authenticated = true
      this.onReady(sock, meta)
      return true
    }
    sock.on('data', (chunk: Uint8Array) => {
      try {
        decoder.each(chunk, onFrame)
      } catch (err: any) {
        this.protocolViolation(err)
        sock.destroy()
      }
    })
    sock.on('close', () => { if (this.sock === sock) this.onSocketLost() })
  }

  private onReady (sock: Socket, meta: any): void {
    this.sock = sock
    this.methods = Array.isArray(meta.methods) ? meta.methods.filter((m: unknown) => typeof m === 'string') : []
    this.idempotent = Array.isArray(meta.idempotent) ? meta.idempotent.filter((m: unknown) => typeof m === 'string') : []
    // One replica, one connection: stop listening (this also unlinks the socket file).
    this.server.close()
    this.setState('ready')
    log('%s/%s ready (pid %d, %s)', this.cell, this.instanceId, this.child.pid, this.mode)
    this.readyWaiter?.resolve()
    this.dispatchEvent(new CustomEvent('ready'))
  }

  /** A frame from the replica for a call; false once the replica broke the protocol. */
  private onFrame (type: number, id: number, meta: any, payload: Uint8Array): boolean {
    const p = this.pending.get(id)
    // Late replies to calls we already cancelled or timed out are expected; drop them.
    if (p === undefined) return true
    // payload is a plain Uint8Array view into the socket chunk (FrameDecoder).
    switch (type) {
      case FrameType.RESULT: p.onResult(payload); return true
      case FrameType.CHUNK: p.onChunk(payload); return true
      case FrameType.END: p.onEnd(); return true
      case FrameType.ERROR: p.onError(remoteError(meta)); return true
      default:
        this.protocolViolation(new CapsidProtocolError(`unexpected frame type ${type}`))
        return false
    }
  }

  private protocolViolation (err: Error): void {
    log.error('%s/%s broke the capsid protocol: %s', this.cell, this.instanceId, err.message)
    this.child.kill('SIGKILL')
  }

  private onSocketLost (): void {
    if (this.exitInfo !== undefined) return
    // The process normally follows within milliseconds; if it lingers without its socket it is useless.
    this.killTimer = this.clock.setTimeout(() => { this.child.kill('SIGKILL') }, SOCKET_LOSS_KILL_MS)
  }

  private emitLogs (lines: LogLine[]): void {
    for (const line of lines) this.dispatchEvent(new CustomEvent('log', { detail: line }))
  }

  private setState (state: CapsidState): void {
    this.state = state
    this.dispatchEvent(new CustomEvent('state', { detail: state }))
  }

  private handleExit (code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitStarted) return
    this.exitStarted = true
    this.clock.clearTimeout(this.killTimer)
    // Ask the sandbox which limit, if any, ended the process (a cgroup file read) before reporting.
    const reason = this.hooks.exitReason?.().catch(() => undefined) ?? Promise.resolve(undefined)
    void reason.then((why) => { this.finishExit(code, signal, why) })
  }

  private finishExit (code: number | null, signal: NodeJS.Signals | null, why: { limit: 'memory', reason: string } | undefined): void {
    this.emitLogs(this.logRing.end(this.clock.now()))
    const crashed = !this.stopRequested
    const exit: CapsidExit = { code, signal, stderrTail: this.logRing.stderrTail(), crashed, ...(why ?? {}) }
    this.exitInfo = exit
    const wasStarting = this.state === 'starting'
    this.setState(crashed ? 'crashed' : 'stopped')
    log('%s/%s exited code=%s signal=%s crashed=%s%s', this.cell, this.instanceId, code, signal, crashed, why !== undefined ? ` (${why.reason})` : '')
    const how = `(code ${code}, signal ${signal})${why !== undefined ? `: ${why.reason}` : ''}`
    const err = crashed
      ? new ReplicaCrashedError(`replica ${this.cell}/${this.instanceId} exited ${how}`, exit)
      : new CapsidStoppedError(`replica ${this.cell}/${this.instanceId} stopped`)
    for (const p of [...this.pending.values()]) p.onError(err)
    this.pending.clear()
    if (wasStarting) {
      this.readyWaiter?.reject(new CapsidStartError(`replica of ${this.cell} exited ${how} before it was ready`, exit.stderrTail))
    }
    this.sock?.destroy()
    this.server.close()
    void rm(this.instDir, { recursive: true, force: true }).catch(() => {}).then(async () => {
      await this.hooks.release?.().catch((err) => { log.error('%s/%s releasing the sandbox failed: %e', this.cell, this.instanceId, err) })
    }).then(() => {
      this.dispatchEvent(new CustomEvent('exit', { detail: exit }))
      this.resolveExited(exit)
    })
  }
}
