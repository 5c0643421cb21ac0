// Memory bench (issue 15 point 7): `npm run bench:memory [-- --nodes N] [--cells C] [--replicas R] [--idle-seconds S] [--view-only] [--json]`.
//
// 1. A fleet view of N nodes (default 1,000), accounted on the real data structures: N node keys
//    sign real node records (four addresses, a real host grant), C cells (default 100) have a real
//    release signed by an authority and R replicas each (default 3) on random nodes, all encoded
//    as the network carries them, decoded and applied to a real FleetView with real signature
//    checks. The view's cost is the heap it keeps after a full GC, once the encoded input is gone.
// 2. A real `cell up` full node hosting one billing replica (bubblewrap where it runs), left idle:
//    its own process's RSS (the replica is a separate process, reported apart), sampled for S
//    seconds (default 20) after the replica turned ready; a bare Node process's RSS is the baseline.
// Goals: the view under 50 MiB, the idle node under 150 MiB.
import { spawn } from 'node:child_process'
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, issueGrant, encodeCertificate, signRelease, encodeRelease, verifySignedRecord } from '../../core/identity/index.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { encodeEnvelope, decodeEnvelope } from '../../core/fleet/codec.ts'
import { FleetView } from '../../core/fleet/view.ts'
import { makeInstanceRecord, makeNodeRecord } from '../../core/fleet/testing.ts'
import { systemClock } from '../../core/ports.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { cell, stopProc, projectRoot, nodeBin } from '../integration/processes.ts'
import { positiveFlag, hasFlag } from './args.ts'

const NODES = positiveFlag('nodes', 1000)
const CELLS = positiveFlag('cells', 100)
const REPLICAS = positiveFlag('replicas', 3)
const IDLE_SECONDS = positiveFlag('idle-seconds', 20)
const json = hasFlag('json')
const VIEW_GOAL = 50 * 2 ** 20
const NODE_GOAL = 150 * 2 ** 20
const MiB = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const heapAfterGc = (): number => { gc(); gc(); return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers }

interface ViewFigure { nodes: number, cells: number, instances: number, encodedBytes: number, bytes: number, perNodeBytes: number }

async function viewCost (): Promise<ViewFigure> {
  // Baseline before any record exists: the delta counts whatever the view keeps, including encoded
  // bytes its decoded records may still point into.
  const before = heapAfterGc()
  const authority = await generateAuthority()
  const now = Date.now()
  const encoded: Uint8Array[] = []
  const ids: string[] = []
  const keys = []
  for (let i = 0; i < NODES; i++) {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key).toString()
    keys.push(key)
    ids.push(id)
    const grant = encodeCertificate(await issueGrant(authority, { subject: id, roles: ['host'], notBeforeMs: now - 60_000, notAfterMs: now + 86_400_000 }))
    const octet = `${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.1`
    const hash = 'uEiD' + 'x'.repeat(43)
    encoded.push(encodeEnvelope(await signRecord(key, 'node', makeNodeRecord(id, {
      addrs: [`/ip4/${octet}/tcp/4001`, `/ip4/${octet}/tcp/4002/ws`, `/ip4/${octet}/udp/4003/webrtc-direct/certhash/${hash}`, `/ip4/${octet}/udp/4004/quic-v1/webtransport/certhash/${hash}/certhash/${hash}`],
      startedMs: now - 60_000,
      sentMs: now,
      grants: [grant]
    }))))
  }
  let instances = 0
  for (let c = 0; c < CELLS; c++) {
    const name = `cell-${c}`
    const digest = c.toString(16).padStart(4, '0').repeat(16)
    encoded.push(encodeEnvelope({ kind: 'release', signed: encodeRelease(await signRelease({ cell: name, version: '1.0.0', digest, seq: 1, createdMs: now }, authority)) }))
    for (let r = 0; r < REPLICAS; r++) {
      const n = (c * 7919 + r * 104_729) % NODES
      encoded.push(encodeEnvelope(await signRecord(keys[n], 'instance', makeInstanceRecord(ids[n], {
        instanceId: `${name}-${r}-${n}`, cell: name, version: '1.0.0', digest: `sha256:${digest}`, startedMs: now - 30_000, sentMs: now
      }))))
      instances++
    }
  }
  const encodedBytes = encoded.reduce((a, b) => a + b.byteLength, 0)
  keys.length = 0
  const trusted = new Set([authority.id])
  const verify = (kind: 'release' | 'desired') => async (signed: Uint8Array, opts: { signal?: AbortSignal }) => await verifySignedRecord(signed, { ...opts, kind, trusted })
  const view = new FleetView({ clock: systemClock, heartbeatMs: 60_000, verifyRelease: verify('release'), verifyDesired: verify('desired') })
  for (const bytes of encoded) {
    const result = await view.apply(decodeEnvelope(bytes), { relayed: true, ageMs: 0 })
    if (!result.accepted) throw new Error(`the view refused a ${result.kind} record: ${result.reason}`)
  }
  const held = { nodes: view.nodes().length, cells: view.cells().length, instances: view.instances().length }
  if (held.nodes !== NODES || held.cells !== CELLS || held.instances !== instances) throw new Error(`the view holds ${JSON.stringify(held)}, expected ${NODES} nodes, ${CELLS} cells, ${instances} instances`)
  // The encoded input (what arrived from the network) is let go; what stays is what the view keeps.
  encoded.length = 0
  const bytes = heapAfterGc() - before
  if (view.nodes().length !== NODES) throw new Error('the view lost records during the measurement')
  return { nodes: NODES, cells: CELLS, instances, encodedBytes, bytes, perNodeBytes: Math.round(bytes / NODES) }
}

const rssOf = async (pid: number): Promise<number> => {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)
  if (kb == null) throw new Error(`no VmRSS for process ${pid}`)
  return Number(kb[1]) * 1024
}
const childrenOf = async (pid: number): Promise<number[]> => {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')
  const direct = text.trim().split(/\s+/).filter(Boolean).map(Number)
  return [...direct, ...(await Promise.all(direct.map(childrenOf))).flat()]
}

interface NodeFigure { baselineRss: number, idleRss: { min: number, max: number, last: number }, replicaRss: number, samples: number }

async function bareNodeRss (): Promise<number> {
  const child = spawn(nodeBin, ['-e', 'setInterval(() => {}, 1000); console.log("up")'], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => { child.stdout.once('data', () => { resolve() }) })
  const rss = await rssOf(child.pid!)
  child.kill()
  return rss
}

async function idleNode (): Promise<NodeFigure> {
  const dir = await mkdtemp(join(tmpdir(), 'cell-memory-bench-'))
  const authority = await generateAuthority()
  const keyPath = join(dir, 'authority.key')
  await writeAuthorityKey(keyPath, authority)
  const node = cell(['up', '--data', join(dir, 'node'), '--authority', keyPath, '--host', '127.0.0.1', '--webtransport', 'off'])
  const client = { mesh: undefined as Awaited<ReturnType<typeof createClient>> | undefined }
  try {
    const tcp = (await node.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\S+)/, 60_000))[1]
    client.mesh = await createClient({ bootstrap: [tcp], authorityKey: authority, listen: true })
    await new Publisher(client.mesh).publish(join(projectRoot, 'examples', 'billing'), '1.0.0', authority, { setAuthority: true, timeoutMs: 60_000 })
    const billing = client.mesh.remote('billing') as unknown as { quote: (r: { amount: number }) => Promise<unknown> }
    const deadline = Date.now() + 60_000
    for (;;) {
      try { await billing.quote({ amount: 1 }); break } catch (err) {
        if (Date.now() > deadline) throw err
        await new Promise<void>((resolve) => { client.mesh!.view.addEventListener('change', () => { resolve() }, { once: true }); setTimeout(resolve, 1000).unref() })
      }
    }
    await client.mesh.stop()
    client.mesh = undefined
    const pid = node.child.pid!
    const samples: number[] = []
    const end = Date.now() + IDLE_SECONDS * 1000
    while (Date.now() < end) {
      samples.push(await rssOf(pid))
      await new Promise<void>((resolve) => { setTimeout(resolve, 500) })
    }
    let replicaRss = 0
    for (const child of await childrenOf(pid)) replicaRss += await rssOf(child).catch(() => 0)
    return { baselineRss: await bareNodeRss(), idleRss: { min: Math.min(...samples), max: Math.max(...samples), last: samples[samples.length - 1] }, replicaRss, samples: samples.length }
  } finally {
    await client.mesh?.stop().catch(() => {})
    await stopProc(node)
    await rm(dir, { recursive: true, force: true })
  }
}

const view = await viewCost()
const node = hasFlag('view-only') ? undefined : await idleNode()
if (json) {
  process.stdout.write(`${JSON.stringify({ view, node })}\n`)
} else {
  process.stdout.write(`fleet view of ${view.nodes} nodes, ${view.cells} cells, ${view.instances} replicas (real signed records, ${MiB(view.encodedBytes)} as encoded on the wire):\n`)
  process.stdout.write(`  heap kept after GC  ${MiB(view.bytes).padStart(10)}   ${(view.perNodeBytes / 1024).toFixed(1)} KiB per node   ${(view.bytes / VIEW_GOAL).toFixed(2)}× the 50 MiB goal ${view.bytes < VIEW_GOAL ? 'ok' : 'NOT MET'}\n`)
  if (node !== undefined) {
    process.stdout.write(`idle cell up full node hosting one billing replica, RSS over ${IDLE_SECONDS} s (${node.samples} samples):\n`)
    process.stdout.write(`  bare node process   ${MiB(node.baselineRss).padStart(10)}   (baseline)\n`)
    process.stdout.write(`  full node           ${MiB(node.idleRss.max).padStart(10)}   max (min ${MiB(node.idleRss.min)}, last ${MiB(node.idleRss.last)})   ${(node.idleRss.max / node.baselineRss).toFixed(2)}× bare node, ${(node.idleRss.max / NODE_GOAL).toFixed(2)}× the 150 MiB goal ${node.idleRss.max < NODE_GOAL ? 'ok' : 'NOT MET'}\n`)
    process.stdout.write(`  its replica (bwrap, runner, cell) ${MiB(node.replicaRss)} apart\n`)
  }
}
process.exit(view.bytes < VIEW_GOAL && (node === undefined || node.idleRss.max < NODE_GOAL) ? 0 : 1)
