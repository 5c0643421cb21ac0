// The fleet's metrics through any one node: `/metrics/nodes/<id>` (another node's own exposition,
// fetched over `/cell/metrics/1`), `/metrics/cells/<cell>` (one cell's series from every node its
// view lists a live instance of the cell on, each labelled `node`) and `/sd/prometheus` (http_sd
// targets: every node of the view, each reached through this node's own HTTP address with
// `__metrics_path__ = /metrics/nodes/<id>`). Node records need not advertise metrics addresses, and
// a Prometheus pointed at one node scrapes every node. Every fetch runs in parallel under one
// deadline; a node that is slow, dead or refuses is skipped and counted, never waited for.
import { Counter, type Registry } from 'prom-client'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { UnknownCellError } from '../../core/mesh/errors.ts'
import { isRefusal } from '../../core/fleet/peer-grant.ts'
import { DEFAULT_METRICS_TIMEOUT_MS, MetricsTimeoutError, type MetricsRequest } from './metrics-exchange.ts'
import { cellSeries, mergeExpositions } from './exposition.ts'

export { UnknownCellError } from '../../core/mesh/errors.ts'

/** `/metrics/nodes/<id>` names a node this node's view does not hold. */
export class UnknownNodeError extends CellError {
  static override readonly errorName = 'UnknownNodeError'
  static override readonly retry: RetryRule = 'never'
}
/** `/metrics/nodes/<id>`: the node was known but did not answer (timeout, refusal, failure). */
export class MetricsUnavailableError extends CellError {
  static override readonly errorName = 'MetricsUnavailableError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** More proxied scrapes than the node runs or queues at once (HTTP 503; Prometheus retries at its next interval). */
export class MetricsBusyError extends CellError {
  static override readonly errorName = 'MetricsBusyError'
  static override readonly retry: RetryRule = 'nothing-ran'
}

/** The slice of the fleet view the proxy reads. */
export interface MetricsViewPort {
  nodes: () => Array<{ nodeId: string }>
  node: (nodeId: string) => unknown
  liveInstances: (cell: string) => Array<{ nodeId: string }>
  /** Authorities that published a release or desired record of the cell. */
  claimants: (cell: string) => string[]
}

export type FetchNodeMetrics = (nodeId: string, what: MetricsRequest, options: { signal: AbortSignal, timeoutMs: number }) => Promise<string>

export interface MetricsProxyInit {
  selfId: string
  view: MetricsViewPort
  /** This node's own exposition. */
  local: () => Promise<string>
  /** Another node's, over `/cell/metrics/1`. */
  fetch: FetchNodeMetrics
  /** Where `cell_metrics_proxy_failures_total` is counted (this node's registry). */
  registry: Registry
  /** Deadline for every remote fetch of one request (default 2 s). */
  timeoutMs?: number
  /** Nodes asked per request at most (default 64); targets listed at most (default 1024). */
  maxNodes?: number
  maxTargets?: number
  /** Proxied scrapes running at once (default 16: each asks up to maxNodes nodes), and waiting for a turn (default 64). */
  maxConcurrent?: number
  maxWaiting?: number
}

export type ProxyFailureReason = 'timeout' | 'refused' | 'error'

export interface SdTargetGroup { targets: string[], labels: Record<string, string> }

export class MetricsProxy {
  private readonly init: MetricsProxyInit
  private readonly failures: Counter<'reason'>
  private readonly timeoutMs: number
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor (init: MetricsProxyInit) {
    this.init = init
    this.timeoutMs = init.timeoutMs ?? DEFAULT_METRICS_TIMEOUT_MS
    this.failures = new Counter({
      name: 'cell_metrics_proxy_failures_total',
      help: 'Nodes skipped while this node proxied fleet metrics (/metrics/cells, /metrics/nodes), by reason (timeout, refused, error).',
      labelNames: ['reason'],
      registers: [init.registry]
    })
    for (const reason of ['timeout', 'refused', 'error'] satisfies ProxyFailureReason[]) this.failures.inc({ reason }, 0)
  }

  private reasonOf (err: unknown): ProxyFailureReason {
    if (err instanceof MetricsTimeoutError) return 'timeout'
    if (isRefusal(err)) return 'refused'
    return 'error'
  }

  /**
   * Runs one proxied scrape when its turn comes: whoever can reach the metrics port must not be able
   * to have the node ask the fleet without limit (streams to every node, their answers in memory).
   */
  private async turn<T> (work: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.running >= (this.init.maxConcurrent ?? 16)) {
      if (this.waiting.length >= (this.init.maxWaiting ?? 64)) throw new MetricsBusyError(`${this.running} fleet scrapes running and ${this.waiting.length} waiting on this node; try again later`)
      await new Promise<void>((resolve, reject) => {
        const go = (): void => { signal?.removeEventListener('abort', gone); resolve() }
        const gone = (): void => {
          const at = this.waiting.indexOf(go)
          if (at >= 0) this.waiting.splice(at, 1)
          reject(signal!.reason)
        }
        signal?.addEventListener('abort', gone, { once: true })
        this.waiting.push(go)
      })
      // The slot of the scrape that finished passed to this one (running stays as it was).
    } else {
      this.running++
    }
    try {
      return await work()
    } finally {
      const next = this.waiting.shift()
      if (next !== undefined) next()
      else this.running--
    }
  }

  /** One node's text, or the reason it was skipped (counted). */
  private async ask (nodeId: string, what: MetricsRequest, signal: AbortSignal): Promise<string | { skipped: ProxyFailureReason, err: unknown }> {
    try {
      if (nodeId === this.init.selfId) {
        const all = await this.init.local()
        return what.kind === 'cell' ? cellSeries(all, what.cell) : all
      }
      return await this.init.fetch(nodeId, what, { signal, timeoutMs: this.timeoutMs })
    } catch (err) {
      const skipped = this.reasonOf(err)
      this.failures.inc({ reason: skipped })
      return { skipped, err }
    }
  }

  /** Every node's series of `cell`, labelled `node`; nodes that fail are skipped. UnknownCellError when no release of it is known. */
  async cell (cell: string, options: { signal?: AbortSignal } = {}): Promise<{ text: string, nodes: string[], skipped: string[] }> {
    options.signal?.throwIfAborted()
    const nodes = [...new Set(this.init.view.liveInstances(cell).map(r => r.nodeId))].sort().slice(0, this.init.maxNodes ?? 64)
    if (nodes.length === 0 && this.init.view.claimants(cell).length === 0) throw new UnknownCellError(`no release of cell ${cell} is known to this node`)
    const signal = options.signal ?? new AbortController().signal
    const answers = await this.turn(async () => await Promise.all(nodes.map(async node => ({ node, answer: await this.ask(node, { kind: 'cell', cell }, signal) }))), options.signal)
    const parts: Array<{ node: string, text: string }> = []
    const skipped: string[] = []
    for (const { node, answer } of answers) {
      if (typeof answer === 'string') parts.push({ node, text: answer })
      else skipped.push(node)
    }
    return { text: mergeExpositions(parts), nodes: parts.map(p => p.node), skipped }
  }

  /** One node's own exposition (this node's, or fetched). */
  async node (nodeId: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    options.signal?.throwIfAborted()
    if (nodeId !== this.init.selfId && this.init.view.node(nodeId) === undefined) throw new UnknownNodeError(`node ${nodeId} is not in this node's view`)
    const answer = await this.turn(async () => await this.ask(nodeId, { kind: 'node' }, options.signal ?? new AbortController().signal), options.signal)
    if (typeof answer === 'string') return answer
    throw new MetricsUnavailableError(`metrics of node ${nodeId}: ${answer.skipped}`, { cause: answer.err })
  }

  /** http_sd target groups: every node of the view (this one first), each through `hostPort`. */
  targets (hostPort: string): SdTargetGroup[] {
    const ids = [this.init.selfId, ...this.init.view.nodes().map(n => n.nodeId).filter(id => id !== this.init.selfId).sort()]
    return ids.slice(0, this.init.maxTargets ?? 1024).map(id => ({
      targets: [hostPort],
      labels: { __metrics_path__: `/metrics/nodes/${id}`, node: id }
    }))
  }
}
