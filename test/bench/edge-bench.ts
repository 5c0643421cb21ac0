// Edge bench (`npm run bench:edge [-- --calls N] [--concurrency C] [--rounds R] [--nodes K] [--quick] [--json]`):
// billing.charge through the edge routing node (HTTP → wrangler dev/workerd → Durable Object →
// libp2p over WebSockets → full node → replica) against the same calls from a Node client of the
// same fleet (libp2p over TCP), in the same run: `cell up` processes, one publisher, the edge under
// wrangler dev on a pre-bundled Worker. Each path runs sequentially (latency) and with C calls in
// flight (throughput), the two paths interleaved over R rounds so a busy machine weighs on both.
import { mkdtemp, rm } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { newEdgeKey } from '../../edge-host/keys.ts'
import { projectRoot, startFleet, stopProc, type Proc } from '../integration/processes.ts'
import { startEdge, waitHealth, type EdgeProc } from '../edge/wrangler.ts'
import { positiveFlag, hasFlag } from './args.ts'

const quick = hasFlag('quick')
const json = hasFlag('json')
const CALLS = positiveFlag('calls', quick ? 200 : 1000)
const CONCURRENCY = positiveFlag('concurrency', 8)
const ROUNDS = positiveFlag('rounds', quick ? 2 : 4)
const NODES = positiveFlag('nodes', quick ? 1 : 3)
const REQUEST = JSON.stringify({ amount: 5, currency: 'EUR' })

interface Figure { path: 'direct' | 'edge', mode: string, calls: number, ms: number, perSec: number, p50Ms: number, p99Ms: number, failures: number }

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/** Runs `calls` calls of `one` with `concurrency` in flight; latencies and failures recorded. */
async function drive (calls: number, concurrency: number, one: () => Promise<void>, latencies: number[]): Promise<{ ms: number, failures: number }> {
  let next = 0
  let failures = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, calls) }, async () => {
    while (next < calls) {
      next++
      const t = performance.now()
      try { await one(); latencies.push(performance.now() - t) } catch { failures++ }
    }
  }))
  return { ms: performance.now() - started, failures }
}

async function main (): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), 'cell-edge-bench-'))
  const nodes: Proc[] = []
  let edge: EdgeProc | undefined
  let client: Mesh | undefined
  let caller: Mesh | undefined
  try {
    const key = await generateAuthority()
    const authority = authorityIdOf(key.publicKey)
    const keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    const names = Array.from({ length: NODES }, (_, i) => `n${i + 1}`)
    const bootstrap = await startFleet(nodes, root, keyPath, names)
    const wsAddrs = nodes.map(p => /listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/\w+)/.exec(p.stdout())?.[1]).filter((a): a is string => a !== undefined)

    client = await createClient({ bootstrap: [bootstrap], authorityKey: key, listen: true })
    const published = await new Publisher(client).publish(join(projectRoot, 'examples', 'billing'), '1.0.0', key, { setAuthority: true, waitReplicas: 1, reportMs: 0, timeoutMs: 120_000 })
    // The direct caller: a Node client holding only a caller grant, as the edge does.
    const callerKey = await generateKeyPair('Ed25519')
    const issuedAt = Date.now()
    const callerGrant = await issueGrant(key, { subject: peerIdFromPrivateKey(callerKey).toString(), roles: ['caller'], notBeforeMs: issuedAt - 60_000, notAfterMs: issuedAt + 3_600_000 })
    caller = await createClient({ bootstrap: [bootstrap], privateKey: callerKey, grant: callerGrant })
    await waitForReplicas(caller, 'billing', { timeoutMs: 60_000 })

    const edgeKey = await newEdgeKey()
    const now = Date.now()
    const grant = encodeGrantToken(await issueGrant(key, { subject: edgeKey.peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    edge = await startEdge(join(root, 'edge'), { EDGE_KEY: edgeKey.key, EDGE_GRANT: grant, BOOTSTRAP: wsAddrs.join(','), TRUST: authority, ALLOW_HOSTS: '127.0.0.1' })
    await waitHealth(edge.url, h => h.joined === true ? true : undefined, 'the edge to join', 60_000)
    const url = `${edge.url}/cells/billing/charge`

    const direct = async (): Promise<void> => { await caller!.call('billing', 'charge', JSON.parse(REQUEST), { timeoutMs: 30_000 }) }
    const viaEdge = async (): Promise<void> => {
      const res = await fetch(url, { method: 'POST', body: REQUEST, headers: { 'content-type': 'application/json', 'x-cell-deadline-ms': '30000' } })
      const body = await res.text()
      if (res.status !== 200) throw new Error(`${res.status} ${body}`)
    }
    // Warm up both paths (channels opened, JIT warm) before anything is measured.
    await drive(50, 4, direct, [])
    await drive(50, 4, viaEdge, [])

    const figures: Figure[] = []
    for (const [mode, concurrency] of [['sequential', 1], [`${CONCURRENCY} in flight`, CONCURRENCY]] as const) {
      const acc = { direct: { lat: [] as number[], ms: 0, failures: 0 }, edge: { lat: [] as number[], ms: 0, failures: 0 } }
      const perRound = Math.ceil(CALLS / ROUNDS)
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which path goes first, so neither always runs on a warmer or quieter machine.
        const order = r % 2 === 0 ? (['direct', 'edge'] as const) : (['edge', 'direct'] as const)
        for (const path of order) {
          const d = await drive(perRound, concurrency, path === 'direct' ? direct : viaEdge, acc[path].lat)
          acc[path].ms += d.ms
          acc[path].failures += d.failures
        }
      }
      for (const path of ['direct', 'edge'] as const) {
        const lat = acc[path].lat.sort((a, b) => a - b)
        figures.push({ path, mode, calls: lat.length, ms: acc[path].ms, perSec: lat.length / (acc[path].ms / 1000), p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99), failures: acc[path].failures })
      }
    }

    if (json) {
      console.log(JSON.stringify({ nodes: NODES, calls: CALLS, concurrency: CONCURRENCY, rounds: ROUNDS, digest: published.digest, figures }))
    } else {
      console.log(`edge bench: billing.charge, ${NODES} cell up node(s), ${CALLS} calls per path and mode in ${ROUNDS} interleaved rounds`)
      console.log('  direct = Node client (libp2p over TCP); edge = HTTP → wrangler dev (workerd) → Durable Object → libp2p over WebSockets')
      console.log(`${'mode'.padEnd(14)} ${'path'.padEnd(7)} ${'calls/s'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} failures`)
      for (const f of figures) console.log(`${f.mode.padEnd(14)} ${f.path.padEnd(7)} ${f.perSec.toFixed(1).padStart(9)} ${f.p50Ms.toFixed(2).padStart(8)} ${f.p99Ms.toFixed(2).padStart(8)} ${f.failures}`)
      for (let i = 0; i < figures.length; i += 2) {
        const [d, e] = [figures[i], figures[i + 1]]
        console.log(`${d.mode}: edge/direct calls/s ${(e.perSec / d.perSec).toFixed(3)}, p50 ${(e.p50Ms / d.p50Ms).toFixed(2)}×, p99 ${(e.p99Ms / d.p99Ms).toFixed(2)}×`)
      }
    }
    return figures.every(f => f.failures === 0 && f.calls > 0) ? 0 : 1
  } finally {
    await edge?.stop()
    await caller?.stop()
    await client?.stop()
    await Promise.all(nodes.map(async p => await stopProc(p)))
    await rm(root, { recursive: true, force: true })
  }
}

process.exitCode = await main()
