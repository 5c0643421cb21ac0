// Attack: `/cell/metrics/1` hands a node's whole Prometheus exposition (peers, cells, replicas,
// load) to whoever asks. The request carries the requester's chain and the server admits only a
// grant (any role) from an authority it trusts; garbage and oversized requests are dropped and
// counted; a node that never answers costs the asker its deadline and no more.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import type { AuthorityKey } from '../../core/identity/index.ts'
import { TruncatedChainError, UnknownAuthorityError } from '../../core/identity/index.ts'
import {
  METRICS_PROTOCOL, fetchMetrics, serveMetricsProtocol, metricsServeStats, encodeMetricsRequest,
  MetricsTimeoutError, type MetricsServeStats
} from '../../node-host/telemetry/metrics-exchange.ts'
import { authority, grantPeer, within, type GrantPeer } from './grant-peers.ts'

const EXPOSITION = '# HELP cell_synapse_calls_total calls\n# TYPE cell_synapse_calls_total counter\ncell_synapse_calls_total{cell="billing",method="charge",outcome="ok"} 3\ncell_synapse_calls_total{cell="ledger",method="append",outcome="ok"} 1\n'

const peers: GrantPeer[] = []
afterAll(async () => { await Promise.all(peers.map(async p => await p.node.stop())) })

async function peer (init: Parameters<typeof grantPeer>[0]): Promise<GrantPeer> {
  const p = await grantPeer(init)
  peers.push(p)
  return p
}

/** Sends `bytes` as a raw request and returns whatever comes back (or the error that ended the stream). */
async function raw (client: GrantPeer, server: GrantPeer, bytes: Uint8Array): Promise<{ bytes: number, error?: string }> {
  const stream = await client.node.dialProtocol(server.node.getMultiaddrs()[0], METRICS_PROTOCOL)
  let total = 0
  try {
    stream.send(bytes)
    await stream.close()
    for await (const chunk of stream) total += chunk.byteLength
    return { bytes: total }
  } catch (err) {
    return { bytes: total, error: (err as Error).name }
  }
}

describe('/cell/metrics/1 requires a grant from a trusted authority', () => {
  let fleet: AuthorityKey
  let rogue: AuthorityKey
  let server: GrantPeer
  const stats: MetricsServeStats = metricsServeStats()

  beforeAll(async () => {
    fleet = await authority()
    rogue = await authority()
    server = await peer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    await serveMetricsProtocol(server.node, async () => EXPOSITION, { gate: server.gate, stats })
  })

  async function ask (client: GrantPeer, what: Parameters<typeof fetchMetrics>[2]): Promise<unknown> {
    await client.node.dial(server.node.getMultiaddrs()[0])
    return await within(fetchMetrics(client.node, server.node.peerId, what, { gate: client.gate, timeoutMs: 5_000 }).then(r => r, (e: unknown) => e), 8_000, 'fetch')
  }

  it('serves a peer with a caller grant from the trusted authority: the node, or one cell', async () => {
    const member = await peer({ trusted: [fleet.id], grantFrom: fleet, roles: ['caller'] })
    expect(await ask(member, { kind: 'node' })).toBe(EXPOSITION)
    const billing = await ask(member, { kind: 'cell', cell: 'billing' })
    expect(billing).toContain('cell="billing"')
    expect(billing).not.toContain('ledger')
    expect(stats.served).toBe(2)
  })

  it('refuses a grant-less peer and a peer granted by an untrusted authority, by name, and counts them', async () => {
    const before = stats.refused
    const bare = await peer({ trusted: [fleet.id] })
    expect(await ask(bare, { kind: 'node' })).toBeInstanceOf(TruncatedChainError)
    const stranger = await peer({ trusted: [rogue.id], grantFrom: rogue, roles: ['host', 'operator'] })
    expect(await ask(stranger, { kind: 'cell', cell: 'billing' })).toBeInstanceOf(UnknownAuthorityError)
    expect(stats.refused).toBe(before + 2)
  })

  it('drops garbage and oversized requests without a byte of metrics, and counts them', async () => {
    const member = await peer({ trusted: [fleet.id], grantFrom: fleet, roles: ['caller'] })
    const before = stats.malformed
    const garbage = await within(raw(member, server, new TextEncoder().encode('GET /metrics HTTP/1.1\r\n\r\n')), 8_000, 'garbage')
    expect(garbage.bytes).toBe(0)
    const valid = encodeMetricsRequest({ kind: 'node' }, member.gate.chain())
    const oversized = new Uint8Array(valid.length + 64 * 1024)
    oversized.set(valid)
    const big = await within(raw(member, server, oversized), 8_000, 'oversized')
    expect(big.bytes).toBe(0)
    expect(stats.malformed).toBe(before + 2)
    expect(stats.served).toBe(2)
  })

  it('a node that reads the request and never answers costs the asker its deadline, then a named timeout', async () => {
    const silent = await peer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    await silent.node.handle(METRICS_PROTOCOL, async (stream) => { for await (const _ of stream) { /* read, never answer */ } })
    const member = await peer({ trusted: [fleet.id], grantFrom: fleet, roles: ['caller'] })
    await member.node.dial(silent.node.getMultiaddrs()[0])
    const started = performance.now()
    const err = await within(fetchMetrics(member.node, silent.node.peerId, { kind: 'node' }, { gate: member.gate, timeoutMs: 500 }).then(r => r, (e: unknown) => e), 5_000, 'silent fetch')
    expect(err).toBeInstanceOf(MetricsTimeoutError)
    expect(performance.now() - started).toBeLessThan(2_000)
  })
})
