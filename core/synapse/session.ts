import { FrameType, MAX_METHODS_PER_CHANNEL } from '../wire/index.ts'
import type { Frame } from '../wire/index.ts'
import { DeadlineWheel } from './deadlines.ts'
import { Endpoint } from './endpoint.ts'
import type { EndpointInit } from './endpoint.ts'
import {
  CallCancelledError, ChannelClosedError, ChannelExpiredError, DeadlineExceededError, HandshakeTimeoutError, ServerGoingAwayError,
  SynapseNotStartedError, SynapseProtocolError, TooManyInflightError, UnknownMethodError
} from './errors.ts'
import {
  SYNAPSE_VERSION, decodeCredit, decodeHello, encodeErrorPayload, encodeGoAway, encodeHelloAck
} from './handshake.ts'
import { ServerCall } from './server-call.ts'
import type { SynapseStats } from './stats.ts'
import type { AuthenticatePort, CredentialsPort, MessageContext, Principal, SynapseHandler } from './types.ts'

export interface SessionInit extends EndpointInit {
  handler: SynapseHandler | undefined
  /** Monotonic milliseconds for `handler.settled` (needed only when the handler has one). */
  monotonicMs?: () => number
  authenticate: AuthenticatePort
  credentialsFor: CredentialsPort
  /** Refuses the handshake with this error instead of authenticating (e.g. too many channels). */
  refuse?: Error
  /** Called once when the handshake completed and the session is open. */
  onOpen?: () => void
}

const EMPTY = new Uint8Array(0)
/** setTimeout's largest delay (2^31 - 1 ms); a longer one fires at once in Node. */
const MAX_TIMER_MS = 2_147_483_647

/** The server end of one synapse stream: handshake, then dispatch into the handler port. */
export class ServerSession extends Endpoint {
  cell = ''
  /** The release the caller chose for this channel (HELLO), handed to every call's context. */
  release: string | undefined = undefined
  principal: Principal | undefined
  private readonly handler: SynapseHandler | undefined
  private readonly monotonicMs: () => number
  private readonly authenticate: AuthenticatePort
  private readonly credentialsFor: CredentialsPort
  private readonly refuse: Error | undefined
  private readonly onOpen: (() => void) | undefined
  private state: 'hello' | 'authenticating' | 'open' = 'hello'
  private readonly calls = new Map<number, ServerCall>()
  private readonly methodNames: string[] = []
  private readonly deadlines: DeadlineWheel
  private readonly handshakeController = new AbortController()
  private handshakeTimer: unknown
  /** When the caller's verified chain stops holding (Infinity: never); the channel closes then. */
  private expiresMs = Infinity
  private expiryTimer: unknown
  /** CALL and STREAM_OPEN frames read since the handshake (modulo 2^32), what GOAWAY reports. */
  private callsRead = 0
  /** Set by goAway(): calls that arrive from now on are refused unread. */
  private goingAway: Promise<void> | undefined
  /** goAway()'s wait for the calls it let finish: called when the last one ends. */
  private onIdle: (() => void) | undefined

  constructor (init: SessionInit) {
    super(init)
    this.handler = init.handler
    this.monotonicMs = init.monotonicMs ?? (() => performance.now())
    this.authenticate = init.authenticate
    this.credentialsFor = init.credentialsFor
    this.refuse = init.refuse
    this.onOpen = init.onOpen
    this.deadlines = new DeadlineWheel(this.clock, (id, key) => { this.expire(id, key) })
    this.handshakeTimer = this.clock.setTimeout(() => {
      const err = new HandshakeTimeoutError(`no completed handshake from ${this.remotePeer} within ${this.limits.handshakeTimeoutMs} ms`)
      this.handshakeController.abort(err)
      this.reject(err)
    }, this.limits.handshakeTimeoutMs)
    // A refused stream answers at once: waiting for its HELLO would let a peer that never sends one
    // hold the stream (and this session) for the whole handshake timeout anyway.
    if (this.refuse !== undefined) this.reject(this.refuse)
  }

  /** Whether the handshake is still pending (no HELLO yet, or authenticating). */
  get handshaking (): boolean {
    return this.state !== 'open' && this.endError === undefined
  }

  /** Ends a pending handshake with `err` (REJECT, then close); no-op once open. */
  refuseHandshake (err: Error): void {
    if (this.state === 'open') return
    this.reject(err)
  }

  stats (): SynapseStats {
    return this.counters.snapshot(this.isOpen ? 1 : 0)
  }

  /**
   * Planned stop, in order: GOAWAY carrying the count of calls read, so the client fails the ones it
   * sent after them with ServerGoingAwayError (nothing ran) and calls elsewhere; a call that still
   * arrives is refused with that error, unread; server streams end (SynapseNotStartedError); the
   * calls read are answered for up to `graceMs` (then they fail with ChannelClosedError); the answers
   * are flushed, the stream closed, and the client's close awaited (also within `graceMs`), so what
   * this end wrote has reached it before the caller cuts the connection. A pending handshake is
   * refused. Aborting `signal` ends the grace at once. Calling it again returns the first stop.
   */
  goAway (graceMs = 0, signal?: AbortSignal): Promise<void> {
    if (this.goingAway !== undefined) return this.goingAway
    if (this.endError !== undefined) return Promise.resolve()
    if (this.state !== 'open') {
      this.reject(new SynapseNotStartedError('synapse service is stopping'))
      return Promise.resolve()
    }
    this.goingAway = this.leave(this.clock.now() + Math.max(0, graceMs), signal)
    return this.goingAway
  }

  private async leave (deadlineMs: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      this.writer.encoder.frame(FrameType.GOAWAY, 0, encodeGoAway(this.callsRead))
      const stopping = new SynapseNotStartedError('synapse service is stopping')
      for (const [id, call] of [...this.calls]) {
        if (!call.stream) continue
        this.failCall(id, call, stopping)
        this.abortCall(call, stopping)
      }
      this.writer.flush()
    } catch (err) {
      this.fail(err)
      return
    }
    if (this.calls.size > 0) await this.within(deadlineMs, signal, (done) => { this.onIdle = done })
    this.onIdle = undefined
    while ((this.writer.queuedBytes > 0 || this.writer.blocked) && this.endError === undefined && this.clock.now() < deadlineMs && signal?.aborted !== true) {
      this.writer.flush()
      if (this.writer.blocked) await this.within(deadlineMs, signal, (done) => { this.writer.waitForDrain().then(done, done) })
    }
    if (this.endError !== undefined) return
    this.shutdown(new ChannelClosedError('synapse service stopped'))
    await this.closeStream()
    const status = this.transport.status
    if (status !== 'closed' && status !== 'aborted' && status !== 'reset') {
      await this.within(deadlineMs, signal, (done) => { this.transport.addEventListener('close', done, { once: true }) }, false)
    }
  }

  /** Resolves when `arm`'s callback runs, the session ends (when `orEnd`), `signal` aborts, or the clock reaches `deadlineMs`. */
  private async within (deadlineMs: number, signal: AbortSignal | undefined, arm: (done: () => void) => void, orEnd = true): Promise<void> {
    const remaining = deadlineMs - this.clock.now()
    if (remaining <= 0 || signal?.aborted === true) return
    await new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(done, remaining)
      const clock = this.clock
      function done (): void {
        clock.clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      signal?.addEventListener('abort', done, { once: true })
      if (orEnd) void this.closed.then(done)
      arm(done)
    })
  }

  protected onFrame (f: Frame): void {
    if (this.state !== 'open') {
      this.onHandshakeFrame(f)
      return
    }
    // The chain was checked at the handshake only; once it has expired nothing more runs on it
    // (the timer closes the channel too, this catches frames that arrive before it fires).
    if (this.expiresMs !== Infinity && this.now() >= this.expiresMs) {
      this.closeExpired(f.type === FrameType.CALL || f.type === FrameType.STREAM_OPEN ? f.id : 0)
      return
    }
    switch (f.type) {
      case FrameType.MESSAGE: {
        if (this.goingAway !== undefined) { this.counters.dropped++; return }
        const method = this.methodOf(f)
        this.counters.messages++
        const ctx: MessageContext = { cell: this.cell, method, payload: f.payload, principal: this.principal as Principal, remotePeer: this.remotePeer }
        if (f.traceparent !== undefined) ctx.traceparent = f.traceparent
        if (this.release !== undefined) ctx.release = this.release
        if (this.handler === undefined) { this.counters.dropped++; return }
        try {
          this.handler.message(ctx)
        } catch (err) {
          // One-way: there is nobody to tell; count and log.
          this.counters.errors++
          this.log('message handler for %s.%s threw - %e', this.cell, method, err)
        }
        return
      }
      case FrameType.CALL:
        if (this.goingAway !== undefined) { this.refuseUnread(f.id); return }
        this.callsRead = (this.callsRead + 1) >>> 0
        this.onCall(f)
        return
      case FrameType.STREAM_OPEN:
        if (this.goingAway !== undefined) { this.refuseUnread(f.id); return }
        this.callsRead = (this.callsRead + 1) >>> 0
        this.onStreamOpen(f)
        return
      case FrameType.CANCEL: {
        const call = this.calls.get(f.id)
        if (call === undefined) { this.counters.dropped++; return }
        this.end(f.id, call)
        const cancelled = new CallCancelledError('call cancelled by the client')
        this.abortCall(call, cancelled)
        this.settle(call, undefined, cancelled)
        return
      }
      case FrameType.CREDIT: {
        const call = this.calls.get(f.id)
        if (call === undefined) { this.counters.dropped++; return }
        call.addCredit(decodeCredit(f.payload))
        return
      }
      default:
        throw new SynapseProtocolError(`unexpected frame type ${f.type} from the client`)
    }
  }

  protected cleanup (err: Error): void {
    this.clock.clearTimeout(this.handshakeTimer)
    this.clock.clearTimeout(this.expiryTimer)
    this.handshakeController.abort(err)
    this.deadlines.clear()
    const closed = err instanceof ChannelClosedError ? err : new ChannelClosedError('channel closed', { cause: err })
    for (const call of this.calls.values()) {
      this.abortCall(call, closed)
      this.settle(call, undefined, closed)
    }
    this.calls.clear()
    this.counters.inflight = 0
  }

  private onHandshakeFrame (f: Frame): void {
    if (this.state !== 'hello' || f.type !== FrameType.HELLO) {
      throw new SynapseProtocolError(`expected HELLO, got frame type ${f.type}`)
    }
    this.state = 'authenticating'
    const hello = decodeHello(f.payload)
    this.cell = hello.cell
    this.release = hello.release
    if (hello.version !== SYNAPSE_VERSION) {
      this.reject(new SynapseProtocolError(`unsupported synapse version ${hello.version}`))
      return
    }
    if (hello.maxFrameBytes > 0 && hello.maxFrameBytes < this.writer.encoder.maxFrameBytes) {
      this.writer.encoder.maxFrameBytes = hello.maxFrameBytes
    }
    if (this.refuse !== undefined) {
      this.reject(this.refuse)
      return
    }
    const signal = this.handshakeController.signal
    this.authenticate({ remotePeerId: this.remotePeer, cell: hello.cell, credentials: hello.credentials }, { signal })
      .then((principal) => {
        if (this.endError !== undefined) return
        signal.throwIfAborted()
        const credentials = this.credentialsFor(hello.cell)
        this.principal = principal
        this.writer.encoder.encode({
          type: FrameType.HELLO_ACK,
          payload: encodeHelloAck({ version: SYNAPSE_VERSION, credentials, maxFrameBytes: this.limits.maxFrameBytes })
        })
        this.writer.commit()
        this.state = 'open'
        this.clock.clearTimeout(this.handshakeTimer)
        if (principal.expiresMs !== undefined) {
          this.expiresMs = principal.expiresMs
          this.armExpiry()
        }
        this.onOpen?.()
      })
      .catch((err: unknown) => { this.reject(err) })
  }

  /** Closes the channel when the caller's chain expires; re-armed in steps a timer can hold. */
  private armExpiry (): void {
    const delay = Math.min(this.expiresMs - this.clock.now(), MAX_TIMER_MS)
    this.expiryTimer = this.clock.setTimeout(() => {
      if (this.clock.now() >= this.expiresMs) this.closeExpired(0)
      else if (this.endError === undefined) this.armExpiry()
    }, Math.max(0, delay))
  }

  /**
   * The caller's chain expired: answers call `id` (when one was just sent) with ChannelExpiredError,
   * then REJECT { ChannelExpiredError } and close. Calls still in flight fail with ChannelClosedError.
   */
  private closeExpired (id: number): void {
    if (this.endError !== undefined) return
    const err = new ChannelExpiredError(`the caller's certificate chain for ${this.cell} expired at ${this.expiresMs} (checked at the handshake): open a new channel`)
    this.log('closing synapse from %s for cell %s: %s', this.remotePeer, this.cell, err.message)
    try {
      if (id !== 0) this.writer.encoder.frame(FrameType.ERROR, id, encodeErrorPayload(err.name, err.message))
      this.writer.encoder.frame(FrameType.REJECT, 0, encodeErrorPayload(err.name, err.message))
      this.writer.flush()
    } catch {}
    this.shutdown(new ChannelClosedError('caller certificate chain expired', { cause: err }))
    void this.closeStream()
  }

  /** Refuses the handshake: REJECT { name, message }, then close. */
  private reject (err: unknown): void {
    if (this.endError !== undefined) return
    this.counters.rejected++
    const { name, message } = this.errors.toWire(err)
    this.log('refused synapse from %s for cell %s: %s: %s', this.remotePeer, this.cell, name, message)
    try {
      this.writer.encoder.frame(FrameType.REJECT, 0, encodeErrorPayload(name, message))
      this.writer.flush()
    } catch {}
    this.shutdown(new ChannelClosedError(`handshake refused: ${name}`, { cause: err }))
    void this.closeStream()
  }

  /** A call that arrived after GOAWAY: not counted, not run; the client already failed it by the count. */
  private refuseUnread (id: number): void {
    this.counters.unread++
    this.sendError(FrameType.ERROR, id, new ServerGoingAwayError(`the synapse service of ${this.cell} is stopping: the call was not read`))
  }

  private methodOf (f: Frame): string {
    if (f.methodName !== undefined) {
      if (f.method > 0) {
        if (f.method > MAX_METHODS_PER_CHANNEL) throw new SynapseProtocolError(`method id ${f.method} above the per-channel limit`)
        this.methodNames[f.method] = f.methodName
      }
      return f.methodName
    }
    const name = f.method >= 0 ? this.methodNames[f.method] : undefined
    if (name === undefined) throw new SynapseProtocolError(`unknown method id ${f.method}`)
    return name
  }

  private onCall (f: Frame): void {
    const method = this.methodOf(f)
    const id = f.id
    this.counters.calls++
    if (this.calls.has(id)) throw new SynapseProtocolError(`call id ${id} reused while in flight`)
    if (this.calls.size >= this.limits.maxInflight) {
      this.counters.errors++
      this.sendError(FrameType.ERROR, id, new TooManyInflightError(`more than ${this.limits.maxInflight} calls in flight`))
      return
    }
    const now = this.now()
    const deadlineMs = f.timeoutMs >= 0 ? now + f.timeoutMs : Infinity
    const call = new ServerCall(this.cell, method, f.payload, this.principal as Principal, this.remotePeer, deadlineMs, f.traceparent, this.release)
    if (this.handler?.settled !== undefined) call.startedMs = this.monotonicMs()
    this.calls.set(id, call)
    this.counters.inflight++
    if (deadlineMs !== Infinity) call.slot = this.deadlines.add(id, deadlineMs)
    let result: Promise<Uint8Array>
    try {
      if (this.handler === undefined) throw new UnknownMethodError(`no handler for ${this.cell}.${method}`)
      result = this.handler.call(call)
    } catch (err) {
      this.failCall(id, call, err)
      return
    }
    result.then(
      (payload) => {
        if (this.calls.get(id) !== call) return
        this.end(id, call)
        this.counters.latency.record(this.now() - now)
        try {
          this.writer.encoder.frame(FrameType.RESULT, id, payload)
        } catch (err) {
          // e.g. FrameTooLargeError: the caller gets that instead of a dead channel.
          this.counters.errors++
          this.sendError(FrameType.ERROR, id, err)
          this.settle(call, undefined, err)
          return
        }
        this.writer.commit()
        this.settle(call, payload, undefined)
      },
      (err: unknown) => { this.failCall(id, call, err) }
    )
  }

  private onStreamOpen (f: Frame): void {
    const method = this.methodOf(f)
    const id = f.id
    this.counters.streams++
    if (this.calls.has(id)) throw new SynapseProtocolError(`stream id ${id} reused while in flight`)
    if (this.calls.size >= this.limits.maxInflight || this.handler === undefined) {
      this.counters.errors++
      this.sendError(FrameType.ERROR, id, this.handler === undefined
        ? new UnknownMethodError(`no handler for ${this.cell}.${method}`)
        : new TooManyInflightError(`more than ${this.limits.maxInflight} calls in flight`))
      return
    }
    const deadlineMs = f.timeoutMs >= 0 ? this.now() + f.timeoutMs : Infinity
    const call = new ServerCall(this.cell, method, f.payload, this.principal as Principal, this.remotePeer, deadlineMs, f.traceparent, this.release)
    call.stream = true
    this.calls.set(id, call)
    this.counters.inflight++
    if (deadlineMs !== Infinity) call.slot = this.deadlines.add(id, deadlineMs)
    void this.pump(id, call, this.handler)
  }

  private async pump (id: number, call: ServerCall, handler: SynapseHandler): Promise<void> {
    let iterator: AsyncIterator<Uint8Array> | undefined
    try {
      iterator = handler.stream(call)[Symbol.asyncIterator]()
      while (!call.aborted) {
        const next = await iterator.next()
        if (next.done === true || call.aborted) break
        while (call.credit === 0 && !call.aborted) {
          await new Promise<void>(resolve => { call.creditWaiter = resolve })
        }
        if (call.aborted) break
        call.credit--
        this.writer.encoder.frame(FrameType.STREAM_DATA, id, next.value)
        this.writer.commit()
        if (!this.writer.writable) await this.writer.waitForDrain({ signal: call.signal })
      }
      if (!call.aborted && this.calls.get(id) === call) {
        this.end(id, call)
        this.writer.encoder.frame(FrameType.STREAM_END, id, EMPTY)
        this.writer.commit()
      }
    } catch (err) {
      if (this.calls.get(id) === call) this.failCall(id, call, err)
    } finally {
      if (call.aborted) await iterator?.return?.()?.catch(() => {})
    }
  }

  private failCall (id: number, call: ServerCall, err: unknown): void {
    if (this.calls.get(id) !== call) return
    this.end(id, call)
    this.counters.errors++
    this.sendError(FrameType.ERROR, id, err)
    this.settle(call, undefined, err)
  }

  /** Tells the handler's `settled` (when it has one) how a call it ran was answered. */
  private settle (call: ServerCall, result: Uint8Array | undefined, error: unknown): void {
    if (call.startedMs < 0) return
    const startedMs = call.startedMs
    call.startedMs = -1
    try {
      this.handler?.settled?.(call, result, error, this.monotonicMs() - startedMs)
    } catch (err) {
      this.log('settled hook for %s.%s threw - %e', this.cell, call.method, err)
    }
  }

  private end (id: number, call: ServerCall): void {
    this.calls.delete(id)
    if (call.slot >= 0) this.deadlines.remove(id, call.slot)
    this.counters.inflight--
    if (this.onIdle !== undefined && this.calls.size === 0) this.onIdle()
  }

  private expire (id: number, key: number): void {
    const call = this.calls.get(id)
    // The wheel may name an id that ended, or whose id a later call reuses with another deadline.
    if (call === undefined || call.slot !== key) return
    call.slot = -1
    const err = new DeadlineExceededError(`${this.cell}.${call.method} passed its deadline`)
    this.failCall(id, call, err)
    this.abortCall(call, err)
  }

  /** Aborts `call` (its onAbort, its signal); a listener's throw is logged, never thrown into the session. */
  private abortCall (call: ServerCall, reason: Error): void {
    const thrown = call.abort(reason)
    if (thrown !== undefined) this.log('abort listener of %s.%s threw - %e', this.cell, call.method, thrown)
  }
}
