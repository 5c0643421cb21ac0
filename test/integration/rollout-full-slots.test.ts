// Live rollouts on full nodes, through the real node host (autonomic loop, replica set, gossip):
// three in-process full nodes that may each run one replica, and a cell wanting three.
// (1) No node has a free slot: the old replicas are replaced in place, one at a time, so at least two
//     of the three are ready at every observation (before 673b228 the rollout never started).
// (2) A fourth, empty node joins: the nodes holding old replicas are full, so it takes the surge, and
//     the replica count never drops below three (before 9265a47 only nodes holding old replicas
//     surged, so the rollout stalled).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { TestFleet, type TestNodeInit } from './test-fleet.ts'
import { CELL, onlyRunning, stageVersion } from './versioned.ts'

const N = 3
const NODE: TestNodeInit = { maxReplicas: 1, drainGraceMs: 1_000 }

describe('live rollout on nodes with one slot each', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  let root = ''
  let key: AuthorityKey
  let publisher: Publisher
  let watcher: Mesh
  let v2 = ''

  /** The versioned fixture as `tag`, wanting exactly N replicas. */
  const stage = async (tag: string): Promise<string> => {
    const dir = await stageVersion(root, tag, authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    const text = await readFile(toml, 'utf8')
    const changed = text.replace('min_replicas = 2', `min_replicas = ${N}`).replace('max_replicas = 2', `max_replicas = ${N}`)
    if (changed === text) throw new Error('fixture has no replica counts to change')
    await writeFile(toml, changed)
    return dir
  }

  const ready = (): string[] => watcher.view.liveInstances(CELL).filter(i => i.state === 'ready').map(i => `${i.version}@${i.nodeId.slice(-4)}`)
  const reasons = (): string => JSON.stringify(nodes.map(n => ({ node: n.peerId.slice(-4), cells: n.status().cells.map(c => ({ replicas: c.replicas, reasons: c.reasons })) })))

  /** Publishes `tag` as `version`, waits until only it runs (N ready), and returns the fewest ready replicas seen on the way. */
  const rollTo = async (tag: string, version: string): Promise<{ digest: string, fewest: number, samples: number, ms: number, log: string[] }> => {
    let fewest = Number.POSITIVE_INFINITY
    let samples = 0
    const log: string[] = []
    const sample = (): void => {
      const now = ready()
      samples++
      if (now.length < fewest) fewest = now.length
      const line = now.sort().join(' ')
      if (log.at(-1) !== line && log.length < 200) log.push(line)
    }
    watcher.view.addEventListener('change', sample)
    try {
      sample()
      const started = Date.now()
      const published = await publisher.publish(await stage(tag), version, key, { setAuthority: true, waitReplicas: 0 })
      await waitForView(watcher, () => onlyRunning(watcher, published.digest, N), `only ${version} running on ${N} nodes`, { timeoutMs: 60_000, seen: reasons })
      return { digest: published.digest, fewest, samples, ms: Date.now() - started, log }
    } finally {
      watcher.view.removeEventListener('change', sample)
    }
  }

  const placement = (digest: string): string[] => nodes.map(n => n.replicas.list(CELL).filter(r => r.state === 'ready' || r.state === 'starting').map(r => r.digest === digest ? 'new' : 'old').join(','))

  beforeAll(async () => {
    key = await generateAuthority()
    root = await fleet.start('cell-rollout-full-', N, { ...NODE, authorityKeys: [key] })
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key, listen: true })
    clients.push(operator)
    publisher = new Publisher(operator)
    watcher = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: key })
    clients.push(watcher)
    const v1 = await publisher.publish(await stage('v1'), '1.0.0', key, { setAuthority: true, waitReplicas: 0 })
    await waitForView(watcher, () => onlyRunning(watcher, v1.digest, N), `${N} ready replicas of 1.0.0`, { timeoutMs: 60_000, seen: reasons })
    // One replica per node: no node has a free slot left.
    expect(placement(v1.digest)).toEqual(Array(N).fill('new'))
  }, 120_000)

  afterAll(async () => { await fleet.stop() }, 60_000)

  it('replaces the old replicas in place, one at a time, when no node has a free slot', async () => {
    const r = await rollTo('v2', '1.1.0')
    console.log(`in-place rollout over ${N} full nodes: ${r.ms} ms, ${r.samples} view changes, fewest ready ${r.fewest}\n  ${r.log.join('\n  ')}`)
    expect(r.fewest, r.log.join('\n')).toBeGreaterThanOrEqual(N - 1)
    expect(placement(r.digest)).toEqual(Array(N).fill('new'))
    v2 = r.digest
  }, 90_000)

  it('lets an empty node take the surge when the nodes holding old replicas are full', async () => {
    await fleet.node(`n${N}`, [nodes[0].addresses()[0]], { ...NODE, authorityKeys: [key] })
    const fresh = nodes[N]
    expect(v2).not.toBe('')
    // Every node (the new one too) sees the free slot and the N replicas of 1.1.0 before 1.2.0 is
    // published, for a few ticks: a view still missing the new node would see no free slot anywhere
    // and rightly replace in place.
    for (const n of [watcher, ...nodes.map(x => x.mesh)]) {
      await waitForView(n, () => n.view.nodes().some(x => x.nodeId === fresh.peerId && x.capacity.freeSlots === 1) ? onlyRunning(n, v2, N) : undefined, 'the empty node with its free slot, and 1.1.0 on the others', { timeoutMs: 30_000, holdMs: 1_000 })
    }
    // Joining a fleet that has all it wants, the new node started nothing.
    expect(fresh.replicas.list(CELL)).toEqual([])
    const r = await rollTo('v3', '1.2.0')
    console.log(`surge on the empty node: ${r.ms} ms, ${r.samples} view changes, fewest ready ${r.fewest}\n  ${r.log.join('\n  ')}`)
    // Surge, not in place: a new replica proved itself before any old one stopped.
    expect(r.fewest, r.log.join('\n')).toBeGreaterThanOrEqual(N)
    // The first replica of 1.2.0 ran on the empty node (the only free slot when it was published).
    expect(r.log.find(l => l.includes('1.2.0')), r.log.join('\n')).toContain(`1.2.0@${fresh.peerId.slice(-4)}`)
    expect(placement(r.digest).filter(p => p === 'new')).toHaveLength(N)
  }, 90_000)
})
