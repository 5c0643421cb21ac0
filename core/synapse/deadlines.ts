import type { Clock } from '../ports.ts'

// Deadlines grouped into slots of `granularityMs`: one timer per slot instead of one per call,
// so 50k calls/s with a 30 s default cost a few hundred timers, not 50k setTimeout/clearTimeout
// pairs. A call expires at most granularityMs after its deadline.
//
// A slot keeps the ids added to it in an array and a count of those not yet removed: adding and
// removing a call are an array write and a counter, and a slot (its array and its timer callback)
// is reused once its last call is removed. (A Set per slot grew its table through 4, 8, 16, ... for
// each batch of calls and shrank it again as they ended: about a tenth of the bytes a full node
// allocated per call.) An id removed from a slot stays in its array until the slot fires or is
// emptied, so the owner's onExpire is told the slot's key and must check that the id still has it.

interface Slot {
  key: number
  /** Ids added since the slot was armed, removed ones included; `count` of them are valid. */
  readonly ids: number[]
  count: number
  /** Ids added and not removed. */
  live: number
  timer: unknown
  readonly fire: () => void
}

/** Emptied slots kept for reuse, per wheel. */
const SPARE_SLOTS = 8

export class DeadlineWheel {
  private readonly clock: Clock
  private readonly granularityMs: number
  private readonly onExpire: (id: number, key: number) => void
  private readonly slots = new Map<number, Slot>()
  private readonly spare: Slot[] = []

  /**
   * `onExpire(id, key)` is called for each id whose slot fires, and possibly for ids already
   * removed from it: the owner acts only when its call `id` still holds slot `key`.
   */
  constructor (clock: Clock, onExpire: (id: number, key: number) => void, granularityMs = 10) {
    this.clock = clock
    this.onExpire = onExpire
    this.granularityMs = granularityMs
  }

  /** Tracks `id` until `deadlineMs` (absolute, clock time); returns the slot key for remove(). */
  add (id: number, deadlineMs: number): number {
    const key = Math.ceil(deadlineMs / this.granularityMs)
    let slot = this.slots.get(key)
    if (slot === undefined) {
      slot = this.spare.pop() ?? this.newSlot()
      slot.key = key
      slot.timer = this.clock.setTimeout(slot.fire, Math.max(0, key * this.granularityMs - this.clock.now()))
      this.slots.set(key, slot)
    }
    slot.ids[slot.count++] = id
    slot.live++
    return key
  }

  /** Stops tracking `id`, added with `key`: once per add (the owner forgets the key after). */
  remove (_id: number, key: number): void {
    const slot = this.slots.get(key)
    if (slot === undefined) return
    if (--slot.live > 0) return
    this.clock.clearTimeout(slot.timer)
    this.slots.delete(key)
    this.release(slot)
  }

  clear (): void {
    for (const slot of this.slots.values()) this.clock.clearTimeout(slot.timer)
    this.slots.clear()
  }

  get size (): number {
    return this.slots.size
  }

  private newSlot (): Slot {
    const slot: Slot = { key: 0, ids: [], count: 0, live: 0, timer: undefined, fire: () => { this.fire(slot) } }
    return slot
  }

  private release (slot: Slot): void {
    slot.count = 0
    slot.live = 0
    slot.timer = undefined
    if (this.spare.length < SPARE_SLOTS) this.spare.push(slot)
  }

  private fire (slot: Slot): void {
    const key = slot.key
    if (this.slots.get(key) !== slot) return
    this.slots.delete(key)
    const { ids, count } = slot
    // Released (reusable) only after the loop: an onExpire that adds a call must not get this slot.
    try {
      for (let i = 0; i < count; i++) this.onExpire(ids[i], key)
    } finally {
      this.release(slot)
    }
  }
}
