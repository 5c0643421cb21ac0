import { describe, it, expect, afterEach } from 'vitest'
import { spawnSync } from 'node:child_process'
import { Registry } from 'prom-client'
import { NodeMetrics } from './node-metrics.ts'
import { cellSeries, mergeExpositions, parseExposition, sampleLabels } from './exposition.ts'
import { MetricsBusyError, MetricsProxy, UnknownCellError, UnknownNodeError, type FetchNodeMetrics } from './metrics-proxy.ts'
import { MetricsTimeoutError, decodeMetricsRequest, encodeMetricsRequest, MalformedMetricsRequestError } from './metrics-exchange.ts'
import { serveMetrics, type MetricsServer } from './metrics-server.ts'
import { UnknownAuthorityError } from '../../core/identity/index.ts'
import type { CallContext } from '../../core/synapse/types.ts'

function promtool (text: string): void {
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 })
  expect(check.error, 'promtool missing? apt-get install prometheus').toBeUndefined()
  expect(`${check.stdout}${check.stderr}`).toBe('')
  expect(check.status).toBe(0)
}

/** A node's real exposition: calls to `cells` counted by the call meter, one capsid replica per cell. */
async function nodeText (cells: Record<string, number>, replica: string): Promise<string> {
  const metrics = new NodeMetrics({ processMetrics: false })
  const handler = metrics.calls.wrap({ call: async () => new Uint8Array(1), message: () => {}, stream: () => ({ [Symbol.asyncIterator]: async function * () {} }) })
  for (const [cell, n] of Object.entries(cells)) {
    for (let i = 0; i < n; i++) {
      const ctx: CallContext = { cell, method: 'charge', payload: new Uint8Array(2), remotePeer: 'p', deadlineMs: Infinity, signal: new AbortController().signal, principal: { peerId: 'p', authority: 'a', roles: [] } }
      handler.settled?.(ctx, await handler.call(ctx), undefined, 1)
    }
  }
  const zero = { calls: 0, errors: 0, inflight: 0, messages: 0, streams: 0, framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, writes: 0, channels: 0, rejected: 0, dropped: 0, unread: 0, latencyP50Ms: 0, latencyP99Ms: 0, latencyBuckets: [] }
  metrics.attach({
    connections: () => [],
    peers: () => 0,
    view: () => ({ nodes: 3, instances: 1, releases: 1, desired: 0, accepted: { node: 0, instance: 0, release: 0, desired: 0, retire: 0, member: 0, down: 0 }, dropped: {} as never, expired: { node: 0, instance: 0 }, snapshotTruncated: 0 }),
    gossip: () => ({ ticks: 0, published: 0, publishFailures: 0, releaseRepublished: 0, skippedInstances: 0, received: { accept: 0, ignore: 0, reject: 0 } }),
    sync: () => undefined,
    keeper: () => undefined,
    synapse: () => ({ client: zero, server: zero }),
    loop: () => ({ counters: { ticks: 0, spawns: 0, drains: 0, halts: 0, volunteers: 0, failures: 0, declined: 0 }, halted: 0 }),
    replicas: () => Object.keys(cells).map(cell => ({ cell, version: '1.0.0', instanceId: `${cell}-${replica}`, state: 'ready', cpuPercent: 10, memoryBytes: 1000 })),
    artifacts: () => ({ fetched: 0, fetchFailures: 0, fetchedBytes: 0, local: 0, served: 0, notFound: 0, refused: 0, serveFailures: 0, forgotten: 0, swept: 0 })
  })
  return await metrics.text()
}

describe('exposition', () => {
  it('picks one cell, labels every series with its node, and merges families once (promtool passes)', async () => {
    const a = await nodeText({ billing: 2, ledger: 1 }, 'a')
    const b = await nodeText({ billing: 3 }, 'b')
    const billingA = cellSeries(a, 'billing')
    expect(billingA).toContain('cell_synapse_calls_total{cell="billing",method="charge",outcome="ok"} 2')
    expect(billingA).not.toContain('ledger')
    expect(billingA).not.toContain('cell_fleet_nodes')
    const merged = mergeExpositions([{ node: 'nodeA', text: billingA }, { node: 'nodeB', text: cellSeries(b, 'billing') }])
    expect(merged).toContain('cell_synapse_calls_total{node="nodeA",cell="billing",method="charge",outcome="ok"} 2')
    expect(merged).toContain('cell_synapse_calls_total{node="nodeB",cell="billing",method="charge",outcome="ok"} 3')
    expect(merged).toMatch(/^cell_capsid_resident_memory_bytes\{node="nodeB",cell="billing",version="1\.0\.0",replica="billing-b"\} 1000$/m)
    expect(merged).toContain('cell_synapse_call_duration_seconds_bucket{node="nodeA",le="0.05",cell="billing",method="charge"} 2')
    expect(merged.match(/^# TYPE cell_synapse_calls_total counter$/gm)).toHaveLength(1)
    expect(merged.match(/^# HELP cell_synapse_call_duration_seconds /gm)).toHaveLength(1)
    promtool(merged)
    // A whole node's exposition relabelled and merged with another stays valid too.
    promtool(mergeExpositions([{ node: 'x', text: a }, { node: 'y', text: b }]))
  })

  it('reads escaped label values and leaves out what it cannot parse', () => {
    const text = '# HELP m help\n# TYPE m counter\nm{cell="a\\"b",x="1"} 1\nm{cell="billing"} 2\nm{broken 3\n'
    expect(sampleLabels('m{cell="a\\"b",x="1"} 1')?.labels).toEqual([['cell', 'a\\"b'], ['x', '1']])
    expect(cellSeries(text, 'a"b')).toBe('# HELP m help\n# TYPE m counter\nm{cell="a\\"b",x="1"} 1\n')
    expect(parseExposition(text)[0].samples).toHaveLength(3)
    expect(mergeExpositions([{ node: 'n', text }])).toBe('# HELP m help\n# TYPE m counter\nm{node="n",cell="a\\"b",x="1"} 1\nm{node="n",cell="billing"} 2\n')
  })
})

describe('metrics request codec', () => {
  it('round-trips and refuses garbage by name', () => {
    const chain = new Uint8Array([1, 2, 3])
    expect(decodeMetricsRequest(encodeMetricsRequest({ kind: 'cell', cell: 'billing' }, chain))).toEqual({ chain, what: { kind: 'cell', cell: 'billing' } })
    expect(decodeMetricsRequest(encodeMetricsRequest({ kind: 'node' }, chain)).what).toEqual({ kind: 'node' })
    expect(() => decodeMetricsRequest(new Uint8Array([9, 0, 0, 0, 0]))).toThrow(MalformedMetricsRequestError)
    expect(() => decodeMetricsRequest(new Uint8Array([1, 0xff, 0xff, 0, 0]))).toThrow(MalformedMetricsRequestError)
    expect(() => decodeMetricsRequest(new Uint8Array([1, 0, 0, 1, 2, 0xff, 0xfe]))).toThrow(MalformedMetricsRequestError)
    expect(() => encodeMetricsRequest({ kind: 'cell', cell: 'x'.repeat(256) }, chain)).toThrow(MalformedMetricsRequestError)
  })
})

describe('metrics proxy', () => {
  let server: MetricsServer | undefined
  afterEach(async () => { await server?.close(); server = undefined })

  const view = {
    nodes: () => [{ nodeId: 'self' }, { nodeId: 'fast' }, { nodeId: 'slow' }, { nodeId: 'rogue' }],
    node: (id: string) => ['self', 'fast', 'slow', 'rogue'].includes(id) ? {} : undefined,
    liveInstances: (cell: string) => cell === 'billing' ? [{ nodeId: 'fast' }, { nodeId: 'slow' }, { nodeId: 'rogue' }, { nodeId: 'fast' }] : [],
    claimants: (cell: string) => cell === 'billing' || cell === 'quiet' ? ['auth'] : []
  }

  it('skips a node that never answers within the deadline and one that refuses, counting both; unknown cell is 404 by name', async () => {
    const fast = await nodeText({ billing: 4 }, 'f')
    const registry = new Registry()
    const local = new NodeMetrics({ processMetrics: false })
    // The slow node's fetch waits for its deadline (as fetchMetrics does) and nothing else.
    const fetchNode: FetchNodeMetrics = async (nodeId, what, options) => {
      if (nodeId === 'fast') return what.kind === 'cell' ? cellSeries(fast, what.cell) : fast
      if (nodeId === 'rogue') throw new UnknownAuthorityError('refused')
      return await new Promise<string>((_resolve, reject) => {
        const timer = setTimeout(() => { reject(new MetricsTimeoutError(`${nodeId}: no answer within ${options.timeoutMs} ms`)) }, options.timeoutMs)
        options.signal.addEventListener('abort', () => { clearTimeout(timer); reject(options.signal.reason) }, { once: true })
      })
    }
    const proxy = new MetricsProxy({ selfId: 'self', view, local: async () => await registry.metrics(), fetch: fetchNode, registry, timeoutMs: 300 })
    server = await serveMetrics(local, { host: '127.0.0.1', port: 0 }, { fleet: proxy })
    const base = server.url.replace(/\/metrics$/, '')

    const started = performance.now()
    const res = await fetch(`${base}/metrics/cells/billing`, { signal: AbortSignal.timeout(5_000) })
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(performance.now() - started).toBeLessThan(3_000)
    expect(text).toContain('cell_synapse_calls_total{node="fast",cell="billing",method="charge",outcome="ok"} 4')
    expect(text).not.toContain('node="slow"')
    promtool(text)
    const own = await registry.metrics()
    expect(own).toContain('cell_metrics_proxy_failures_total{reason="timeout"} 1')
    expect(own).toContain('cell_metrics_proxy_failures_total{reason="refused"} 1')

    // A cell with a release but no live instance: an empty (valid) exposition, not an error.
    const quiet = await fetch(`${base}/metrics/cells/quiet`, { signal: AbortSignal.timeout(5_000) })
    expect(quiet.status).toBe(200)
    expect(await quiet.text()).toBe('')

    const unknown = await fetch(`${base}/metrics/cells/nosuch`, { signal: AbortSignal.timeout(5_000) })
    expect(unknown.status).toBe(404)
    expect(await unknown.text()).toMatch(/^UnknownCellError: /)
    await expect(proxy.cell('nosuch')).rejects.toBeInstanceOf(UnknownCellError)

    const node = await fetch(`${base}/metrics/nodes/fast`, { signal: AbortSignal.timeout(5_000) })
    expect(node.status).toBe(200)
    expect(await node.text()).toBe(fast)
    const dead = await fetch(`${base}/metrics/nodes/slow`, { signal: AbortSignal.timeout(5_000) })
    expect(dead.status).toBe(502)
    expect(await dead.text()).toMatch(/^MetricsUnavailableError: /)
    const stranger = await fetch(`${base}/metrics/nodes/stranger`, { signal: AbortSignal.timeout(5_000) })
    expect(stranger.status).toBe(404)
    expect(await stranger.text()).toMatch(/^UnknownNodeError: /)
    await expect(proxy.node('stranger')).rejects.toBeInstanceOf(UnknownNodeError)

    const sd = await fetch(`${base}/sd/prometheus`, { signal: AbortSignal.timeout(5_000) })
    expect(sd.headers.get('content-type')).toBe('application/json')
    const host = new URL(base).host
    expect(await sd.json()).toEqual(['self', 'fast', 'rogue', 'slow'].map(id => ({ targets: [host], labels: { __metrics_path__: `/metrics/nodes/${id}`, node: id } })))
  }, 30_000)

  it('runs a bounded number of proxied scrapes at once, queues a few more, and refuses the rest with 503 by name', async () => {
    // Whoever reaches the metrics port could otherwise have the node ask every node of the fleet,
    // as many times over as it opens requests.
    const release: Array<() => void> = []
    let asked = 0
    const fetchNode: FetchNodeMetrics = async () => {
      asked++
      return await new Promise<string>((resolve) => { release.push(() => { resolve('# held\n') }) })
    }
    const registry = new Registry()
    const proxy = new MetricsProxy({ selfId: 'self', view, local: async () => '', fetch: fetchNode, registry, timeoutMs: 10_000, maxConcurrent: 2, maxWaiting: 2 })
    server = await serveMetrics(new NodeMetrics({ processMetrics: false }), { host: '127.0.0.1', port: 0 }, { fleet: proxy })
    const base = server.url.replace(/\/metrics$/, '')
    const running = [proxy.node('fast'), proxy.node('slow')]
    const waitingAbort = new AbortController()
    const waiting = [proxy.node('fast'), proxy.node('fast', { signal: waitingAbort.signal })]
    // Two ask the fleet; two wait without asking; the fifth is refused at once.
    expect(asked).toBe(2)
    await expect(proxy.node('fast')).rejects.toThrow(MetricsBusyError)
    const busy = await fetch(`${base}/metrics/nodes/fast`, { signal: AbortSignal.timeout(5_000) })
    expect(busy.status).toBe(503)
    expect(await busy.text()).toMatch(/^MetricsBusyError: 2 fleet scrapes running and 2 waiting/)
    // A waiting scrape whose client went away leaves the queue.
    waitingAbort.abort(new Error('client gone'))
    await expect(waiting[1]).rejects.toThrow('client gone')
    // One finishes: its slot passes to the waiting one, and a newcomer waits behind it.
    release.shift()!()
    expect(await running[0]).toBe('# held\n')
    const late = proxy.node('fast')
    await new Promise<void>((resolve) => { setImmediate(resolve) })
    expect(asked).toBe(3)
    release.shift()!()
    release.shift()!()
    expect(await running[1]).toBe('# held\n')
    expect(await waiting[0]).toBe('# held\n')
    await new Promise<void>((resolve) => { setImmediate(resolve) })
    expect(asked).toBe(4)
    release.shift()!()
    expect(await late).toBe('# held\n')
    // All done: both slots are free again.
    const again = [proxy.node('fast'), proxy.node('fast')]
    expect(asked).toBe(6)
    while (release.length > 0) release.shift()!()
    await Promise.all(again)
  }, 30_000)
})
