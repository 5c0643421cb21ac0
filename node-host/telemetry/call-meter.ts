// Per-cell synapse metrics on a full node: calls by cell, method and outcome, their latency, bytes
// and calls in flight. Core's synapse counts totals per channel only; the node wraps the handler it
// hands the mesh, so core stays free of prom-client and the per-call work is a few label lookups
// next to a capsid round trip over a Unix socket.
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

export class CallMeter {
  private readonly calls: Counter<'cell' | 'method' | 'outcome'>
  private readonly duration: Histogram<'cell' | 'method'>
  private readonly received: Counter<'cell'>
  private readonly sent: Counter<'cell'>
  private readonly inflight: Gauge<'cell'>
  private readonly messages: Counter<'cell' | 'method'>
  private readonly streams: Counter<'cell' | 'method'>
  private readonly methods = new Map<string, Set<string>>()
  private readonly maxCells: number
  private readonly maxMethods: number
  private readonly now: () => number

  constructor (init: CallMeterInit) {
    const registers = [init.registry]
    this.maxCells = init.maxCells ?? 256
    this.maxMethods = init.maxMethodsPerCell ?? 64
    this.now = init.now ?? (() => performance.now())
    this.calls = new Counter({ name: 'cell_synapse_calls_total', help: 'Synapse calls this node served, by cell, method and outcome (ok, error, deadline, cancelled).', labelNames: ['cell', 'method', 'outcome'], registers })
    this.duration = new Histogram({ name: 'cell_synapse_call_duration_seconds', help: 'Time from receiving a synapse call to its answer, by cell and method.', labelNames: ['cell', 'method'], buckets: LATENCY_BUCKETS_MS.map(ms => ms / 1000), registers })
    this.received = new Counter({ name: 'cell_synapse_received_bytes_total', help: 'Payload bytes of synapse calls, messages and streams this node received, by cell.', labelNames: ['cell'], registers })
    this.sent = new Counter({ name: 'cell_synapse_sent_bytes_total', help: 'Payload bytes of synapse call results this node sent, by cell.', labelNames: ['cell'], registers })
    this.inflight = new Gauge({ name: 'cell_synapse_calls_in_flight', help: 'Synapse calls this node is serving now, by cell.', labelNames: ['cell'], registers })
    this.messages = new Counter({ name: 'cell_synapse_messages_total', help: 'One-way synapse messages this node received, by cell and method.', labelNames: ['cell', 'method'], registers })
    this.streams = new Counter({ name: 'cell_synapse_streams_total', help: 'Synapse streams this node opened for callers, by cell and method.', labelNames: ['cell', 'method'], registers })
  }

  /** The bounded (cell, method) label values for a call. */
  labels (cell: string, method: string): { cell: string, method: string } {
    let known = this.methods.get(cell)
    if (known === undefined) {
      if (this.methods.size >= this.maxCells) return { cell: OTHER_LABEL, method: OTHER_LABEL }
      known = new Set()
      this.methods.set(cell, known)
    }
    if (!known.has(method)) {
      if (known.size >= this.maxMethods) return { cell, method: OTHER_LABEL }
      known.add(method)
    }
    return { cell, method }
  }

  /** `handler` with every call, message and stream counted. */
  wrap (handler: SynapseHandler): SynapseHandler {
    return {
      call: async (ctx: CallContext): Promise<Uint8Array> => {
        const labels = this.labels(ctx.cell, ctx.method)
        const startMs = this.now()
        this.received.inc({ cell: labels.cell }, ctx.payload.byteLength)
        this.inflight.inc({ cell: labels.cell })
        let outcome: CallOutcome = 'error'
        try {
          const result = await handler.call(ctx)
          outcome = 'ok'
          this.sent.inc({ cell: labels.cell }, result.byteLength)
          return result
        } catch (err) {
          outcome = outcomeOf(err)
          throw err
        } finally {
          this.inflight.dec({ cell: labels.cell })
          this.calls.inc({ ...labels, outcome })
          this.duration.observe(labels, Math.max(0, this.now() - startMs) / 1000)
        }
      },
      message: (ctx: MessageContext): void => {
        const labels = this.labels(ctx.cell, ctx.method)
        this.messages.inc(labels)
        this.received.inc({ cell: labels.cell }, ctx.payload.byteLength)
        handler.message(ctx)
      },
      stream: (ctx: CallContext): AsyncIterable<Uint8Array> => {
        const labels = this.labels(ctx.cell, ctx.method)
        this.streams.inc(labels)
        this.received.inc({ cell: labels.cell }, ctx.payload.byteLength)
        return handler.stream(ctx)
      }
    }
  }
}
