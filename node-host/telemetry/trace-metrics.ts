// The span exporter's counters on the node's Prometheus registry.
import { Counter, type Registry } from 'prom-client'
import type { TraceExportStats } from './otel-tracer.ts'

export function registerTraceExportStats (registry: Registry, stats: TraceExportStats): void {
  new Counter<'outcome'>({ // eslint-disable-line no-new
    name: 'cell_trace_spans_total',
    help: 'Sampled spans by export outcome: exported, failed (receiver down, refused, timed out) or dropped (bounded queue full).',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      this.reset()
      this.inc({ outcome: 'exported' }, stats.exported)
      this.inc({ outcome: 'failed' }, stats.failed)
      this.inc({ outcome: 'dropped' }, stats.dropped)
    }
  })
}
