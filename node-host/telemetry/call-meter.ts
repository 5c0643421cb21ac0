// Per-cell synapse metrics on a full node: calls by cell, method and outcome, their latency, bytes
// and calls in flight. Core's synapse counts totals per channel only; the node wraps the handler it
// hands the mesh, so core stays free of prom-client. The call path adds no promise step: the
// wrapper counts the call as it goes in and the session's synchronous `settled` hook records how
// it ended. Both are a lookup (one comparison for a repeated cell and method) and additions into plain numbers (latency buckets
// included); prom-client reads them at scrape time (collect()), so no label object is hashed per call.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { CallCancelledError, DeadlineExceededError } from '../../core/synapse/errors.ts'
import { LATENCY_BUCKETS_MS } from '../../core/synapse/stats.ts'
import type { CallContext, MessageContext, SynapseHandler } from '../../core/synapse/types.ts'

/** The label value for cells and methods past the limits: label cardinality stays bounded. */
export const OTHER_LABEL = 'other'

export interface CallMeterInit {
  registry: Registry
  /** Distinct cell label values (the first ones seen); later cells count as `other`. Default 256. */
  maxCells?: number
  /** Distinct method label values per cell; later methods count as `other`. Default 64. */
  maxMethodsPerCell?: number
}

export type CallOutcome = 'ok' | 'error' | 'deadline' | 'cancelled'

export function outcomeOf (err: unknown): CallOutcome {
  if (err instanceof DeadlineExceededError) return 'deadline'
  if (err instanceof CallCancelledError) return 'cancelled'
  return 'error'
}

/** Running totals of one (cell, method) label pair, read into the metrics at scrape time. */
interface MethodTally {
  readonly labels: { cell: string, method: string }
  readonly cell: CellTally
  outcomes: Record<CallOutcome, number>
  messages: number
  streams: number
  /** Call latencies: counts per LATENCY_BUCKETS_MS bucket (non-cumulative, the last one past the largest bound). */
  readonly buckets: number[]
  /** Sum of the latencies in milliseconds and their count. */
  sumMs: number
  count: number
}

interface CellTally { received: number, sent: number, inflight: number }

const BUCKET_SECONDS = LATENCY_BUCKETS_MS.map(ms => ms / 1000)

export class CallMeter {
  /** cell label → method label → totals. Plain numbers on the call path; prom-client reads them on collect. */
  private readonly tallies = new Map<string, Map<string, MethodTally>>()
  private readonly cells = new Map<string, CellTally>()
  private readonly maxCells: number
  private readonly maxMethods: number
  /**
   * The last (cell, method) looked up and its tally: a session's calls repeat one cell and a few
   * methods (the same string objects, from the session's method table), so most lookups are two
   * comparisons instead of two map lookups, twice per call.
   */
  private lastCell = ''
  private lastMethod = ''
  private lastTally: MethodTally | undefined

  constructor (init: CallMeterInit) {
    const registers = [init.registry]
    this.maxCells = init.maxCells ?? 256
    this.maxMethods = init.maxMethodsPerCell ?? 64
    const tallies = (): MethodTally[] => [...this.tallies.values()].flatMap(m => [...m.values()])
    const cells = (): Array<[string, CellTally]> => [...this.cells]
    new Counter<'cell' | 'method' | 'outcome'>({ // eslint-disable-line no-new
      name: 'cell_synapse_calls_total', help: 'Synapse calls this node served, by cell, method and outcome (ok, error, deadline, cancelled).', labelNames: ['cell', 'method', 'outcome'], registers,
      collect () {
        this.reset()
        for (const t of tallies()) for (const [outcome, n] of Object.entries(t.outcomes)) if (n > 0) this.inc({ ...t.labels, outcome }, n)
      }
    })
    new TallyHistogram(tallies, { name: 'cell_synapse_call_duration_seconds', help: 'Time from receiving a synapse call to its answer, by cell and method.', labelNames: ['cell', 'method'], buckets: BUCKET_SECONDS, registers }) // eslint-disable-line no-new
    new Counter<'cell'>({ // eslint-disable-line no-new
      name: 'cell_synapse_received_bytes_total', help: 'Payload bytes of synapse calls, messages and streams this node received, by cell.', labelNames: ['cell'], registers,
      collect () { this.reset(); for (const [cell, c] of cells()) if (c.received > 0) this.inc({ cell }, c.received) }
    })
    new Counter<'cell'>({ // eslint-disable-line no-new
      name: 'cell_synapse_sent_bytes_total', help: 'Payload bytes of synapse call results this node sent, by cell.', labelNames: ['cell'], registers,
      collect () { this.reset(); for (const [cell, c] of cells()) if (c.sent > 0) this.inc({ cell }, c.sent) }
    })
    new Gauge<'cell'>({ // eslint-disable-line no-new
      name: 'cell_synapse_calls_in_flight', help: 'Synapse calls this node is serving now, by cell.', labelNames: ['cell'], registers,
      collect () { this.reset(); for (const [cell, c] of cells()) this.set({ cell }, c.inflight) }
    })
    new Counter<'cell' | 'method'>({ // eslint-disable-line no-new
      name: 'cell_synapse_messages_total', help: 'One-way synapse messages this node received, by cell and method.', labelNames: ['cell', 'method'], registers,
      collect () { this.reset(); for (const t of tallies()) if (t.messages > 0) this.inc(t.labels, t.messages) }
    })
    new Counter<'cell' | 'method'>({ // eslint-disable-line no-new
      name: 'cell_synapse_streams_total', help: 'Synapse streams this node opened for callers, by cell and method.', labelNames: ['cell', 'method'], registers,
      collect () { this.reset(); for (const t of tallies()) if (t.streams > 0) this.inc(t.labels, t.streams) }
    })
  }

  /** The bounded (cell, method) label values for a call. */
  labels (cell: string, method: string): { cell: string, method: string } {
    return this.tally(cell, method).labels
  }

  private tally (cell: string, method: string): MethodTally {
    if (method === this.lastMethod && cell === this.lastCell && this.lastTally !== undefined) return this.lastTally
    const t = this.lookup(cell, method)
    this.lastCell = cell
    this.lastMethod = method
    this.lastTally = t
    return t
  }

  private lookup (cell: string, method: string): MethodTally {
    let known = this.tallies.get(cell)
    if (known === undefined) {
      if (this.tallies.size >= this.maxCells && cell !== OTHER_LABEL) return this.lookup(OTHER_LABEL, OTHER_LABEL)
      known = new Map()
      this.tallies.set(cell, known)
    }
    let t = known.get(method)
    if (t === undefined) {
      if (known.size >= this.maxMethods) return method === OTHER_LABEL ? this.newTally(known, cell, method) : this.lookup(cell, OTHER_LABEL)
      t = this.newTally(known, cell, method)
    }
    return t
  }

  private newTally (known: Map<string, MethodTally>, cell: string, method: string): MethodTally {
    let c = this.cells.get(cell)
    if (c === undefined) { c = { received: 0, sent: 0, inflight: 0 }; this.cells.set(cell, c) }
    const t: MethodTally = {
      labels: { cell, method },
      cell: c,
      outcomes: { ok: 0, error: 0, deadline: 0, cancelled: 0 },
      messages: 0,
      streams: 0,
      buckets: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0),
      sumMs: 0,
      count: 0
    }
    known.set(method, t)
    return t
  }

  /**
   * `handler` with every call, message and stream counted. A call is counted in as it goes to
   * `handler` and out in `settled`, which the synapse session calls when it answers the call (the
   * wrapped handler's own `settled`, if any, is called first).
   */
  wrap (handler: SynapseHandler): SynapseHandler {
    return {
      call: (ctx: CallContext): Promise<Uint8Array> => { // eslint-disable-line @typescript-eslint/promise-function-async
        const c = this.tally(ctx.cell, ctx.method).cell
        c.received += ctx.payload.byteLength
        c.inflight++
        return handler.call(ctx)
      },
      settled: (ctx: CallContext, result: Uint8Array | undefined, error: unknown, elapsedMs: number): void => {
        handler.settled?.(ctx, result, error, elapsedMs)
        const t = this.tally(ctx.cell, ctx.method)
        t.cell.inflight--
        if (result !== undefined) {
          t.cell.sent += result.byteLength
          t.outcomes.ok++
        } else {
          t.outcomes[outcomeOf(error)]++
        }
        let i = 0
        while (i < LATENCY_BUCKETS_MS.length && elapsedMs > LATENCY_BUCKETS_MS[i]) i++
        t.buckets[i]++
        t.sumMs += elapsedMs > 0 ? elapsedMs : 0
        t.count++
      },
      message: (ctx: MessageContext): void => {
        const t = this.tally(ctx.cell, ctx.method)
        t.messages++
        t.cell.received += ctx.payload.byteLength
        handler.message(ctx)
      },
      stream: (ctx: CallContext): AsyncIterable<Uint8Array> => {
        const t = this.tally(ctx.cell, ctx.method)
        t.streams++
        t.cell.received += ctx.payload.byteLength
        return handler.stream(ctx)
      }
    }
  }
}

/** One series of a histogram in prom-client's value shape (`le` label, the rest as shared labels). */
interface HistogramValue {
  labels: { le?: number | string }
  sharedLabels: { cell: string, method: string }
  value: number
  metricName: string
}

/**
 * cell_synapse_call_duration_seconds read from the tallies at scrape time: a prom-client Histogram
 * (registered, typed, merged like any other) whose values come from the plain bucket counts the
 * call path keeps, in the exact series prom-client's own histogram writes. Nothing calls observe().
 */
class TallyHistogram extends Histogram<'cell' | 'method'> {
  private readonly source: () => MethodTally[]
  private readonly metricName: string
  private readonly metricHelp: string

  constructor (source: () => MethodTally[], config: ConstructorParameters<typeof Histogram<'cell' | 'method'>>[0]) {
    super(config)
    this.source = source
    this.metricName = config.name
    this.metricHelp = config.help
  }

  private series (): HistogramValue[] {
    const out: HistogramValue[] = []
    for (const t of this.source()) {
      if (t.count === 0) continue
      let acc = 0
      for (let i = 0; i < BUCKET_SECONDS.length; i++) {
        acc += t.buckets[i]
        out.push({ labels: { le: BUCKET_SECONDS[i] }, sharedLabels: t.labels, value: acc, metricName: `${this.metricName}_bucket` })
      }
      out.push({ labels: { le: '+Inf' }, sharedLabels: t.labels, value: t.count, metricName: `${this.metricName}_bucket` })
      out.push({ labels: {}, sharedLabels: t.labels, value: t.sumMs / 1000, metricName: `${this.metricName}_sum` })
      out.push({ labels: {}, sharedLabels: t.labels, value: t.count, metricName: `${this.metricName}_count` })
    }
    return out
  }

  /**
   * What the registry's text exposition reads (prom-client prefers it to get(), and its get() for
   * registry.getMetricsAsJSON splays these same values).
   */
  async getForPromString (): Promise<{ name: string, help: string, type: 'histogram', values: HistogramValue[], aggregator: 'sum' }> {
    return { name: this.metricName, help: this.metricHelp, type: 'histogram', values: this.series(), aggregator: 'sum' }
  }
}
