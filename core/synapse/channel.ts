import { FrameType, MAX_METHODS_PER_CHANNEL } from '../wire/index.ts'
import type { Frame } from '../wire/index.ts'
import { ClientStream } from './client-stream.ts'
import type { StreamOwner } from './client-stream.ts'
import { DeadlineWheel } from './deadlines.ts'
import { Endpoint } from './endpoint.ts'
import type { EndpointInit } from './endpoint.ts'
import {
  CallCancelledError, ChannelClosedError, ChannelExpiredError, DeadlineExceededError, HandshakeTimeoutError, ServerGoingAwayError,
  SynapseProtocolError, TooManyInflightError
} from './errors.ts'
import {
  SYNAPSE_VERSION, decodeErrorPayload, decodeGoAway, decodeHelloAck, encodeCredit, encodeHello
} from './handshake.ts'
import type { SynapseStats } from './stats.ts'
import type { AuthenticateServerPort, Principal, SynapseCallOptions } from './types.ts'

export interface ChannelInit extends EndpointInit {
  cell: string
  /** The release (artifact digest) named in HELLO: the server serves this channel from a replica of it when it runs one. */
  release?: string
  defaultTimeoutMs: number
  streamWindow: number
  /** When maxInflight is reached: wait for a slot (bounded by maxWaitingCalls) or throw. */
  inflightOverflow: 'wait' | 'throw'
  maxWaitingCalls: number
}

const EMPTY = new Uint8Array(0)

interface PendingCall {
  resolve(value: Uint8Array): void
  reject(err: unknown): void
  slot: number
  startMs: number
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
  /** Its place among the CALL and STREAM_OPEN frames this end sent (1, 2, …), matched against GOAWAY's count. */
  seq: number
}

function cancelled (signal: AbortSignal): Error {
  return new CallCancelledError('call cancelled by the caller', { cause: signal.reason })
}

/**
 * The client end of a synapse: one libp2p stream to one cell on one peer, multiplexing many
 * concurrent calls (pipelined by call id), one-way messages and server streams.
 */
export class Channel extends Endpoint implements StreamOwner {
  readonly cell: string
  /** The release this channel's calls are for, as HELLO named it (absent: any release of the cell). */
  readonly release?: string
  /** What authenticateServer returned for the remote, once the handshake is done. */
  serverPrincipal: Principal | undefined
  /** The credentials this end presented in its HELLO (a caller compares them with its current ones). */
  presented: Uint8Array | undefined
  private readonly defaultTimeoutMs: number
  private readonly streamWindow: number
  private readonly overflow: 'wait' | 'throw'
  private readonly maxWaitingCalls: number
  private readonly calls = new Map<number, PendingCall>()
  private readonly streams = new Map<number, ClientStream>()
  private readonly methodIds = new Map<string, number>()
  private readonly deadlines: DeadlineWheel
  private readonly slotWaiters: Array<() => void> = []
  private nextId = 1
  /** CALL and STREAM_OPEN frames sent so far. */
  private sent = 0
  /** The server's GOAWAY count of calls it read, once it said it is stopping. */
  private goneAway: number | undefined
  private handshake: { resolve(ack: Uint8Array): void, reject(err: unknown): void } | undefined
  private closeWhenIdleRequested = false

  constructor (init: ChannelInit) {
    super(init)
    this.cell = init.cell
    if (init.release !== undefined) this.release = init.release
    this.defaultTimeoutMs = init.defaultTimeoutMs
    this.streamWindow = init.streamWindow
    this.overflow = init.inflightOverflow
    this.maxWaitingCalls = init.maxWaitingCalls
    this.deadlines = new DeadlineWheel(this.clock, (id, key) => { this.expire(id, key) })
  }

  /** Calls plus open streams. */
  get inflight (): number {
    return this.calls.size + this.streams.size
  }

  stats (): SynapseStats {
    return this.counters.snapshot(this.isOpen ? 1 : 0)
  }

  /** Client side of the handshake; resolves when both ends accepted each other. */
  async handshakeWith (credentials: Uint8Array, traceparent: string | undefined, authenticateServer: AuthenticateServerPort, options: { signal?: AbortSignal }): Promise<void> {
    const controller = new AbortController()
    const timer = this.clock.setTimeout(() => {
      controller.abort(new HandshakeTimeoutError(`no HELLO_ACK from ${this.remotePeer} within ${this.limits.handshakeTimeoutMs} ms`))
    }, this.limits.handshakeTimeoutMs)
    const onAbort = (): void => { controller.abort(options.signal?.reason) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    this.presented = credentials
    try {
      options.signal?.throwIfAborted()
      const ackPromise = new Promise<Uint8Array>((resolve, reject) => {
        this.handshake = { resolve, reject }
        controller.signal.addEventListener('abort', () => { reject(controller.signal.reason) }, { once: true })
        void this.closed.then(reject)
      })
      this.writer.encoder.encode({
        type: FrameType.HELLO,
        traceparent,
        payload: encodeHello({ version: SYNAPSE_VERSION, cell: this.cell, credentials, maxFrameBytes: this.limits.maxFrameBytes, ...(this.release !== undefined ? { release: this.release } : {}) })
      })
      this.writer.commit()
      const ack = decodeHelloAck(await ackPromise)
      if (ack.maxFrameBytes > 0 && ack.maxFrameBytes < this.writer.encoder.maxFrameBytes) {
        // Refuse oversize calls locally, with FrameTooLargeError, instead of killing the channel.
        this.writer.encoder.maxFrameBytes = ack.maxFrameBytes
      }
      this.serverPrincipal = await authenticateServer({ remotePeerId: this.remotePeer, cell: this.cell, credentials: ack.credentials }, { signal: controller.signal }) ?? undefined
      controller.signal.throwIfAborted()
    } catch (err) {
      this.counters.rejected++
      this.fail(err)
      throw err
    } finally {
      this.handshake = undefined
      this.clock.clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Request/response. Rejects with the server's error (rebuilt by name), DeadlineExceededError, CallCancelledError or ChannelClosedError. */
  call (method: string, payload: Uint8Array, options: SynapseCallOptions = {}): Promise<Uint8Array> {
    if (this.endError !== undefined || this.goneAway !== undefined) return Promise.reject(this.closedError())
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs
    if (this.calls.size + this.streams.size >= this.limits.maxInflight || this.writer.queuedBytes >= this.limits.maxQueuedBytes) {
      return this.callWhenReady(method, payload, options, this.clock.now() + timeoutMs)
    }
    return this.startCall(method, payload, options, timeoutMs)
  }

  /**
   * One-way message, no promise. Returns false when the outgoing queue is above its high-water
   * mark (await onDrain() before sending more); throws BackpressureError when it is full,
   * ChannelClosedError when the channel ended, ServerGoingAwayError once the server said GOAWAY.
   */
  send (method: string, payload: Uint8Array): boolean {
    const w = this.writer
    w.checkCapacity()
    // The server drops what arrives after its GOAWAY: say so instead of sending it to nobody.
    if (this.goneAway !== undefined) throw this.closedError()
    const mid = this.methodIds.get(method)
    if (mid !== undefined) w.encoder.frame(FrameType.MESSAGE, 0, payload, mid)
    else this.encodeNamed(FrameType.MESSAGE, 0, method, payload, -1, undefined)
    this.counters.messages++
    w.commit()
    return w.writable
  }

  /** One-way message that waits for room instead of failing. */
  async sendAsync (method: string, payload: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.writer.writable) await this.writer.waitForDrain(options)
    this.send(method, payload)
  }

  /** Resolves when send() may be called again without piling up. */
  async onDrain (options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.writer.waitForDrain(options)
  }

  /** Server stream. Items arrive in order; breaking out of the loop cancels the server side. */
  stream (method: string, payload: Uint8Array, options: SynapseCallOptions = {}): AsyncIterable<Uint8Array> {
    return {
      [Symbol.asyncIterator]: () => this.openStream(method, payload, options)
    }
  }

  /** Flushes queued frames, fails pending calls with ChannelClosedError and closes the stream. */
  async close (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.endError !== undefined) return
    while ((this.writer.queuedBytes > 0 || this.writer.blocked) && this.endError === undefined) {
      this.writer.flush()
      if (this.writer.blocked) await this.writer.waitForDrain(options)
    }
    this.shutdown(new ChannelClosedError('channel closed locally'))
    await this.closeStream(options)
  }

  /** Whether the server said it is stopping (GOAWAY): the channel takes no new call and closes once idle. */
  get goingAway (): boolean {
    return this.goneAway !== undefined
  }

  /** Whether the server closed this channel because the chain this end presented expired. */
  get expired (): boolean {
    return this.endError?.cause instanceof ChannelExpiredError
  }

  /**
   * Closes once no call or stream is in flight (at once when none is): a caller that has moved to a
   * new channel (its chain rotated) lets the old one finish what it carries.
   */
  closeWhenIdle (): void {
    this.closeWhenIdleRequested = true
    if (this.inflight === 0) void this.close().catch(() => {})
  }

  /** Closes without flushing. */
  abort (err: Error): void {
    this.fail(err)
  }

  // StreamOwner
  grantCredit (id: number, count: number): void {
    if (this.endError !== undefined) return
    this.writer.encoder.frame(FrameType.CREDIT, id, encodeCredit(count))
    this.writer.commit()
  }

  cancelStream (id: number, _reason: Error): void {
    const s = this.streams.get(id)
    if (s === undefined) return
    this.releaseStream(id)
    this.sendCancel(id)
  }

  releaseStream (id: number): void {
    const s = this.streams.get(id)
    if (s === undefined) return
    this.streams.delete(id)
    if (s.slot >= 0) this.deadlines.remove(id, s.slot)
    this.counters.inflight--
    this.wakeSlotWaiter()
    if (this.closeWhenIdleRequested && this.inflight === 0) void this.close().catch(() => {})
  }

  protected onFrame (f: Frame): void {
    switch (f.type) {
      case FrameType.RESULT: {
        const call = this.calls.get(f.id)
        if (call === undefined) { this.counters.dropped++; return }
        this.finish(f.id, call)
        call.resolve(f.payload)
        return
      }
      case FrameType.ERROR: {
        const { name, message } = decodeErrorPayload(f.payload)
        const err = this.errors.fromWire(name, message)
        const call = this.calls.get(f.id)
        if (call !== undefined) {
          this.finish(f.id, call)
          this.counters.errors++
          call.reject(err)
          return
        }
        const s = this.streams.get(f.id)
        if (s !== undefined) { this.counters.errors++; s.fail(err); return }
        this.counters.dropped++
        return
      }
      case FrameType.STREAM_DATA: {
        const s = this.streams.get(f.id)
        if (s === undefined) { this.counters.dropped++; return }
        s.push(f.payload)
        return
      }
      case FrameType.STREAM_END: {
        const s = this.streams.get(f.id)
        if (s === undefined) { this.counters.dropped++; return }
        s.end()
        return
      }
      case FrameType.HELLO_ACK:
        if (this.handshake === undefined) throw new SynapseProtocolError('unexpected HELLO_ACK')
        this.handshake.resolve(f.payload.slice())
        this.handshake = undefined
        return
      case FrameType.REJECT: {
        const { name, message } = decodeErrorPayload(f.payload)
        const err = this.errors.fromWire(name, message)
        if (this.handshake !== undefined) {
          this.handshake.reject(err)
          this.handshake = undefined
        }
        this.fail(err)
        return
      }
      case FrameType.GOAWAY: {
        const read = decodeGoAway(f.payload)
        if (read !== undefined) {
          this.onGoAway(read)
          return
        }
        this.shutdown(new ChannelClosedError('server is going away'))
        void this.closeStream()
        return
      }
      default:
        throw new SynapseProtocolError(`unexpected frame type ${f.type} from the server`)
    }
  }

  protected cleanup (err: Error): void {
    this.deadlines.clear()
    const closed = err instanceof ChannelClosedError ? err : new ChannelClosedError('channel closed', { cause: err })
    for (const [, call] of this.calls) {
      if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort)
      this.counters.errors++
      call.reject(closed)
    }
    this.calls.clear()
    for (const s of [...this.streams.values()]) s.fail(closed)
    this.streams.clear()
    this.counters.inflight = 0
    for (const wake of this.slotWaiters.splice(0)) wake()
    this.handshake?.reject(closed)
    this.handshake = undefined
  }

  /**
   * The server stops and read `read` of the calls sent: the ones sent after them fail with
   * ServerGoingAwayError (nothing ran), the others get their answers; no new call goes out, and the
   * channel closes once idle. A count above what was sent is a protocol error.
   */
  private onGoAway (read: number): void {
    if (this.goneAway !== undefined) throw new SynapseProtocolError('a second GOAWAY')
    const unread = (this.sent - read) >>> 0
    if (unread > this.sent) throw new SynapseProtocolError(`GOAWAY says ${read} calls were read, but ${this.sent} were sent`)
    this.goneAway = read
    this.log('%s is going away: %d of the calls sent were not read', this.remotePeer, unread)
    if (unread > 0) {
      const err = new ServerGoingAwayError(`${this.remotePeer} is stopping and did not read this call to ${this.cell}: nothing ran`)
      const firstUnread = this.sent - unread
      for (const [id, call] of [...this.calls]) {
        if (call.seq <= firstUnread) continue
        this.finish(id, call)
        this.counters.errors++
        this.counters.unread++
        call.reject(err)
      }
      for (const s of [...this.streams.values()]) {
        if (s.seq <= firstUnread) continue
        this.counters.unread++
        s.fail(err)
      }
    }
    // Calls waiting for a slot fail by name now instead of when one frees.
    for (const wake of this.slotWaiters.splice(0)) wake()
    this.closeWhenIdle()
  }

  /**
   * Why a call on this ended channel fails: ServerGoingAwayError (nothing ran) once the server said
   * GOAWAY, ChannelExpiredError (nothing ran) when it was closed for expiry.
   */
  private closedError (): Error {
    if (this.goneAway !== undefined) return new ServerGoingAwayError(`${this.remotePeer} is stopping: the call to ${this.cell} was not sent`)
    const cause = this.endError?.cause
    if (cause instanceof ChannelExpiredError) return new ChannelExpiredError(cause.message, { cause })
    return new ChannelClosedError('channel is closed', { cause: this.endError })
  }

  private startCall (method: string, payload: Uint8Array, options: SynapseCallOptions, timeoutMs: number): Promise<Uint8Array> {
    const signal = options.signal
    if (signal?.aborted === true) return Promise.reject(cancelled(signal))
    if (!(timeoutMs >= 0)) return Promise.reject(new RangeError(`timeoutMs must be ≥ 0, got ${timeoutMs}`))
    const id = this.allocateId()
    try {
      const mid = this.methodIds.get(method)
      const trace = options.traceparent
      const encoder = this.writer.encoder
      // The hot path takes a repeated traceparent too (a caller's shared unsampled one).
      if (mid !== undefined && (trace === undefined || encoder.repeatsTrace(trace))) encoder.frame(FrameType.CALL, id, payload, mid, timeoutMs, trace !== undefined)
      else this.encodeNamed(FrameType.CALL, id, method, payload, timeoutMs, trace)
    } catch (err) {
      return Promise.reject(err)
    }
    this.writer.commit()
    const now = this.now()
    const call: PendingCall = { resolve: noop, reject: noop, slot: 0, startMs: now, signal, onAbort: undefined, seq: ++this.sent }
    const promise = new Promise<Uint8Array>((resolve, reject) => { call.resolve = resolve; call.reject = reject })
    this.calls.set(id, call)
    call.slot = this.deadlines.add(id, now + timeoutMs)
    if (signal !== undefined) {
      call.onAbort = () => { this.cancel(id, cancelled(signal)) }
      signal.addEventListener('abort', call.onAbort, { once: true })
    }
    this.counters.calls++
    this.counters.inflight++
    return promise
  }

  private async callWhenReady (method: string, payload: Uint8Array, options: SynapseCallOptions, deadlineMs: number): Promise<Uint8Array> {
    while (this.calls.size + this.streams.size >= this.limits.maxInflight) {
      if (this.overflow === 'throw' || this.slotWaiters.length >= this.maxWaitingCalls) {
        throw new TooManyInflightError(`${this.inflight} calls in flight on the channel (limit ${this.limits.maxInflight})`)
      }
      await this.waitForSlot(options.signal)
      if (this.endError !== undefined || this.goneAway !== undefined) throw this.closedError()
    }
    if (this.writer.queuedBytes >= this.limits.maxQueuedBytes) await this.writer.waitForDrain(options)
    if (this.endError !== undefined || this.goneAway !== undefined) throw this.closedError()
    const remaining = deadlineMs - this.clock.now()
    if (remaining <= 0) throw new DeadlineExceededError(`deadline passed while waiting to send ${method}`)
    return await this.startCall(method, payload, options, remaining)
  }

  private async waitForSlot (signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted === true) throw cancelled(signal)
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => { signal?.removeEventListener('abort', onAbort); resolve() }
      const onAbort = (): void => {
        const i = this.slotWaiters.indexOf(wake)
        if (i >= 0) this.slotWaiters.splice(i, 1)
        reject(cancelled(signal as AbortSignal))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.slotWaiters.push(wake)
    })
  }

  private wakeSlotWaiter (): void {
    if (this.slotWaiters.length > 0) this.slotWaiters.shift()?.()
  }

  private openStream (method: string, payload: Uint8Array, options: SynapseCallOptions): AsyncIterator<Uint8Array> {
    const failed = (err: unknown): AsyncIterator<Uint8Array> => ({ next: async () => { throw err } })
    if (this.endError !== undefined || this.goneAway !== undefined) return failed(this.closedError())
    if (options.signal?.aborted === true) return failed(cancelled(options.signal))
    if (this.inflight >= this.limits.maxInflight) return failed(new TooManyInflightError(`${this.inflight} calls in flight on the channel`))
    const id = this.allocateId()
    const s = new ClientStream(id, this, this.streamWindow)
    try {
      this.writer.checkCapacity()
      this.encodeNamed(FrameType.STREAM_OPEN, id, method, payload, options.timeoutMs ?? -1, options.traceparent)
    } catch (err) {
      return failed(err)
    }
    this.writer.encoder.frame(FrameType.CREDIT, id, encodeCredit(this.streamWindow))
    this.writer.commit()
    s.seq = ++this.sent
    this.streams.set(id, s)
    this.counters.streams++
    this.counters.inflight++
    if (options.timeoutMs !== undefined) s.slot = this.deadlines.add(id, this.clock.now() + options.timeoutMs)
    const signal = options.signal
    if (signal !== undefined) {
      const onAbort = (): void => { s.fail(cancelled(signal)); this.sendCancel(id) }
      signal.addEventListener('abort', onAbort, { once: true })
      void this.closed.then(() => { signal.removeEventListener('abort', onAbort) })
    }
    return s
  }

  /** Encodes a frame whose method may not be interned yet; interns it once the frame is written. */
  private encodeNamed (type: number, id: number, method: string, payload: Uint8Array, timeoutMs: number, traceparent: string | undefined): void {
    let mid = this.methodIds.get(method)
    if (mid !== undefined) {
      this.writer.encoder.encode({ type, id, method: mid, timeoutMs, traceparent, payload })
      return
    }
    // Ids start at 1; 0 means "name inline, do not bind" once the table is full.
    mid = this.methodIds.size < MAX_METHODS_PER_CHANNEL ? this.methodIds.size + 1 : 0
    this.writer.encoder.encode({ type, id, method: mid, methodName: method, timeoutMs, traceparent, payload })
    if (mid !== 0) this.methodIds.set(method, mid)
  }

  private allocateId (): number {
    let id = this.nextId
    while (this.calls.has(id) || this.streams.has(id)) id = id >= 0xffff_ffff ? 1 : id + 1
    this.nextId = id >= 0xffff_ffff ? 1 : id + 1
    return id
  }

  private finish (id: number, call: PendingCall): void {
    this.calls.delete(id)
    if (call.slot >= 0) this.deadlines.remove(id, call.slot)
    if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort)
    this.counters.inflight--
    this.counters.latency.record(this.now() - call.startMs)
    if (this.slotWaiters.length > 0) this.wakeSlotWaiter()
    if (this.closeWhenIdleRequested && this.calls.size + this.streams.size === 0) void this.close().catch(() => {})
  }

  private cancel (id: number, err: Error): void {
    const call = this.calls.get(id)
    if (call === undefined) return
    this.finish(id, call)
    this.counters.errors++
    call.reject(err)
    this.sendCancel(id)
  }

  private sendCancel (id: number): void {
    if (this.endError !== undefined) return
    this.writer.encoder.frame(FrameType.CANCEL, id, EMPTY)
    this.writer.commit()
  }

  /** Slot `key` of the deadline wheel fired with `id` in it (an id that ended, or was reused with another deadline, is left alone). */
  private expire (id: number, key: number): void {
    const call = this.calls.get(id)
    if (call !== undefined) {
      if (call.slot !== key) return
      call.slot = -1
      this.cancel(id, new DeadlineExceededError(`call ${id} to ${this.cell} passed its deadline`))
      return
    }
    const s = this.streams.get(id)
    if (s !== undefined && s.slot === key) {
      const err = new DeadlineExceededError(`call ${id} to ${this.cell} passed its deadline`)
      s.slot = -1
      s.fail(err)
      this.sendCancel(id)
    }
  }
}

function noop (): void {}
