// Counters a channel or server keeps so the fleet can gossip QPS and p99 later. Plain numbers,
// bumped on the hot path; snapshots are copies.

/** Upper bounds (ms) of the latency buckets; the last bucket is everything above. */
export const LATENCY_BUCKETS_MS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000] as const

export class LatencyHistogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0)
  total = 0

  record (ms: number): void {
    let i = 0
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]) i++
    this.counts[i]++
    this.total++
  }

  /** Upper bound of the bucket holding quantile q (0..1); Infinity for the overflow bucket; 0 when empty. */
  quantile (q: number): number {
    if (this.total === 0) return 0
    const rank = Math.ceil(q * this.total)
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]
      if (seen >= rank) return i < LATENCY_BUCKETS_MS.length ? LATENCY_BUCKETS_MS[i] : Infinity
    }
    return Infinity
  }

  merge (other: LatencyHistogram): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i]
    this.total += other.total
  }
}

export interface SynapseStats {
  /** Calls started (client) or received (server). */
  calls: number
  /** Calls that ended in an error of any kind. */
  errors: number
  /** Calls in flight now. */
  inflight: number
  /** One-way messages sent (client) or delivered to the handler (server). */
  messages: number
  streams: number
  framesIn: number
  framesOut: number
  bytesIn: number
  bytesOut: number
  /** Transport writes: each is one batch of frames. */
  writes: number
  /** Channels open now (server/service totals only). */
  channels: number
  /** Handshakes refused (server) or failed (client). */
  rejected: number
  /** Frames dropped because they referred to calls that had already ended. */
  dropped: number
  /**
   * Calls a stopping server did not read: client, failed with ServerGoingAwayError by its GOAWAY
   * count (nothing ran); server, refused after it sent GOAWAY.
   */
  unread: number
  latencyP50Ms: number
  latencyP99Ms: number
  latencyBuckets: number[]
}

export class StatsCounters {
  calls = 0
  errors = 0
  inflight = 0
  messages = 0
  streams = 0
  framesIn = 0
  framesOut = 0
  bytesIn = 0
  bytesOut = 0
  writes = 0
  rejected = 0
  dropped = 0
  unread = 0
  readonly latency = new LatencyHistogram()

  snapshot (channels = 0): SynapseStats {
    return {
      calls: this.calls,
      errors: this.errors,
      inflight: this.inflight,
      messages: this.messages,
      streams: this.streams,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      writes: this.writes,
      channels,
      rejected: this.rejected,
      dropped: this.dropped,
      unread: this.unread,
      latencyP50Ms: this.latency.quantile(0.5),
      latencyP99Ms: this.latency.quantile(0.99),
      latencyBuckets: [...this.latency.counts]
    }
  }

  /** Adds a closed channel's totals into a service-wide aggregate. */
  absorb (other: StatsCounters): void {
    this.calls += other.calls
    this.errors += other.errors
    this.messages += other.messages
    this.streams += other.streams
    this.framesIn += other.framesIn
    this.framesOut += other.framesOut
    this.bytesIn += other.bytesIn
    this.bytesOut += other.bytesOut
    this.writes += other.writes
    this.rejected += other.rejected
    this.dropped += other.dropped
    this.unread += other.unread
    this.latency.merge(other.latency)
  }
}

/** Sums live and closed counters into one snapshot. */
export function sumStats (parts: StatsCounters[], channels: number): SynapseStats {
  const total = new StatsCounters()
  for (const p of parts) {
    total.absorb(p)
    total.inflight += p.inflight
  }
  return total.snapshot(channels)
}
