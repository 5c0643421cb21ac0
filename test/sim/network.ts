// An in-memory gossip network. A node broadcasts a snapshot of what it holds and knows; each
// recipient gets it after a random delay, or never (loss, or a partition between the two). A
// receiver only ever needs the newest snapshot of each sender that has arrived, so instead of one
// event per delivery we store per-recipient arrival times and let the receiver look them up when it
// builds its view. That keeps 50-node runs cheap enough for thousands of seeds.

import type { SeededRandom } from './prng.ts'

export interface NetworkOptions {
  nodes: number
  delayMs: readonly [number, number]
  /** Probability that one delivery is lost. */
  loss: number
  /** While active, nodes in `group` and nodes outside it cannot hear each other. */
  partitions: ReadonlyArray<{ fromMs: number, toMs: number, group: ReadonlySet<number> }>
  /**
   * When set, a delivery lost to `loss` (not to a partition) arrives this much later instead of
   * never: gossipsub's IHAVE/IWANT repair (the ids of the last 3 heartbeats are gossiped each
   * heartbeat; test/sim/gossipsub-model.ts recovers every message lost on a link that way).
   */
  recoverMs?: readonly [number, number]
}

interface Sent<T> {
  /** Per-sender sequence number: two snapshots may share a millisecond. */
  n: number
  sentMs: number
  payload: T
  /** Arrival time at each recipient; Infinity when lost. */
  arrival: Float64Array
}

/** Snapshots kept per sender; older ones are superseded by newer ones anyway. */
const RING = 8

export class GossipNetwork<T> {
  private readonly rings: Array<Array<Sent<T>>>
  /** newest applied sequence number, per receiver × sender */
  private readonly applied: Float64Array
  private readonly counters: Float64Array
  sent = 0
  lost = 0

  private readonly options: NetworkOptions
  private readonly random: SeededRandom

  constructor (options: NetworkOptions, random: SeededRandom) {
    this.options = options
    this.random = random
    this.rings = Array.from({ length: options.nodes }, () => [])
    this.applied = new Float64Array(options.nodes * options.nodes).fill(-1)
    this.counters = new Float64Array(options.nodes)
  }

  broadcast (from: number, nowMs: number, payload: T): void {
    const { nodes, delayMs, loss } = this.options
    const arrival = new Float64Array(nodes)
    const cut = this.options.partitions.filter(p => nowMs >= p.fromMs && nowMs < p.toMs)
    for (let to = 0; to < nodes; to++) {
      if (to === from) {
        arrival[to] = Infinity
        continue
      }
      this.sent++
      // One draw decides both loss and, rescaled, the delay.
      const r = this.random.next()
      const partitioned = cut.length > 0 && cut.some(p => p.group.has(from) !== p.group.has(to))
      const recover = this.options.recoverMs
      if (!partitioned && r < loss && recover !== undefined) {
        this.lost++
        arrival[to] = nowMs + delayMs[0] + (delayMs[1] - delayMs[0]) * (r / loss) + this.random.between(recover[0], recover[1])
        continue
      }
      const lost = r < loss || partitioned
      if (lost) {
        this.lost++
        arrival[to] = Infinity
      } else {
        arrival[to] = nowMs + delayMs[0] + (delayMs[1] - delayMs[0]) * ((r - loss) / (1 - loss))
      }
    }
    const ring = this.rings[from]
    ring.push({ n: this.counters[from]++, sentMs: nowMs, payload, arrival })
    if (ring.length > RING) ring.shift()
  }

  /** The newest snapshot from `from` that reached `to` by `nowMs` and was not handed out before. */
  receive (to: number, from: number, nowMs: number): T | undefined {
    const ring = this.rings[from]
    const k = to * this.options.nodes + from
    for (let i = ring.length - 1; i >= 0; i--) {
      const s = ring[i]
      if (s.n <= this.applied[k]) return undefined
      if (s.arrival[to] <= nowMs) {
        this.applied[k] = s.n
        return s.payload
      }
    }
    return undefined
  }
}
