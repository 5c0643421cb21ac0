// The canary split holds on a node that runs both releases of a rollout. The caller chooses the
// release per call (canary_weight % to the newest) and opens one channel per (node, cell, release),
// naming the release in HELLO; the node serves each channel from a replica of that release.
//
// Before: the channel was per (node, cell) and the node served every call from its least busy
// replica whatever the caller chose, so with both releases on one node (a surge on a small fleet)
// sequential calls all went to the replica listed first: 400 calls at canary_weight 30 by hand gave
// 0 to the new release, and here canary weight 100 got only 1.0.0 answers.
//
// A Node client (`cellmesh/client`, `cell call`) also splits by the canary_weight of the newest
// release's Cell.toml, read from its artifact as browser tabs and the edge do: it used Cell.toml's
// default of 5 % whatever the author wrote.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { CELL, onlyRunning, stageVersion } from './versioned.ts'

const CALLS = 200
const CANARY_WEIGHT = 50

describe('canary split on one node running both releases', () => {
  let node: FullNode | undefined
  const clients: Mesh[] = []
  let root = ''
  let key: AuthorityKey
  let bootstrap = ''
  let caller: Mesh | undefined
  let publisher: Publisher | undefined

  // One replica; `grace` far past the test holds a rollout with both releases on the only node.
  const stage = async (tag: string, grace: string): Promise<string> => {
    const dir = await stageVersion(root, tag, authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/min_replicas = 2\nmax_replicas = 2/, 'min_replicas = 1\nmax_replicas = 1').replace('health_grace = "2s"', `health_grace = "${grace}"`) + `canary_weight = ${CANARY_WEIGHT}\n`)
    return dir
  }

  afterAll(async () => {
    await Promise.all(clients.map(async c => await c.stop()))
    await node?.stop()
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  async function answers (mesh: Mesh, canaryWeight: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>()
    for (let i = 0; i < CALLS; i++) {
      const v = await mesh.call<string>(CELL, 'version', null, { timeoutMs: 15_000, canaryWeight })
      counts.set(v, (counts.get(v) ?? 0) + 1)
    }
    return counts
  }

  it('serves each call from the release the caller chose, in the canary_weight share', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-canary-'))
    key = await generateAuthority()
    node = await FullNode.create({ dataDir: join(root, 'n0'), bootstrap: [], authorityKeys: [key], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
    await node.start()
    const operator = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    publisher = new Publisher(operator)
    // The new release surges beside the old one on the only node and the rollout holds there.
    const v1 = await publisher.publish(await stage('v1', '1h'), '1.0.0', key, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    const v2 = await publisher.publish(await stage('v2', '1h'), '1.1.0', key, { setAuthority: true, waitReplicas: 0 })
    const c = caller = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: key })
    clients.push(caller)
    await waitForView(c, () => {
      const ready = c.view.liveInstances(CELL).filter(i => i.state === 'ready')
      return ready.some(i => i.digest === v1.digest) && ready.some(i => i.digest === v2.digest) ? true : undefined
    }, 'a ready replica of 1.0.0 and of 1.1.0', { timeoutMs: 60_000 })
    const local = node.replicas.list(CELL).filter(r => r.state === 'ready')
    expect(new Set(local.map(r => r.digest))).toEqual(new Set([v1.digest, v2.digest]))

    const all = await answers(c, 100)
    const none = await answers(c, 0)
    const half = await answers(c, 50)
    console.log(`canary 100: ${JSON.stringify(Object.fromEntries(all))}, 0: ${JSON.stringify(Object.fromEntries(none))}, 50: ${JSON.stringify(Object.fromEntries(half))}`)
    expect(all).toEqual(new Map([['v2', CALLS]]))
    expect(none).toEqual(new Map([['v1', CALLS]]))
    // Binomial(200, 0.5): outside 60–140 with probability below 1e-8.
    expect(half.get('v2') ?? 0).toBeGreaterThanOrEqual(60)
    expect(half.get('v1') ?? 0).toBeGreaterThanOrEqual(60)
    bootstrap = node.addresses()[0]
  }, 150_000)

  it(`a Node client splits by the canary_weight (${CANARY_WEIGHT}) of the release's Cell.toml, not the default 5`, async () => {
    expect(bootstrap).not.toBe('')
    const client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    clients.push(client)
    expect(client.canaryWeight(CELL)).toBe(5)
    // The first call asks for the policy; calls go on (each one real) until it is read, within 20 s.
    const deadline = Date.now() + 20_000
    while (client.canaryWeight(CELL) !== CANARY_WEIGHT && Date.now() < deadline) await client.call(CELL, 'version', null, { timeoutMs: 15_000 })
    expect(client.canaryWeight(CELL)).toBe(CANARY_WEIGHT)
    const counts = new Map<string, number>()
    for (let i = 0; i < CALLS; i++) {
      const v = await client.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })
      counts.set(v, (counts.get(v) ?? 0) + 1)
    }
    console.log(`client at the release's canary_weight ${CANARY_WEIGHT}: ${JSON.stringify(Object.fromEntries(counts))}`)
    // At the default 5 % the new release would get about 10 of 200 (60 or more: below 1e-30).
    expect(counts.get('v2') ?? 0).toBeGreaterThanOrEqual(60)
    expect(counts.get('v1') ?? 0).toBeGreaterThanOrEqual(60)
  }, 60_000)

  it('closes the channels of releases the node no longer runs once a call opens one for the new release', async () => {
    expect(caller).toBeDefined()
    expect(publisher).toBeDefined()
    const c = caller!
    const synapse = c.libp2p.services.synapse
    // One channel per release the first test called: 1.0.0 and 1.1.0.
    expect(synapse.stats().client.channels).toBe(2)
    const v3 = await publisher!.publish(await stage('v3', '1s'), '1.2.0', key, { setAuthority: true, waitReplicas: 0 })
    await waitForView(c, () => onlyRunning(c, v3.digest, 1), 'only 1.2.0 running', { timeoutMs: 60_000 })
    expect(await c.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })).toBe('v3')
    // A release every few minutes for days would otherwise pile channels up to the per-peer limit (64).
    const deadline = Date.now() + 10_000
    while (synapse.stats().client.channels > 1 && Date.now() < deadline) await new Promise(resolve => setImmediate(resolve))
    expect(synapse.stats().client.channels).toBe(1)
  }, 90_000)
})
