// Per-cell synapse metrics on a full node: calls by cell, method and outcome, their latency, bytes
// and calls in flight. Core's synapse counts totals per channel only; the node wraps the handler it
// hands the mesh, so core stays free of prom-client and the per-call work is two map lookups,
// a few additions and one histogram observation; the counters read the totals when scraped.
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
  /** Monotonic milliseconds. */
  now?: () => number
}

export type CallOutcome = 'ok' | 'error' | 'deadline' | 'cancelled'

export function outcomeOf (err: unknown): CallOutcome {
  if (err instanceof DeadlineExceededError) return 'deadline'
  if (err instanceof CallCancelledError) return 'cancelled'
  return 'error'
}

/** Running totals of one (cell, method) label pair, read into the counters at scrape time. */
interface MethodTally {
  readonly labels: { cell: string, method: string }
  readonly cell: CellTally
  outcomes: Record<CallOutcome, number>
  messages: number
  streams: number
}

interface CellTally { received: number, sent: number, inflight: number }

export class CallMeter {
  private readonly duration: Histogram<'cell' | 'method'>
  /** cell label → method label → totals. Plain numbers on the call path; prom-client reads them on collect. */
  private readonly tallies = new Map<string, Map<string, MethodTally>>()
  private readonly cells = new Map<string, CellTally>()
  private readonly maxCells: number
  private readonly maxMethods: number
  private readonly now: () => number

  constructor (init: CallMeterInit) {
    const registers = [init.registry]
    this.maxCells = init.maxCells ?? 256
    this.maxMethods = init.maxMethodsPerCell ?? 64
    this.now = init.now ?? (() => performance.now())
    const tallies = (): MethodTally[] => [...this.tallies.values()].flatMap(m => [...m.values()])
    const cells = (): Array<[string, CellTally]> => [...this.cells]
    new Counter<'cell' | 'method' | 'outcome'>({ // eslint-disable-line no-new
      name: 'cell_synapse_calls_total', help: 'Synapse calls this node served, by cell, method and outcome (ok, error, deadline, cancelled).', labelNames: ['cell', 'method', 'outcome'], registers,
      collect () {
        this.reset()
        for (const t of tallies()) for (const [outcome, n] of Object.entries(t.outcomes)) if (n > 0) this.inc({ ...t.labels, outcome }, n)
      }
    })
    this.duration = new Histogram({ name: 'cell_synapse_call_duration_seconds', help: 'Time from receiving a synapse call to its answer, by cell and method.', labelNames: ['cell', 'method'], buckets: LATENCY_BUCKETS_MS.map(ms => ms / 1000), registers })
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
    let known = this.tallies.get(cell)
    if (known === undefined) {
      if (this.tallies.size >= this.maxCells && cell !== OTHER_LABEL) return this.tally(OTHER_LABEL, OTHER_LABEL)
      known = new Map()
      this.tallies.set(cell, known)
    }
    let t = known.get(method)
    if (t === undefined) {
      if (known.size >= this.maxMethods) return method === OTHER_LABEL ? this.newTally(known, cell, method) : this.tally(cell, OTHER_LABEL)
      t = this.newTally(known, cell, method)
    }
    return t
  }

  private newTally (known: Map<string, MethodTally>, cell: string, method: string): MethodTally {
    let c = this.cells.get(cell)
    if (c === undefined) { c = { received: 0, sent: 0, inflight: 0 }; this.cells.set(cell, c) }
    const t: MethodTally = { labels: { cell, method }, cell: c, outcomes: { ok: 0, error: 0, deadline: 0, cancelled: 0 }, messages: 0, streams: 0 }
    known.set(method, t)
    return t
  }

  /** `handler` with every call, message and stream counted. */
  wrap (handler: SynapseHandler): SynapseHandler {
    return {
      // One promise reaction per call (no async wrapper): the answer leaves in the same turn as
      // an unwrapped handler's would, so results batch into frames just as well.
      call: (ctx: CallContext): Promise<Uint8Array> => { // eslint-disable-line @typescript-eslint/promise-function-async
        const t = this.tally(ctx.cell, ctx.method)
        const startMs = this.now()
        t.cell.received += ctx.payload.byteLength
        t.cell.inflight++
        let result: Promise<Uint8Array>
        try {
          result = handler.call(ctx)
        } catch (err) {
          this.settle(t, startMs, outcomeOf(err))
          return Promise.reject(err) // eslint-disable-line @typescript-eslint/prefer-promise-reject-errors
        }
        return result.then((payload) => {
          t.cell.sent += payload.byteLength
          this.settle(t, startMs, 'ok')
          return payload
        }, (err: unknown) => {
          this.settle(t, startMs, outcomeOf(err))
          throw err
        })
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

  private settle (t: MethodTally, startMs: number, outcome: CallOutcome): void {
    t.cell.inflight--
    t.outcomes[outcome]++
    this.duration.observe(t.labels, Math.max(0, this.now() - startMs) / 1000)
  }
}
