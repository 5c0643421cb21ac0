// Rolling update, operator rollback and a replayed desired record on three in-process full nodes,
// while a client calls the cell without pause: every call must succeed throughout.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, signDesiredVersion, encodeDesiredVersion, type AuthorityKey } from '../../core/identity/index.ts'
import { encodeEnvelope, FLEET_RELEASE_TOPIC } from '../../core/fleet/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForReplicas, waitForView } from '../../node-host/client.ts'
import { Publisher, type PublishResult } from '../../node-host/publisher.ts'
import { rollback, type RollbackResult } from '../../node-host/rollback.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { runCli } from '../../node-host/cli/cli-harness.ts'
import { CELL, CallLoop, onlyRunning, stageVersion } from './versioned.ts'

const HEARTBEAT_MS = 500

describe('rollout and rollback', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  const loops: CallLoop[] = []
  let root = ''
  let key: AuthorityKey
  let caller: Mesh
  let operator: Mesh
  let v1: PublishResult
  let v2: PublishResult
  let back: RollbackResult
  let publisher: Publisher

  afterAll(async () => {
    await Promise.all(loops.map(async l => await l.stop()))
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  it('rolls 1.0.0 out to 1.1.0 with surge and health grace while every call succeeds', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-rollout-'))
    key = await generateAuthority()
    for (let i = 0; i < 3; i++) {
      const bootstrap = i === 0 ? [] : [nodes[0].addresses()[0]]
      const node = await FullNode.create({ dataDir: join(root, `n${i}`), bootstrap, authorityKeys: [key], heartbeatMs: HEARTBEAT_MS, tickMs: 250, listen: { webrtc: false } })
      await node.start()
      nodes.push(node)
    }
    operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    publisher = new Publisher(operator)
    const authority = authorityIdOf(key.publicKey)
    const dir1 = await stageVersion(root, 'v1', authority)
    const dir2 = await stageVersion(root, 'v2', authority)

    v1 = await publisher.publish(dir1, '1.0.0', key, { setAuthority: true, waitReplicas: 2, timeoutMs: 60_000 })
    caller = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: key })
    clients.push(caller)
    await waitForView(caller, () => onlyRunning(caller, v1.digest, 2), '2 ready replicas of 1.0.0', { timeoutMs: 30_000 })

    const loop = new CallLoop(caller)
    loops.push(loop)
    const started = Date.now()
    v2 = await publisher.publish(dir2, '1.1.0', key, { setAuthority: true, waitReplicas: 0 })
    expect(v2.digest).not.toBe(v1.digest)
    await waitForView(caller, () => onlyRunning(caller, v2.digest, 2), 'only 1.1.0 replicas running', { timeoutMs: 60_000 })
    const rolloutMs = Date.now() - started
    await loop.stop()
    console.log(`rollout 1.0.0 -> 1.1.0: ${rolloutMs} ms, ${loop.calls} calls, ${loop.failures.length} failed, answers ${JSON.stringify(Object.fromEntries(loop.answers))}`)
    expect(loop.failures).toEqual([])
    expect(loop.answers.get('v2') ?? 0).toBeGreaterThan(0)
    // Every node's local replicas agree with the view: no 1.0.0 left running anywhere.
    for (const n of nodes) expect(n.replicas.list(CELL).filter(r => r.state === 'ready' || r.state === 'starting').every(r => r.digest === v2.digest)).toBe(true)
  }, 150_000)

  it('cell rollback returns the fleet to 1.0.0 while every call succeeds', async () => {
    expect(v2).toBeDefined()
    // The command joins the live fleet and refuses a version it cannot find a digest for, by name.
    const keyFile = join(root, 'home', 'authority.key')
    await writeAuthorityKey(keyFile, key)
    const cli = await runCli(['rollback', CELL, '0.9.0', '--bootstrap', nodes[2].addresses()[0], '--key', keyFile, '--timeout', '20'], { home: join(root, 'home') })
    expect(cli.stderr).toMatch(/^UnknownVersionError: .*pass --digest/)
    expect(cli.code).toBe(1)
    const loop = new CallLoop(caller)
    loops.push(loop)
    const started = Date.now()
    // A version the fleet never ran has no digest to find: the operator is told to pass one.
    await expect(rollback(operator, CELL, '0.9.0', key, { waitReplicas: 0, lookupMs: 500 })).rejects.toMatchObject({ name: 'UnknownVersionError' })
    expect(operator.view.desired(CELL)).toBeUndefined()
    back = await rollback(operator, CELL, '1.0.0', key, { digest: v1.digest, waitReplicas: 1, timeoutMs: 60_000 })
    expect(back.seq).toBeGreaterThan(v2.seq)
    await waitForView(caller, () => onlyRunning(caller, v1.digest, 2), 'only 1.0.0 replicas running', { timeoutMs: 60_000 })
    const rollbackMs = Date.now() - started
    await loop.stop()
    console.log(`rollback 1.1.0 -> 1.0.0: ${rollbackMs} ms, ${loop.calls} calls, ${loop.failures.length} failed, answers ${JSON.stringify(Object.fromEntries(loop.answers))}`)
    expect(loop.failures).toEqual([])
    expect(loop.answers.get('v1') ?? 0).toBeGreaterThan(0)
    for (const n of nodes) expect(n.mesh.view.desired(CELL)?.seq).toBe(back.seq)
  }, 150_000)

  it('ignores a replayed desired record with a lower sequence number', async () => {
    expect(back).toBeDefined()
    // Validly signed by the trusted authority, naming 1.1.0, but under a lower seq than the rollback.
    const old = encodeDesiredVersion(await signDesiredVersion({ cell: CELL, version: '1.1.0', digest: v2.digest, seq: back.seq - 1, reason: 'replay', createdMs: Date.now() }, key))
    const staleBefore = nodes.reduce((n, node) => n + node.mesh.view.stats().dropped.stale, 0)
    // Straight onto the topic: the operator's own view would refuse to gossip it.
    await operator.libp2p.services.pubsub.publish(FLEET_RELEASE_TOPIC, encodeEnvelope({ kind: 'desired', signed: old }))
    const replayedAt = Date.now()

    // Watch the fleet for several heartbeats of every node; 1.1.0 must not start anywhere.
    const started: string[] = []
    const watch = (): void => {
      for (const n of nodes) for (const r of n.replicas.list(CELL)) if (r.digest !== v1.digest && r.state !== 'stopped') started.push(`${n.peerId.slice(-6)}/${r.instanceId}`)
      for (const i of caller.view.liveInstances(CELL)) if (i.digest !== v1.digest) started.push(i.instanceId)
    }
    caller.view.addEventListener('change', watch)
    try {
      await waitForView(caller, () => {
        const fresh = caller.view.nodes().filter(n => nodes.some(f => f.peerId === n.nodeId) && n.sentMs >= replayedAt + 6 * HEARTBEAT_MS)
        return fresh.length === nodes.length ? true : undefined
      }, 'six more heartbeats from every node', { timeoutMs: 30_000 })
    } finally {
      caller.view.removeEventListener('change', watch)
    }
    watch()
    expect(started).toEqual([])
    const staleAfter = nodes.reduce((n, node) => n + node.mesh.view.stats().dropped.stale, 0)
    expect(staleAfter).toBeGreaterThan(staleBefore)
    for (const n of nodes) expect(n.mesh.view.desired(CELL)?.seq).toBe(back.seq)
    expect(onlyRunning(caller, v1.digest, 2)).toBe(true)
    await waitForReplicas(caller, CELL, { digest: v1.digest, count: 2, timeoutMs: 5_000 })
  }, 60_000)

  it('a release published after a rollback rolls forward, even past a rollback signed on a clock running ahead', async () => {
    expect(back).toBeDefined()
    // An operator whose clock is ten minutes fast: its desired record's seq is far above our clock.
    const ahead = back.seq + 600_000
    const pinned = encodeDesiredVersion(await signDesiredVersion({ cell: CELL, version: '1.0.0', digest: v1.digest, seq: ahead, reason: 'rollback by operator', createdMs: Date.now() }, key))
    await operator.gossip.publishDesired(pinned)
    for (const n of nodes) await waitForView(n.mesh, () => n.mesh.view.desired(CELL)?.seq === ahead ? true : undefined, 'the fast-clock record at every node', { timeoutMs: 15_000 })

    const loop = new CallLoop(caller)
    loops.push(loop)
    const started = Date.now()
    const v3 = await publisher.publish(await stageVersion(root, 'v3', authorityIdOf(key.publicKey)), '1.2.0', key, { setAuthority: true, waitReplicas: 0 })
    expect(v3.seq).toBeGreaterThan(ahead)
    await waitForView(caller, () => onlyRunning(caller, v3.digest, 2), 'only 1.2.0 replicas running', { timeoutMs: 60_000 })
    const forwardMs = Date.now() - started
    await loop.stop()
    console.log(`roll forward 1.0.0 -> 1.2.0: ${forwardMs} ms, ${loop.calls} calls, ${loop.failures.length} failed, answers ${JSON.stringify(Object.fromEntries(loop.answers))}`)
    expect(loop.failures).toEqual([])
    expect(loop.answers.get('v3') ?? 0).toBeGreaterThan(0)
  }, 150_000)
})
