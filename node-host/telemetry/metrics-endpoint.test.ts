// One real full node in this process with its metrics endpoint on a free port: a call to a
// published cell shows in cell_synapse_calls_total, and promtool accepts what the endpoint serves.
import { describe, it, expect, afterAll } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { FullNode } from '../full-node.ts'
import { createClient, waitForReplicas } from '../client.ts'
import { Publisher } from '../publisher.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')

async function scrape (url: string): Promise<{ text: string, contentType: string | null }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  expect(res.status).toBe(200)
  return { text: await res.text(), contentType: res.headers.get('content-type') }
}

describe('metrics endpoint of a full node', () => {
  const clients: Mesh[] = []
  let node: FullNode | undefined
  let root = ''
  afterAll(async () => {
    await Promise.all(clients.map(async c => await c.stop()))
    await node?.stop()
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  it('counts a real call by cell, method and outcome, and passes promtool check metrics', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-metrics-'))
    const authority = await generateAuthority()
    node = await FullNode.create({ dataDir: join(root, 'n0'), authorityKeys: [authority], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false }, metrics: { host: '127.0.0.1', port: 0 } })
    await node.start()
    const url = node.metricsUrl
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    expect(url).not.toMatch(/:0\/metrics$/)

    const publisher = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    const published = await new Publisher(publisher).publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 45_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)
    const caller = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: authority })
    clients.push(caller)
    await waitForReplicas(caller, 'billing', { timeoutMs: 20_000 })
    const billing = caller.remote<{ charge: (req: { amount: number }) => Promise<{ amount: number }> }>('billing')
    expect((await billing.charge({ amount: 5 })).amount).toBe(5)
    expect((await billing.charge({ amount: 7 })).amount).toBe(7)

    const { text, contentType } = await scrape(url!)
    expect(contentType).toBe(node.metrics.contentType)
    expect(text).toMatch(/^cell_synapse_calls_total\{cell="billing",method="charge",outcome="ok"\} 2$/m)
    expect(text).toMatch(/^cell_synapse_call_duration_seconds_count\{cell="billing",method="charge"\} 2$/m)
    expect(text).toMatch(/^cell_synapse_calls_in_flight\{cell="billing"\} 0$/m)
    expect(text).toMatch(/^cell_capsid_resident_memory_bytes\{cell="billing",version="1\.0\.0",replica="[^"]+"\} \d+/m)
    expect(text).toMatch(/^cell_biology_spawns_total [1-9]\d*$/m)
    expect(text).toMatch(/^cell_libp2p_connections\{direction="inbound"\} [1-9]\d*$/m)
    expect(text).toMatch(/^cell_gossip_heartbeats_total [1-9]\d*$/m)
    expect(text).toMatch(/^cell_gossip_bytes_total\{direction="out",family="fleet"\} [1-9]\d*$/m)
    expect(text).toMatch(/^cell_gossip_bytes_total\{direction="in",family="members"\} 0$/m)
    expect(text).toMatch(/^cell_artifact_fetches_total\{outcome="ok"\} 1$/m)
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m)

    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 })
    expect(check.error, 'promtool missing? apt-get install prometheus').toBeUndefined()
    expect(`${check.stdout}${check.stderr}`).toBe('')
    expect(check.status).toBe(0)

    const missing = await fetch(url!.replace(/\/metrics$/, '/'), { signal: AbortSignal.timeout(10_000) })
    expect(missing.status).toBe(404)
    await missing.text()
  }, 120_000)
})
