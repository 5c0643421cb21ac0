import { ChannelClosedError, SynapseProtocolError } from './errors.ts'

/** What a ClientStream needs from its channel. */
export interface StreamOwner {
  grantCredit(id: number, count: number): void
  /** The consumer stopped early: tell the server and forget the stream. */
  cancelStream(id: number, reason: Error): void
  /** The stream ended (any way): forget it. */
  releaseStream(id: number): void
}

// Client side of a server stream: a bounded queue between frames arriving and the consumer's
// next(). The server may run `window` items ahead of the consumer and no further (CREDIT frames
// top it up as the consumer takes items), so a slow consumer costs at most window items.
export class ClientStream implements AsyncIterator<Uint8Array> {
  readonly id: number
  slot = -1
  /** Its place among the calls and streams its channel sent (see Channel's GOAWAY handling). */
  seq = 0
  private readonly owner: StreamOwner
  private readonly window: number
  private readonly queue: Uint8Array[] = []
  private head = 0
  private done = false
  private error: Error | undefined
  private waiter: { resolve(r: IteratorResult<Uint8Array>): void, reject(e: unknown): void } | undefined
  private received = 0
  private consumed = 0
  private granted: number

  constructor (id: number, owner: StreamOwner, window: number) {
    this.id = id
    this.owner = owner
    this.window = window
    this.granted = window
  }

  get finished (): boolean {
    return this.done || this.error !== undefined
  }

  /** STREAM_DATA arrived. */
  push (item: Uint8Array): void {
    if (this.finished) return
    if (++this.received > this.granted) {
      throw new SynapseProtocolError(`stream ${this.id}: server sent more than the ${this.window} items granted`)
    }
    if (this.waiter !== undefined) {
      const w = this.waiter
      this.waiter = undefined
      this.consume()
      w.resolve({ value: item, done: false })
    } else {
      this.queue.push(item)
    }
  }

  /** STREAM_END arrived: deliver what is queued, then finish. */
  end (): void {
    if (this.finished) return
    this.done = true
    this.owner.releaseStream(this.id)
    if (this.waiter !== undefined && this.queue.length === this.head) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve({ value: undefined, done: true })
    }
  }

  /** ERROR, CANCEL, deadline or channel death: the consumer sees `err` after queued items. */
  fail (err: Error): void {
    if (this.finished) return
    this.error = err
    this.owner.releaseStream(this.id)
    if (this.waiter !== undefined && this.queue.length === this.head) {
      const w = this.waiter
      this.waiter = undefined
      w.reject(err)
    }
  }

  async next (): Promise<IteratorResult<Uint8Array>> {
    if (this.head < this.queue.length) {
      const value = this.queue[this.head]
      this.queue[this.head++] = undefined as unknown as Uint8Array
      if (this.head === this.queue.length) { this.queue.length = 0; this.head = 0 }
      this.consume()
      return { value, done: false }
    }
    if (this.error !== undefined) throw this.error
    if (this.done) return { value: undefined, done: true }
    if (this.waiter !== undefined) throw new SynapseProtocolError('concurrent next() on a synapse stream')
    return await new Promise((resolve, reject) => { this.waiter = { resolve, reject } })
  }

  async return (): Promise<IteratorResult<Uint8Array>> {
    if (!this.finished) {
      const reason = new ChannelClosedError('stream consumer stopped')
      this.error = reason
      this.owner.cancelStream(this.id, reason)
    }
    this.queue.length = 0
    this.head = 0
    return { value: undefined, done: true }
  }

  private consume (): void {
    this.consumed++
    // Top up in half-window steps: one CREDIT frame per window/2 items, not per item.
    const outstanding = this.granted - this.consumed
    if (!this.finished && outstanding <= this.window / 2) {
      const grant = this.window - outstanding
      this.granted += grant
      this.owner.grantCredit(this.id, grant)
    }
  }
}
