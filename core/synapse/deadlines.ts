import type { Clock } from '../ports.ts'

// Deadlines grouped into slots of `granularityMs`: one timer per slot instead of one per call,
// so 50k calls/s with a 30 s default cost a few hundred timers, not 50k setTimeout/clearTimeout
// pairs. A call expires at most granularityMs after its deadline.

export class DeadlineWheel {
  private readonly clock: Clock
  private readonly granularityMs: number
  private readonly onExpire: (id: number) => void
  private readonly slots = new Map<number, { ids: Set<number>, timer: unknown }>()

  constructor (clock: Clock, onExpire: (id: number) => void, granularityMs = 10) {
    this.clock = clock
    this.onExpire = onExpire
    this.granularityMs = granularityMs
  }

  /** Tracks `id` until `deadlineMs` (absolute, clock time); returns the slot key for remove(). */
  add (id: number, deadlineMs: number): number {
    const key = Math.ceil(deadlineMs / this.granularityMs)
    let slot = this.slots.get(key)
    if (slot === undefined) {
      const delay = Math.max(0, key * this.granularityMs - this.clock.now())
      const ids = new Set<number>()
      slot = { ids, timer: this.clock.setTimeout(() => { this.fire(key) }, delay) }
      this.slots.set(key, slot)
    }
    slot.ids.add(id)
    return key
  }

  remove (id: number, key: number): void {
    const slot = this.slots.get(key)
    if (slot === undefined) return
    slot.ids.delete(id)
    if (slot.ids.size === 0) {
      this.clock.clearTimeout(slot.timer)
      this.slots.delete(key)
    }
  }

  clear (): void {
    for (const slot of this.slots.values()) this.clock.clearTimeout(slot.timer)
    this.slots.clear()
  }

  get size (): number {
    return this.slots.size
  }

  private fire (key: number): void {
    const slot = this.slots.get(key)
    if (slot === undefined) return
    this.slots.delete(key)
    for (const id of slot.ids) this.onExpire(id)
  }
}
