import { FrameDecoder } from '../wire/index.ts'
import type { Frame } from '../wire/index.ts'
import type { Clock } from '../ports.ts'
import { ChannelClosedError } from './errors.ts'
import type { WireErrorRegistry } from './error-registry.ts'
import { encodeErrorPayload } from './handshake.ts'
import { StatsCounters } from './stats.ts'
import { FrameWriter } from './writer.ts'
import type { Logger, Stream } from '@libp2p/interface'

export interface EndpointLimits {
  maxFrameBytes: number
  flushBytes: number
  highWaterBytes: number
  maxQueuedBytes: number
  maxDrainWaiters: number
  maxInflight: number
  handshakeTimeoutMs: number
}

export interface EndpointInit {
  stream: Stream
  remotePeer: string
  clock: Clock
  /**
   * `clock.now`, read once per turn (turn-clock.ts): the synapse service shares one among its
   * channels and sessions. Calls arrive and are answered in batches, so one reading serves a batch.
   */
  now?: () => number
  log: Logger
  errors: WireErrorRegistry
  limits: EndpointLimits
}

// What client channels and server sessions share: one libp2p stream, a batching writer, a
// streaming decoder, counters, and a single idempotent shutdown path that every failure funnels
// into, so nothing pending can outlive the stream.
export abstract class Endpoint {
  readonly remotePeer: string
  readonly counters = new StatsCounters()
  protected readonly transport: Stream
  protected readonly writer: FrameWriter
  protected readonly decoder: FrameDecoder
  protected readonly clock: Clock
  /** The clock read once per turn (EndpointInit.now); `clock.now` when none was given. */
  protected readonly now: () => number
  protected readonly log: Logger
  protected readonly errors: WireErrorRegistry
  protected readonly limits: EndpointLimits
  /** Set once; the reason the endpoint ended. */
  protected endError: Error | undefined
  private readPaused = false
  /** Resolves (never rejects) once the endpoint has ended, with the reason. */
  readonly closed: Promise<Error>
  private resolveClosed!: (err: Error) => void

  constructor (init: EndpointInit) {
    this.transport = init.stream
    this.remotePeer = init.remotePeer
    this.clock = init.clock
    this.now = init.now ?? (() => init.clock.now())
    this.log = init.log
    this.errors = init.errors
    this.limits = init.limits
    this.closed = new Promise(resolve => { this.resolveClosed = resolve })
    this.writer = new FrameWriter(this.transport, this.counters, {
      maxFrameBytes: init.limits.maxFrameBytes,
      flushBytes: init.limits.flushBytes,
      highWaterBytes: init.limits.highWaterBytes,
      maxQueuedBytes: init.limits.maxQueuedBytes,
      maxDrainWaiters: init.limits.maxDrainWaiters,
      onError: (err) => { this.fail(err) },
      onDrained: () => { this.maybeResume() }
    })
    this.decoder = new FrameDecoder((f) => { this.counters.framesIn++; this.onFrame(f) }, { maxFrameBytes: init.limits.maxFrameBytes })
    this.transport.addEventListener('message', (evt) => {
      const data = evt.data
      this.counters.bytesIn += data.byteLength
      // Ended (closing, or refused): what still arrives is dropped, not decoded.
      if (this.endError !== undefined) return
      try {
        this.decoder.push(data)
      } catch (err) {
        this.fail(err)
        return
      }
      // Our replies cannot leave as fast as requests arrive: stop reading so the remote's
      // muxer window fills and the backpressure reaches the sender instead of our memory.
      if (!this.writer.writable && !this.readPaused && this.endError === undefined) {
        this.readPaused = true
        this.log('pausing reads: outgoing queue %d bytes, blocked %s', this.writer.queuedBytes, this.writer.blocked)
        try { this.transport.pause() } catch { this.readPaused = false }
      }
    })
    this.transport.addEventListener('close', (evt) => {
      this.shutdown(new ChannelClosedError('synapse stream closed', { cause: evt.error }))
    })
    this.transport.addEventListener('remoteCloseWrite', () => { this.onRemoteCloseWrite() })
  }

  get isOpen (): boolean {
    return this.endError === undefined
  }

  protected abstract onFrame (frame: Frame): void
  /** Fails everything pending; called exactly once. */
  protected abstract cleanup (err: Error): void

  protected onRemoteCloseWrite (): void {
    this.shutdown(new ChannelClosedError('remote closed the synapse stream'))
    this.closeStream()
  }

  /** A protocol, codec or transport failure: abort the stream and end. */
  protected fail (err: unknown): void {
    if (this.endError !== undefined) return
    const error = err instanceof Error ? err : new Error(String(err))
    this.log('synapse endpoint with %s failed - %e', this.remotePeer, error)
    this.shutdown(new ChannelClosedError(`synapse channel failed: ${error.message}`, { cause: error }))
    try { this.transport.abort(error) } catch {}
  }

  protected shutdown (err: Error): void {
    if (this.endError !== undefined) return
    this.endError = err
    this.writer.close(err)
    try {
      this.cleanup(err)
    } finally {
      this.resolveClosed(err)
    }
  }

  /**
   * Graceful: flush what is queued, close our writing end, and let the remote close its, within
   * handshakeTimeoutMs: a remote that never does (and may keep sending) would hold the stream
   * half-open, outside every channel count, for as long as it likes. Then the stream is aborted.
   */
  protected closeStream (options: { signal?: AbortSignal } = {}): Promise<void> {
    // close() may resolve once our end is closed; the timer runs until the whole stream is.
    const timer = this.clock.setTimeout(() => {
      if (this.transport.status === 'closed' || this.transport.status === 'aborted' || this.transport.status === 'reset') return
      try { this.transport.abort(new ChannelClosedError(`${this.remotePeer} did not close the synapse stream within ${this.limits.handshakeTimeoutMs} ms`)) } catch {}
    }, this.limits.handshakeTimeoutMs)
    this.transport.addEventListener('close', () => { this.clock.clearTimeout(timer) }, { once: true })
    return this.transport.close(options).catch((err: unknown) => {
      try { this.transport.abort(err instanceof Error ? err : new Error(String(err))) } catch {}
    })
  }

  protected sendError (type: number, id: number, err: unknown): void {
    const { name, message } = this.errors.toWire(err)
    try {
      this.writer.encoder.frame(type, id, encodeErrorPayload(name, message))
      this.writer.commit()
    } catch (encodeErr) {
      this.fail(encodeErr)
    }
  }

  private maybeResume (): void {
    if (!this.readPaused || this.endError !== undefined) return
    this.readPaused = false
    this.log('resuming reads')
    try { this.transport.resume() } catch {}
  }
}
