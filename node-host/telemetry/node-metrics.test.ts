import { describe, it, expect, afterEach } from 'vitest'
import { createServer } from 'node:net'
import { spawnSync } from 'node:child_process'
import { NodeMetrics, type NodeMetricsSources } from './node-metrics.ts'
import { CallMeter, OTHER_LABEL } from './call-meter.ts'
import { parseMetricsAddress, serveMetrics, MetricsAddressError, MetricsPortInUseError, type MetricsServer } from './metrics-server.ts'
import { Registry } from 'prom-client'
import { DeadlineExceededError } from '../../core/synapse/errors.ts'
import type { CallContext, SynapseHandler } from '../../core/synapse/types.ts'

const zeroSynapse = { calls: 0, errors: 0, inflight: 0, messages: 0, streams: 0, framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, writes: 0, channels: 0, rejected: 0, dropped: 0, unread: 0, latencyP50Ms: 0, latencyP99Ms: 0, latencyBuckets: [] }

function fakeSources (): NodeMetricsSources {
  return {
    connections: () => [{ direction: 'inbound', streams: ['/cell/synapse/1', '/meshsub/1.1.0'] }, { direction: 'outbound', streams: ['/cell/synapse/1'] }],
    peers: () => 2,
    view: () => ({ nodes: 3, instances: 4, releases: 1, desired: 0, accepted: { node: 9, instance: 8, release: 1, desired: 0, retire: 0, member: 0, down: 0 }, dropped: { malformed: 1 } as never, expired: { node: 0, instance: 2 }, snapshotTruncated: 0 }),
    gossip: () => ({ ticks: 7, published: 6, publishFailures: 1, releaseRepublished: 0, skippedInstances: 0, received: { accept: 10, ignore: 2, reject: 1 }, mismatchPeers: 2 }),
    sync: () => ({ pulls: 3, pullFailures: 1, served: 2, serveFailures: 0, refused: 0, unauthorized: 1 }),
    keeper: () => ({ rounds: 4, dials: 5, failures: 2, reconnects: 1, joins: 2, leaves: 1 }),
    guests: () => ({ anonymous: 12, vouched: 3, vouchedPeers: 5, closed: 40, limits: { perHost: 32, total: 256 } }),
    meshGuests: () => ({ placed: 4, places: 6 }),
    dht: () => ({ providers: 1030, outsiderProviders: 1024, records: 3, providersRefused: 1976, providersEvicted: 5, recordsEvicted: 0, peers: 40, peersEvicted: 7 }),
    synapse: () => ({ client: { ...zeroSynapse, calls: 4, errors: 1, channels: 1 }, server: { ...zeroSynapse, calls: 9, channels: 2 } }),
    loop: () => ({ counters: { ticks: 20, spawns: 2, drains: 1, halts: 1, volunteers: 0, failures: 0, declined: 3 }, halted: 1 }),
    replicas: () => [{ cell: 'billing', version: '1.0.0', instanceId: 'r1', state: 'ready', cpuPercent: 25, memoryBytes: 42_000_000 }],
    artifacts: () => ({ fetched: 1, fetchFailures: 0, fetchedBytes: 2048, local: 1, served: 3, notFound: 0, refused: 0, serveFailures: 0, forgotten: 4, swept: 2 })
  }
}

/** `# TYPE name type` lines of an exposition. */
function types (text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(m => [m[1], m[2]]))
}

describe('node metrics', () => {
  it('exposes every component under Prometheus names: counters end in _total, units in names', async () => {
    const metrics = new NodeMetrics()
    metrics.attach(fakeSources())
    const text = await metrics.text()
    const t = types(text)
    for (const [name, type] of t) {
      if (type === 'counter') expect(name, `counter ${name}`).toMatch(/_total$/)
      else expect(name, `${type} ${name}`).not.toMatch(/_total$/)
      if (name.startsWith('cell_')) expect(name).toMatch(/^cell_[a-z0-9_]+$/)
    }
    expect(t.get('process_cpu_seconds_total')).toBe('counter')
    expect(t.get('process_resident_memory_bytes')).toBe('gauge')
    expect(t.get('cell_synapse_calls_total')).toBe('counter')
    expect(t.get('cell_synapse_call_duration_seconds')).toBe('histogram')
    expect(t.get('cell_capsid_resident_memory_bytes')).toBe('gauge')
    expect(text).toContain('cell_libp2p_connections{direction="inbound"} 1')
    expect(text).toContain('cell_guest_connections{kind="anonymous"} 12')
    expect(text).toContain('cell_guest_connections{kind="vouched"} 3')
    expect(text).toContain('cell_guest_vouched_peers 5')
    expect(text).toContain('cell_guest_connections_limit{scope="per_host"} 32')
    expect(text).toContain('cell_gossip_guest_places{state="held"} 4')
    expect(text).toContain('cell_gossip_guest_places{state="limit"} 6')
    expect(text).toContain('cell_libp2p_streams{protocol="/cell/synapse/1"} 2')
    expect(text).toContain('cell_gossip_messages_received_total{verdict="reject"} 1')
    expect(text).toContain('cell_gossip_messages_dropped_total 3')
    expect(text).toContain('cell_gossip_messages_sent_total 6')
    expect(text).toContain('cell_fleet_records_dropped_total{reason="malformed"} 1')
    expect(text).toContain('cell_synapse_client_calls_total{outcome="error"} 1')
    expect(text).toContain('cell_capsid_cpu_ratio{cell="billing",version="1.0.0",replica="r1"} 0.25')
    expect(text).toContain('cell_capsid_resident_memory_bytes{cell="billing",version="1.0.0",replica="r1"} 42000000')
    expect(text).toContain('cell_biology_release_halted_total 1')
    expect(text).toContain('cell_biology_decisions_total{action="spawn"} 2')
    expect(text).toContain('cell_biology_spawns_declined_total 3')
    expect(text).toContain('cell_artifact_fetches_total{outcome="ok"} 1')
    expect(text).toContain('cell_artifact_fetched_bytes_total 2048')
    expect(text).toContain('cell_artifacts_deleted_total{reason="left_history"} 4')
    expect(text).toContain('cell_artifacts_deleted_total{reason="swept"} 2')
    expect(t.get('cell_dissemination_mismatch_peers')).toBe('gauge')
    expect(text).toContain('cell_dissemination_mismatch_peers 2')
    expect(text).toContain('cell_dht_records{kind="outsider_providers"} 1024')
    expect(text).toContain('cell_dht_records_dropped_total{reason="provider_refused"} 1976')
    expect(text).toContain('cell_dht_records{kind="peers"} 40')
    // Debian's `prometheus` package (installed by .ci/run) provides promtool.
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 })
    expect(check.error, 'promtool missing? apt-get install prometheus').toBeUndefined()
    expect(`${check.stdout}${check.stderr}`).toBe('')
    expect(check.status).toBe(0)
  })

  it('counts calls by cell, method and outcome, with bounded label values', async () => {
    const registry = new Registry()
    const meter = new CallMeter({ registry, maxCells: 2, maxMethodsPerCell: 1 })
    const handler: SynapseHandler = {
      call: async (ctx) => {
        if (ctx.method === 'slow') throw new DeadlineExceededError('late')
        return new Uint8Array(7)
      },
      message: () => {},
      stream: () => ({ [Symbol.asyncIterator]: async function * () {} })
    }
    const wrapped = meter.wrap(handler)
    const ctx = (cell: string, method: string): CallContext => ({ cell, method, payload: new Uint8Array(3), remotePeer: 'p', deadlineMs: Infinity, signal: new AbortController().signal, principal: { peerId: 'p', authority: 'a', roles: [] } })
    // As a synapse session does it: the call goes in, then `settled` says how it was answered.
    const run = async (c: CallContext): Promise<void> => {
      await wrapped.call(c).then((r) => { wrapped.settled?.(c, r, undefined, 30) }, (err: unknown) => { wrapped.settled?.(c, undefined, err, 30) })
    }
    const pending = ctx('billing', 'charge')
    const answer = wrapped.call(pending)
    expect(await registry.getSingleMetricAsString('cell_synapse_calls_in_flight')).toContain('cell_synapse_calls_in_flight{cell="billing"} 1')
    wrapped.settled?.(pending, await answer, undefined, 30)
    await run(ctx('billing', 'slow'))
    await run(ctx('ledger', 'append'))
    await run(ctx('third', 'x'))
    const text = await registry.metrics()
    expect(text).toContain('cell_synapse_calls_total{cell="billing",method="charge",outcome="ok"} 1')
    expect(text).toContain(`cell_synapse_calls_total{cell="billing",method="${OTHER_LABEL}",outcome="deadline"} 1`)
    expect(text).toContain(`cell_synapse_calls_total{cell="${OTHER_LABEL}",method="${OTHER_LABEL}",outcome="ok"} 1`)
    expect(text).toContain('cell_synapse_call_duration_seconds_bucket{le="0.025",cell="billing",method="charge"} 0')
    expect(text).toContain('cell_synapse_call_duration_seconds_bucket{le="0.05",cell="billing",method="charge"} 1')
    expect(text).toContain('cell_synapse_call_duration_seconds_bucket{le="+Inf",cell="billing",method="charge"} 1')
    expect(text).toContain('cell_synapse_call_duration_seconds_sum{cell="billing",method="charge"} 0.03')
    expect(text).toContain('cell_synapse_call_duration_seconds_count{cell="billing",method="charge"} 1')
    expect(text).toContain('cell_synapse_received_bytes_total{cell="billing"} 6')
    expect(text).toContain('cell_synapse_sent_bytes_total{cell="billing"} 7')
    expect(text).toContain('cell_synapse_calls_in_flight{cell="billing"} 0')
    // The JSON form (getMetricsAsJSON) carries the same series with the labels merged.
    const json = await registry.getMetricsAsJSON()
    const duration = json.find(m => m.name === 'cell_synapse_call_duration_seconds')
    expect(duration?.type).toBe('histogram')
    expect(duration?.values).toContainEqual({ labels: { cell: 'billing', method: 'charge', le: 0.05 }, value: 1, metricName: 'cell_synapse_call_duration_seconds_bucket' })
  })
})

describe('metrics server', () => {
  let server: MetricsServer | undefined
  afterEach(async () => { await server?.close(); server = undefined })

  it('parses --metrics forms', () => {
    expect(parseMetricsAddress('off')).toBe('off')
    expect(parseMetricsAddress(':9090/metrics')).toEqual({ host: '127.0.0.1', port: 9090 })
    expect(parseMetricsAddress('0.0.0.0:9100')).toEqual({ host: '0.0.0.0', port: 9100 })
    expect(parseMetricsAddress('[::1]:0')).toEqual({ host: '::1', port: 0 })
    expect(() => parseMetricsAddress('9090')).toThrow(MetricsAddressError)
    expect(() => parseMetricsAddress(':9090/other')).toThrow(MetricsAddressError)
    expect(() => parseMetricsAddress(':70000')).toThrow(MetricsAddressError)
  })

  it('serves GET /metrics with the registry content type, 404 elsewhere; a taken port fails by name', async () => {
    const metrics = new NodeMetrics({ processMetrics: false })
    metrics.attach(fakeSources())
    server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 })
    const ok = await fetch(server.url, { signal: AbortSignal.timeout(5_000) })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('content-type')).toBe(metrics.contentType)
    expect(await ok.text()).toContain('cell_fleet_nodes 3')
    const missing = await fetch(server.url.replace('/metrics', '/other'), { signal: AbortSignal.timeout(5_000) })
    expect(missing.status).toBe(404)
    await missing.text()
    await expect(serveMetrics(metrics, { host: '127.0.0.1', port: server.port })).rejects.toBeInstanceOf(MetricsPortInUseError)
    // A port held by something else entirely (not an HTTP server of ours) fails the same way.
    const other = createServer()
    await new Promise<void>((resolve) => { other.listen(0, '127.0.0.1', resolve) })
    const port = (other.address() as { port: number }).port
    await expect(serveMetrics(metrics, { host: '127.0.0.1', port })).rejects.toThrow(/cannot serve metrics on 127\.0\.0\.1:\d+ \(EADDRINUSE\)/)
    await new Promise<void>((resolve) => { other.close(() => { resolve() }) })
  })
})
