// Three full nodes and a publisher/caller in one process over real libp2p on loopback: the release
// travels by gossip, the artifact through the DHT, replicas run in real capsids.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForReplicas, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { encodeJson, type Mesh } from '../../core/mesh/index.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { stageCell } from './stage-cell.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')
const sleepyDir = join(import.meta.dirname, 'fixtures', 'sleepy')

/** Resolve with the replica serving a call once one has a call in flight (deadline-bounded). */
async function servingReplica (nodes: FullNode[], cell: string, timeoutMs: number, call: Promise<unknown>): Promise<{ pid: number, instanceId: string }> {
  const deadline = Date.now() + timeoutMs
  let settled: unknown
  call.then((v) => { settled = { value: v } }, (e) => { settled = { error: e } })
  for (;;) {
    for (const n of nodes) {
      const r = n.replicas.list(cell).find(r => r.state === 'ready' && (r.capsid?.inFlight ?? 0) > 0)
      if (r?.capsid?.pid != null) return { pid: r.capsid.pid, instanceId: r.instanceId }
    }
    if (settled !== undefined) throw new Error(`the call settled before any replica took it: ${String((settled as { error?: Error }).error ?? JSON.stringify(settled))}`)
    if (Date.now() > deadline) throw new Error(`no ${cell} replica took the call within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/**
 * A peer whose grant the fleet does not trust: fleet-sync shows it no private cell (its pull is
 * answered with public cells only, naming UnknownAuthorityError), a call through the mesh knows no
 * such cell, and opening a synapse straight to a node that runs the cell is refused by name.
 */
async function expectStrangerRefused (stranger: Mesh, nodes: FullNode[], cell: string): Promise<void> {
  await waitForView(stranger, () => stranger.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs: 20_000 })
  const pulled = await stranger.libp2p.services.fleetSync.pull(stranger.libp2p.getPeers()[0], { signal: AbortSignal.timeout(10_000) })
  expect(pulled.publicOnly).toBe('UnknownAuthorityError')
  expect(stranger.view.release(cell)).toBeUndefined()
  await expect(stranger.call(cell, 'charge', { amount: 1 })).rejects.toMatchObject({ name: 'UnknownCellError' })
  const host = nodes.find(n => n.replicas.list(cell).some(r => r.state === 'ready'))!
  const direct = (async () => {
    const ch = await stranger.libp2p.services.synapse.open(peerIdFromString(host.peerId), cell, { signal: AbortSignal.timeout(10_000) })
    return await ch.call('charge', encodeJson({ amount: 1 }), { timeoutMs: 5_000 })
  })()
  await expect(direct).rejects.toMatchObject({ name: 'UnknownAuthorityError' })
}

describe('in-process fleet', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  let root = ''
  let publisherOf: Publisher | undefined
  let fleetKey: Awaited<ReturnType<typeof generateAuthority>> | undefined
  afterAll(async () => {
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  it('publishes billing and answers a typed call; an unknown authority is rejected', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-fleet-'))
    const authority = await generateAuthority()
    fleetKey = authority
    for (let i = 0; i < 3; i++) {
      const bootstrap = i === 0 ? [] : [nodes[0].addresses()[0]]
      const node = await FullNode.create({ dataDir: join(root, `n${i}`), bootstrap, authorityKeys: [authority], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
      await node.start()
      nodes.push(node)
    }
    const publisher = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    publisherOf = new Publisher(publisher)
    const result = await publisherOf.publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 45_000 })
    expect(result.ready).toBeGreaterThanOrEqual(1)

    const caller = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: authority })
    clients.push(caller)
    await waitForReplicas(caller, 'billing', { timeoutMs: 20_000 })
    const billing = caller.remote<{ charge: (req: { amount: number }) => Promise<{ id: string, amount: number }> }>('billing')
    const charged = await billing.charge({ amount: 5 })
    expect(charged.amount).toBe(5)
    expect(typeof charged.id).toBe('string')

    // Heartbeats carry real load: the replica's resident memory from the OS and the calls it served.
    for (let i = 0; i < 20; i++) await billing.charge({ amount: 1 })
    const loaded = await waitForView(caller, () => caller.replicas('billing').find(i => i.memoryBytes > 10 * 1024 * 1024 && i.qps > 0), 'a heartbeat with measured load', { timeoutMs: 15_000 })
    expect(loaded.memoryPercent).toBeGreaterThan(0)

    // A caller whose grant comes from an authority the cell does not trust is refused by name: the
    // fleet does not show it the (private) cell, and a replica's node refuses its handshake.
    const stranger = await createClient({ bootstrap: [nodes[2].addresses()[0]], authorityKey: await generateAuthority(), trust: [authorityIdOf(authority.publicKey)] })
    clients.push(stranger)
    await expectStrangerRefused(stranger, nodes, 'billing')
  }, 120_000)

  it('retries an idempotent call on another replica when its replica is killed; a plain call fails by name', async () => {
    const publisher = publisherOf!
    const key = fleetKey!
    const dir = await stageCell(sleepyDir, join(root, 'sleepy'), authorityIdOf(key.publicKey))
    const result = await publisher.publish(dir, '1.0.0', key, { waitReplicas: 2, timeoutMs: 45_000 })
    expect(result.ready).toBeGreaterThanOrEqual(2)
    const caller = clients[1]
    await waitForReplicas(caller, 'sleepy', { count: 2, timeoutMs: 20_000 })

    const retried = caller.call<{ slept: number }>('sleepy', 'napIdempotent', { ms: 3000 })
    const killed = await servingReplica(nodes, 'sleepy', 20_000, retried)
    process.kill(killed.pid, 'SIGKILL')
    await expect(retried).resolves.toEqual({ slept: 3000 })

    // Let the caller's view catch up with the crash, and the fleet settle back to its two replicas
    // (the restart can briefly leave a third, drained as surplus), before the next call picks one:
    // this part is about a replica killed mid-call, not about a drain's deadline.
    await waitForView(caller, () => caller.replicas('sleepy').some(i => i.instanceId === killed.instanceId) ? undefined : true, 'the crash to reach the view', { timeoutMs: 20_000 })
    await waitForView(caller, () => caller.view.liveInstances('sleepy').length === 2 && caller.replicas('sleepy').length === 2 ? true : undefined,
      'two sleepy replicas, steady for 3 s', { timeoutMs: 60_000, holdMs: 3_000, seen: () => caller.view.instances('sleepy').map(i => `${i.instanceId} ${i.state} on …${i.nodeId.slice(-6)}`).join(', ') })
    const plain = caller.call('sleepy', 'nap', { ms: 30_000 }, { timeoutMs: 60_000 })
    plain.catch(() => {})
    process.kill((await servingReplica(nodes, 'sleepy', 20_000, plain)).pid, 'SIGKILL')
    // Named, never a hang. If the loop had just begun draining that replica as a surplus one (the
    // restart after the first kill can briefly leave one replica too many), the kill ends a
    // draining capsid and the caller is told so by name instead.
    await expect(plain).rejects.toMatchObject({ name: expect.stringMatching(/^(ReplicaCrashedError|CapsidStoppedError)$/) })
  }, 120_000)

  it('admits any authenticated caller to a public cell, and only there', async () => {
    const key = fleetKey!
    const dir = await stageCell(join(import.meta.dirname, 'fixtures', 'open'), join(root, 'open'), authorityIdOf(key.publicKey))
    await publisherOf!.publish(dir, '1.0.0', key, { timeoutMs: 45_000 })
    const stranger = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: await generateAuthority(), trust: [authorityIdOf(key.publicKey)] })
    clients.push(stranger)
    await waitForReplicas(stranger, 'open', { timeoutMs: 20_000 })
    await expect(stranger.call('open', 'echo', { text: 'hi' })).resolves.toEqual({ text: 'hi', caller: stranger.peerId.toString() })
    await expectStrangerRefused(stranger, nodes, 'billing')
  }, 120_000)

  it('a call made while a cell has no replica yet waits for the first one within its deadline, however busy the view', async () => {
    // A cell between replicas (a restart during a rollout, a first start) in a fleet whose view
    // changes many times a second (every node's heartbeat, every instance): the caller once gave up
    // after 20 changes of the view, a second or two into a 15 s deadline (the soak's NoReplicaError).
    // Here the view is made to change every 10 ms (plus the real heartbeats) while "till", a new
    // cell, is prepared and started: 20 changes take 0.2 s, its first replica takes longer.
    const key = fleetKey!
    const dir = await stageCell(billingDir, join(root, 'till'), authorityIdOf(key.publicKey))
    await writeFile(join(dir, 'Cell.toml'), (await readFile(join(dir, 'Cell.toml'), 'utf8')).replace('name = "billing"', 'name = "till"'))
    const caller = clients[1]
    // What a node's heartbeat makes the view say (listeners read the detail), 100 times a second.
    const beat = { kind: 'node', op: 'upsert', key: nodes[0].peerId, nodeId: nodes[0].peerId }
    const churn = setInterval(() => { caller.view.dispatchEvent(new CustomEvent('change', { detail: beat })) }, 10)
    try {
      await publisherOf!.publish(dir, '1.0.0', key, { waitReplicas: 0, timeoutMs: 45_000 })
      await waitForView(caller, () => caller.view.release('till'), 'the release of till', { timeoutMs: 20_000 })
      expect(caller.replicas('till')).toEqual([])
      const fromMs = Date.now()
      const answer = await caller.call<{ amount: number }>('till', 'charge', { amount: 7 }, { timeoutMs: 30_000 })
      expect(answer.amount).toBe(7)
      process.stdout.write(`first call to a cell published without waiting: answered after ${Date.now() - fromMs} ms of a busy view\n`)
    } finally {
      clearInterval(churn)
    }
  }, 120_000)
})
