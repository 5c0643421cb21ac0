// Providers that recently stalled, refused us or served forged bytes: the next fetches try everyone
// else first. Bounded (oldest entry evicted) and expiring on the injected clock.
import { systemClock, type Clock } from '../../core/ports.ts'

export interface ProviderPenaltiesInit {
  clock?: Clock
  /** How long a failure defers a provider (default 60 s). */
  penaltyMs?: number
  /** Most providers remembered (default 1024). */
  maxEntries?: number
}

export class ProviderPenalties {
  private readonly clock: Clock
  private readonly penaltyMs: number
  private readonly maxEntries: number
  private readonly until = new Map<string, { untilMs: number, reason: string }>()
  /** Entries evicted to stay within maxEntries. */
  evicted = 0

  constructor (init: ProviderPenaltiesInit = {}) {
    this.clock = init.clock ?? systemClock
    this.penaltyMs = init.penaltyMs ?? 60_000
    this.maxEntries = Math.max(1, init.maxEntries ?? 1024)
  }

  add (peerId: string, reason: string): void {
    this.until.delete(peerId)
    this.until.set(peerId, { untilMs: this.clock.now() + this.penaltyMs, reason })
    while (this.until.size > this.maxEntries) {
      this.until.delete(this.until.keys().next().value as string)
      this.evicted++
    }
  }

  /** Is `peerId` penalised now? Expired entries are dropped on the way. */
  has (peerId: string): boolean {
    const entry = this.until.get(peerId)
    if (entry == null) return false
    if (this.clock.now() >= entry.untilMs) {
      this.until.delete(peerId)
      return false
    }
    return true
  }

  reason (peerId: string): string | undefined {
    return this.has(peerId) ? this.until.get(peerId)?.reason : undefined
  }

  get size (): number {
    return this.until.size
  }
}
