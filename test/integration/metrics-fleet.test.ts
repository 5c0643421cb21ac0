// Issue 12: the fleet's metrics through any one node. Three real full nodes in this process, billing
// published with min_replicas = 1 (so two nodes do not run it) and called; a node that does not run
// billing serves its series (`/metrics/cells/billing`, fetched live over `/cell/metrics/1`), the
// runner's own exposition (`/metrics/nodes/<id>`) and http_sd targets for all three nodes, all
// passing `promtool check metrics`; a real Prometheus given only that node's `/sd/prometheus` scrapes
// every node (all targets up) and answers a query for billing's call counter.
import { describe, it, expect, afterAll } from 'vitest'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import type { FullNode } from '../../node-host/full-node.ts'
import { TestFleet } from './test-fleet.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')

function promtool (text: string, what: string): void {
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 })
  expect(check.error, 'promtool missing? apt-get install prometheus').toBeUndefined()
  expect(`${check.stdout}${check.stderr}`, what).toBe('')
  expect(check.status, what).toBe(0)
}

async function get (url: string): Promise<{ status: number, text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return { status: res.status, text: await res.text() }
}

/** Polls `probe` until it returns a value (not undefined) or the deadline passes. */
async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (err) { last = err }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last error: ${String(last)})`)
    // The poll interval of a condition checked against a deadline (not a wait for an outcome).
    await new Promise<void>((resolve) => { setTimeout(resolve, 200) })
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  return port
}

async function stopProcess (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  child.kill('SIGTERM')
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 10_000)
  await exited
  clearTimeout(timer)
}

describe('fleet metrics through one node', () => {
  const fleet = new TestFleet()
  let prometheus: ChildProcess | undefined
  afterAll(async () => {
    await stopProcess(prometheus)
    await fleet.stop()
  })

  it('serves any cell and any node from a node that does not run it, and a real Prometheus scrapes the fleet through it', async () => {
    const authority = await generateAuthority()
    const root = await fleet.start('cell-metrics-fleet-', 3, { authorityKeys: [authority], metrics: { host: '127.0.0.1', port: 0 } })
    const nodes = fleet.nodes
    const publisher = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    fleet.clients.push(publisher)
    const published = await new Publisher(publisher).publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 60_000 })
    expect(published.ready).toBeGreaterThanOrEqual(1)
    const caller = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority })
    fleet.clients.push(caller)
    await waitForReplicas(caller, 'billing', { timeoutMs: 30_000 })
    const billing = caller.remote<{ charge: (req: { amount: number }) => Promise<{ amount: number }> }>('billing')
    for (const amount of [3, 4, 5]) expect((await billing.charge({ amount })).amount).toBe(amount)

    const runs = (n: FullNode): boolean => n.replicas.list().some(r => r.cell === 'billing')
    const runners = nodes.filter(runs)
    const other = nodes.find(n => !runs(n))
    expect(runners.length).toBeGreaterThanOrEqual(1)
    expect(other, 'min_replicas = 1 on 3 nodes: some node runs no billing').toBeDefined()
    const base = other!.metricsUrl!.replace(/\/metrics$/, '')
    // The serving node's view: all three nodes and billing's live instances.
    await until('the view of the serving node', 30_000, async () =>
      other!.mesh.view.nodes().length === 3 && runners.every(r => other!.mesh.view.liveInstances('billing').some(i => i.nodeId === r.peerId)) ? true : undefined)

    const ownText = (await get(`${base}/metrics`)).text
    promtool(ownText, '/metrics')
    expect(ownText).toMatch(/^cell_metrics_proxy_failures_total\{reason="timeout"\} 0$/m)

    const cell = await get(`${base}/metrics/cells/billing`)
    expect(cell.status).toBe(200)
    promtool(cell.text, '/metrics/cells/billing')
    const counted = [...cell.text.matchAll(/^cell_synapse_calls_total\{node="([^"]+)",cell="billing",method="charge",outcome="ok"\} (\d+)$/gm)]
    expect(counted.map(m => m[1]).every(id => runners.some(r => r.peerId === id))).toBe(true)
    expect(counted.reduce((sum, m) => sum + Number(m[2]), 0)).toBe(3)
    expect(cell.text).toMatch(/^cell_capsid_resident_memory_bytes\{node="[^"]+",cell="billing",version="1\.0\.0",replica="[^"]+"\} \d+$/m)
    expect(cell.text).not.toMatch(/cell_fleet_nodes/)

    const runner = runners[0]
    const proxied = await get(`${base}/metrics/nodes/${runner.peerId}`)
    expect(proxied.status).toBe(200)
    promtool(proxied.text, '/metrics/nodes/<id>')
    expect(proxied.text).toMatch(/^cell_synapse_calls_total\{cell="billing",method="charge",outcome="ok"\} \d+$/m)

    const unknown = await get(`${base}/metrics/cells/nosuch`)
    expect(unknown.status).toBe(404)
    expect(unknown.text).toMatch(/^UnknownCellError: /)

    const sd = JSON.parse((await get(`${base}/sd/prometheus`)).text) as Array<{ targets: string[], labels: Record<string, string> }>
    expect(sd.map(g => g.labels.node).sort()).toEqual(nodes.map(n => n.peerId).sort())
    expect(sd.every(g => g.targets[0] === new URL(base).host && g.labels.__metrics_path__ === `/metrics/nodes/${g.labels.node}`)).toBe(true)

    // A real Prometheus with one http_sd_configs entry: the node that does not run billing.
    const port = await freePort()
    const dir = join(root, 'prometheus')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'prometheus.yml'), [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: cell',
      '    http_sd_configs:',
      `      - url: ${base}/sd/prometheus`,
      '        refresh_interval: 1s',
      ''
    ].join('\n'))
    let output = ''
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    prometheus.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000) })
    prometheus.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000) })
    const api = `http://127.0.0.1:${port}/api/v1`
    try {
      await until('every target up', 60_000, async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${output}`)
        const body = JSON.parse((await get(`${api}/targets`)).text) as { data: { activeTargets: Array<{ health: string, labels: Record<string, string> }> } }
        const active = body.data.activeTargets
        return active.length === 3 && active.every(t => t.health === 'up') ? active : undefined
      })
      const result = await until('billing calls in Prometheus', 60_000, async () => {
        const body = JSON.parse((await get(`${api}/query?query=${encodeURIComponent('cell_synapse_calls_total{cell="billing"}')}`)).text) as { data: { result: Array<{ metric: Record<string, string>, value: [number, string] }> } }
        const series = body.data.result.filter(r => Number(r.value[1]) > 0)
        return series.length > 0 ? series : undefined
      })
      expect(result.every(r => runners.some(n => n.peerId === r.metric.node))).toBe(true)
      expect(result.some(r => r.metric.node === other!.peerId)).toBe(false)
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus output:\n${output}`, { cause: err })
    }
  }, 240_000)
})
