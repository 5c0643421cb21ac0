import { FrameEncoder } from '../wire/index.ts'
import { BackpressureError, ChannelClosedError } from './errors.ts'
import type { StatsCounters } from './stats.ts'

/** Microtask turns a scheduled write waits for frames committed a few promise reactions later. */
const FLUSH_DEFER_HOPS = 4

/** The part of a libp2p Stream the writer uses. */
export interface WritableStream {
  send(data: Uint8Array): boolean
  readonly writableNeedsDrain: boolean
  addEventListener(type: 'drain', listener: () => void, options?: { once?: boolean }): void
}

export interface FrameWriterInit {
  maxFrameBytes: number
  /** Flush at once when a batch reaches this size; otherwise at the end of the tick. */
  flushBytes: number
  /** Above this many queued bytes senders are told to wait (send() returns false). */
  highWaterBytes: number
  /** Hard cap on queued bytes: further one-way sends throw BackpressureError. */
  maxQueuedBytes: number
  /** Most callers that may wait for drain at once. */
  maxDrainWaiters: number
  onError(err: unknown): void
  /** Called after each flush that leaves the writer writable (cheap: the callee checks its own state). */
  onDrained?(): void
}

interface Waiter { resolve(): void, reject(err: unknown): void }

// Frames produced in one tick are encoded into one batch and handed to the stream in one send():
// at the end of the tick (a microtask), or immediately once the batch reaches flushBytes. While
// the stream asks for drain, frames accumulate in the encoder, bounded by maxQueuedBytes, and go
// out as one write when it drains. That batching is what makes small messages cheap.
export class FrameWriter {
  readonly encoder: FrameEncoder
  private readonly stream: WritableStream
  private readonly stats: StatsCounters
  private readonly init: FrameWriterInit
  private scheduled = false
  /** Microtask turns the scheduled flush has waited so far. */
  private hops = 0
  /** The stream returned false from send(); nothing more goes to it until it drains. */
  blocked = false
  private closedError: Error | undefined
  private waiters: Waiter[] = []

  constructor (stream: WritableStream, stats: StatsCounters, init: FrameWriterInit) {
    this.stream = stream
    this.stats = stats
    this.init = init
    this.encoder = new FrameEncoder({ maxFrameBytes: init.maxFrameBytes })
    this.flushTask = this.flushTask.bind(this)
    this.onStreamDrain = this.onStreamDrain.bind(this)
    this.afterStreamDrain = this.afterStreamDrain.bind(this)
  }

  get closed (): boolean {
    return this.closedError !== undefined
  }

  get queuedBytes (): number {
    return this.encoder.pendingBytes
  }

  /** Room for more without waiting. */
  get writable (): boolean {
    return !this.blocked && this.encoder.pendingBytes < this.init.highWaterBytes
  }

  /** Throws BackpressureError when the hard cap is reached, ChannelClosedError after close. */
  checkCapacity (): void {
    if (this.closedError !== undefined) throw new ChannelClosedError('channel is closed', { cause: this.closedError })
    if (this.encoder.pendingBytes >= this.init.maxQueuedBytes) {
      throw new BackpressureError(`outgoing queue holds ${this.encoder.pendingBytes} bytes (limit ${this.init.maxQueuedBytes})`)
    }
  }

  /** Call after encoding one or more frames. */
  commit (): void {
    if (this.encoder.pendingBytes >= this.init.flushBytes) {
      this.flush()
    } else if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(this.flushTask)
    }
  }

  flush (): void {
    if (this.blocked || this.closedError !== undefined) return
    const frames = this.encoder.pendingFrames
    if (frames === 0) return
    const bytes = this.encoder.take()
    this.stats.writes++
    this.stats.framesOut += frames
    this.stats.bytesOut += bytes.length
    let ok: boolean
    try {
      ok = this.stream.send(bytes)
    } catch (err) {
      this.init.onError(err)
      return
    }
    if (!ok) {
      this.blocked = true
      this.awaitStreamDrain()
      return
    }
    this.notifyDrained()
  }

  /** Resolves once senders may continue (below the high-water mark and not blocked). */
  async waitForDrain (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.closedError !== undefined) throw new ChannelClosedError('channel is closed', { cause: this.closedError })
    if (this.writable) return
    options.signal?.throwIfAborted()
    if (this.waiters.length >= this.init.maxDrainWaiters) {
      throw new BackpressureError(`more than ${this.init.maxDrainWaiters} callers waiting for drain`)
    }
    const waiter: Waiter = { resolve: noop, reject: noop }
    const promise = new Promise<void>((resolve, reject) => { waiter.resolve = resolve; waiter.reject = reject })
    this.waiters.push(waiter)
    const signal = options.signal
    if (signal === undefined) return promise
    const onAbort = (): void => {
      const i = this.waiters.indexOf(waiter)
      if (i >= 0) this.waiters.splice(i, 1)
      waiter.reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await promise
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** Stops writing; fails drain waiters. Queued frames are dropped. */
  close (err: Error): void {
    if (this.closedError !== undefined) return
    this.closedError = err
    this.encoder.reset()
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.reject(new ChannelClosedError('channel is closed', { cause: err }))
  }

  /**
   * The write waits FLUSH_DEFER_HOPS turns of the microtask queue. Frames committed in this tick
   * go out as one write only if they are committed before it, and answers settle at different
   * promise depths (a sampled call's span ends one reaction later; a caller's next call may start
   * one reaction later): without the wait, each such straggler split the batch in two, the other
   * end then answered in two batches, and the split compounded round after round until calls
   * went one per write. A few microtasks per batch, no timer: latency stays within the tick.
   */
  private flushTask (): void {
    if (this.hops < FLUSH_DEFER_HOPS) {
      this.hops++
      queueMicrotask(this.flushTask)
      return
    }
    this.hops = 0
    this.scheduled = false
    this.flush()
  }

  // Not stream.onDrain(): in @libp2p/utils 7 its promise is never reset after the first drain,
  // so later calls resolve at once while the stream still needs drain; a sender looping on it
  // never yields to I/O and piles everything into the muxer's unbounded write buffer. The
  // 'drain' event is also dispatched to every stream when the connection drains, even one whose
  // own send window is still empty, so re-check writableNeedsDrain after the stream has reacted
  // (its own drain handler re-runs its send queue in a microtask queued before ours).
  private awaitStreamDrain (): void {
    this.stream.addEventListener('drain', this.onStreamDrain, { once: true })
  }

  private onStreamDrain (): void {
    queueMicrotask(this.afterStreamDrain)
  }

  private afterStreamDrain (): void {
    if (this.closedError !== undefined) return
    if (this.stream.writableNeedsDrain) {
      this.awaitStreamDrain()
      return
    }
    this.blocked = false
    this.flush()
    if (!this.blocked) this.notifyDrained()
  }

  private notifyDrained (): void {
    if (this.encoder.pendingBytes >= this.init.highWaterBytes || this.blocked) return
    this.init.onDrained?.()
    if (this.waiters.length === 0) return
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.resolve()
  }
}

function noop (): void {}
