// Keeps a light peer connected to at least one full node. A tab that slept, lost its network or
// whose full node died re-dials another known full node (from the fleet view, the cached fleet or
// the bootstrap list) with exponential backoff and jitter. Gossipsub keeps its topic subscriptions
// across connections and announces them to each new peer, so re-dialing is all that resubscribing
// takes; fleet sync then pulls a fresh snapshot from the new neighbour.
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from '@libp2p/interface'
import type { Clock, Random } from '../core/ports.ts'
import { backoffMs } from './backoff.ts'

const log = logger('cell:browser:reconnect')

export interface ReconnectInit {
  libp2p: Libp2p
  clock: Clock
  random: Random
  /** Multiaddrs (with /p2p/) of full nodes worth dialing, best first. */
  candidates: () => string[]
  /** Whether a connected peer counts as a full node (not another tab). */
  isFullNode: (peerId: string) => boolean
  minBackoffMs?: number
  maxBackoffMs?: number
  /** Periodic re-check even without events (a sleeping tab misses close events). */
  checkMs?: number
  dialTimeoutMs?: number
  /** Most addresses tried per round. */
  maxDialsPerRound?: number
  onReconnect?: (peerId: string, addr: string) => void
}

export interface ReconnectStats { rounds: number, dials: number, failures: number, reconnects: number }

export class Reconnector {
  readonly stats: ReconnectStats = { rounds: 0, dials: 0, failures: 0, reconnects: 0 }
  private readonly init: ReconnectInit
  private timer: unknown
  private attempt = 0
  private running = false
  private busy = false
  private abort?: AbortController
  private readonly onClose = (): void => { this.schedule(0) }

  constructor (init: ReconnectInit) {
    this.init = init
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.abort = new AbortController()
    this.init.libp2p.addEventListener('peer:disconnect', this.onClose)
    this.schedule(this.init.checkMs ?? 5_000)
  }

  stop (): void {
    if (!this.running) return
    this.running = false
    this.init.libp2p.removeEventListener('peer:disconnect', this.onClose)
    this.init.clock.clearTimeout(this.timer)
    this.abort?.abort()
  }

  /** Re-check now (the page calls this on `online` and `visibilitychange`). */
  nudge (): void {
    this.attempt = 0
    this.schedule(0)
  }

  connectedFullNodes (): string[] {
    const ids = new Set<string>()
    for (const conn of this.init.libp2p.getConnections()) {
      const id = conn.remotePeer.toString()
      if (conn.status === 'open' && conn.limits == null && this.init.isFullNode(id)) ids.add(id)
    }
    return [...ids]
  }

  private schedule (delayMs: number): void {
    if (!this.running) return
    this.init.clock.clearTimeout(this.timer)
    this.timer = this.init.clock.setTimeout(() => { void this.round() }, delayMs)
  }

  private async round (): Promise<void> {
    if (!this.running || this.busy) return
    if (this.connectedFullNodes().length > 0) {
      this.attempt = 0
      this.schedule(this.init.checkMs ?? 5_000)
      return
    }
    this.busy = true
    this.stats.rounds++
    try {
      const connected = await this.dialSome()
      if (connected) this.attempt = 0
      else this.attempt++
    } finally {
      this.busy = false
    }
    const delay = this.attempt === 0
      ? (this.init.checkMs ?? 5_000)
      : backoffMs(this.attempt, { minMs: this.init.minBackoffMs ?? 250, maxMs: this.init.maxBackoffMs ?? 15_000 }, this.init.random)
    if (this.attempt > 0) log('no full node reachable; retry %d in %d ms', this.attempt, delay)
    this.schedule(delay)
  }

  private async dialSome (): Promise<boolean> {
    const seen = new Set<string>()
    const addrs = this.init.candidates().filter(a => !seen.has(a) && seen.add(a) !== undefined)
    for (const addr of addrs.slice(0, this.init.maxDialsPerRound ?? 8)) {
      if (!this.running) return false
      this.stats.dials++
      const signal = AbortSignal.any([this.abort!.signal, AbortSignal.timeout(this.init.dialTimeoutMs ?? 5_000)])
      try {
        const conn = await this.init.libp2p.dial(multiaddr(addr), { signal })
        this.stats.reconnects++
        log('reconnected to %s via %s', conn.remotePeer, addr)
        this.init.onReconnect?.(conn.remotePeer.toString(), addr)
        return true
      } catch (err) {
        this.stats.failures++
        log('dial %s failed: %s', addr, (err as Error).message)
      }
    }
    return false
  }
}
