// Holding one claim: acquire it, renew it at a third of the lease, and say at every moment whether
// this node may still serve it. `serving()` reads the owner's own clock, never a timer, so a node
// that was paused (SIGSTOP) answers false on its first check after it resumes if its lease ran out
// meanwhile, before any timer had a chance to fire. Call `assertServing()` before every write.
import { logger } from '@libp2p/logger'
import type { Clock } from '../ports.ts'
import type { MonotonicClock } from './clocks.ts'
import { leaseValid, placeOptions, type ClaimLease, type ClaimRegisterClient } from './client.ts'
import { ClaimLostError } from './errors.ts'

const log = logger('cell:claims:holder')

export interface ClaimHolderInit {
  client: ClaimRegisterClient
  /** The clock the client counts leases on (the same `ownerClock()`). */
  clock: MonotonicClock
  timers: Pick<Clock, 'setTimeout' | 'clearTimeout'>
  claimId: string
  voters: readonly string[]
  /** Renew when this part of the lease has passed (default 1/3). */
  renewAt?: number
  /** Called once when this node stops being the owner (lease ran out, lost, released, stopped). */
  onLost?: (why: Error) => void
}

export class ClaimHolder {
  private readonly init: ClaimHolderInit
  private lease: ClaimLease | null = null
  private timer: unknown
  private renewing = false
  private stopped = false

  constructor (init: ClaimHolderInit) {
    this.init = init
  }

  /** Acquires the claim (ClaimHeldError when another owner's lease still runs) and keeps renewing it. */
  async acquire (options: { signal?: AbortSignal } = {}): Promise<ClaimLease> {
    this.stopped = false
    const lease = await this.init.client.acquire(this.init.claimId, this.init.voters, options)
    this.lease = lease
    this.schedule()
    return lease
  }

  /** The epoch this node serves at, or null when it may not serve. */
  epoch (): number | null {
    return this.serving() ? (this.lease as ClaimLease).epoch : null
  }

  /** May this node serve the claim right now, by its own clock? */
  serving (): boolean {
    if (this.lease == null) return false
    if (leaseValid(this.lease, this.init.clock.nowMs())) return true
    this.lost(new ClaimLostError(`${this.init.claimId}: lease of epoch ${this.lease.epoch} ran out before a renew succeeded`))
    return false
  }

  /** Throws ClaimLostError unless this node may serve the claim now. */
  assertServing (): number {
    const epoch = this.epoch()
    if (epoch == null) throw new ClaimLostError(`${this.init.claimId} is not held by this node`)
    return epoch
  }

  /**
   * Planned hand-over: stops serving at once, then releases the claim so the next owner need not
   * wait for the lease. Take the final snapshot BEFORE calling this.
   */
  async release (options: { signal?: AbortSignal } = {}): Promise<void> {
    const lease = this.lease
    this.stop(new ClaimLostError(`${this.init.claimId} released`))
    if (lease != null) await this.init.client.release(this.init.claimId, lease.voters, lease.epoch, { ...options, ...placeOptions(lease) })
  }

  /** Stops serving and renewing (the lease runs out on its own at the voters). */
  stop (why: Error = new ClaimLostError(`${this.init.claimId}: holder stopped`)): void {
    this.stopped = true
    this.init.timers.clearTimeout(this.timer)
    this.lost(why)
  }

  private lost (why: Error): void {
    if (this.lease == null) return
    this.lease = null
    this.init.timers.clearTimeout(this.timer)
    log('%s: stopped serving: %s', this.init.claimId, why.message)
    this.init.onLost?.(why)
  }

  private schedule (retry = false): void {
    const lease = this.lease
    if (lease == null || this.stopped) return
    this.init.timers.clearTimeout(this.timer)
    const now = this.init.clock.nowMs()
    const at = retry ? now + lease.leaseMs / 10 : lease.leaseStartLocalMs + lease.leaseMs * (this.init.renewAt ?? 1 / 3)
    // Also wake at the lease's end, so onLost fires even when nobody asks serving().
    const end = lease.leaseStartLocalMs + lease.leaseMs + 1
    this.timer = this.init.timers.setTimeout(() => { this.tick() }, Math.max(0, Math.min(at, end) - now))
  }

  private tick (): void {
    if (!this.serving() || this.renewing || this.stopped) return
    const lease = this.lease as ClaimLease
    this.renewing = true
    this.init.client.renew(this.init.claimId, lease.voters, lease.epoch, placeOptions(lease)).then(
      fresh => {
        if (this.lease?.epoch === fresh.epoch && !this.stopped) this.lease = fresh
        this.schedule()
      },
      (err: unknown) => {
        if (err instanceof ClaimLostError) { this.lost(err); return }
        log('%s: renew failed: %s', this.init.claimId, (err as Error).name)
        this.schedule(true)
      }
    ).finally(() => { this.renewing = false })
  }
}
