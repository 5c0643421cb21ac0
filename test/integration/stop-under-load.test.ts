// A planned stop under load loses no call, idempotent or not. Three in-process full nodes run two
// billing replicas; a caller keeps 48 non-idempotent `charge` calls in flight the whole time while a
// node hosting a replica stops (FullNode.stop: drain, stop replicas, last heartbeat, stop the mesh).
// Calls the node read are answered before its connections go (a nothing-ran error from a draining
// or stopped replica, retried elsewhere); calls still on the wire when it stops reading are failed
// by the caller with ServerGoingAwayError (nothing ran), which the mesh retries on another node.
// On the code before GOAWAY carried the count of calls read, the stop aborted the node's
// connections with calls in transit: they failed with ChannelClosedError (they might have run), and
// `charge` is not idempotent, so nothing retried them.
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import { readFile, writeFile } from 'node:fs/promises'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { stageCell } from './stage-cell.ts'
import { TestFleet } from './test-fleet.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')
const IN_FLIGHT = 48

describe('planned stop under load', () => {
  const fleet = new TestFleet()
  afterAll(async () => { await fleet.stop() }, 60_000)

  it('fails no non-idempotent call while a node hosting a replica stops', async () => {
    const authority = await generateAuthority()
    const root = await fleet.start('cell-stopload-', 4, { authorityKeys: [authority], dissemination: 'per-cell', maxReplicas: 1, standbyCandidates: 1 })
    const dir = await stageCell(billingDir, join(root, 'billing'), authorityIdOf(authority.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace('min_replicas = 1', 'min_replicas = 2').replace('max_replicas = 5', 'max_replicas = 2'))
    const publisher = await createClient({ bootstrap: [fleet.nodes[0].addresses()[0]], authorityKey: authority, listen: true, dissemination: 'per-cell' })
    fleet.clients.push(publisher)
    await new Publisher(publisher).publish(dir, '1.0.0', authority, { waitReplicas: 2, timeoutMs: 60_000 })
    const replicas = await waitForReplicas(publisher, 'billing', { count: 2, timeoutMs: 30_000 })
    // The caller: a full node that neither hosts nor follows billing, so it knows the replicas from a
    // sample it pulls every 10 s, not from their heartbeats: it goes on sending calls to the stopping node.
    const callerNode = fleet.nodes.find(n => !replicas.some(r => r.nodeId === n.peerId) && !n.mesh.gossip.followed().includes('billing'))
    expect(callerNode, 'a node that neither hosts nor follows billing').toBeDefined()
    const caller = callerNode!.mesh
    const victim = fleet.nodes.find(n => replicas.some(r => r.nodeId === n.peerId))!

    let ok = 0
    const failures: string[] = []
    let running = true
    let okAtStop = -1
    let byVictim = 0
    let wake: (() => void) | undefined
    const loop = async (i: number): Promise<void> => {
      while (running) {
        try {
          await caller.call('billing', 'charge', { amount: i + 1 }, { timeoutMs: 20_000, onAnswer: (r) => { if (r.nodeId === victim.peerId) byVictim++ } })
          ok++
        } catch (err) {
          failures.push(`${(err as Error).name}: ${(err as Error).message}`)
        }
        wake?.()
      }
    }
    /** Resolves once `ok` reaches `n` (woken by every answered call), bounded by `ms`. */
    const answered = async (n: number, ms: number, what: string): Promise<void> => {
      const deadline = Date.now() + ms
      while (ok < n) {
        if (Date.now() > deadline) throw new Error(`${what}: ${ok} calls answered, waited for ${n}; failures: ${failures.slice(0, 5).join('; ')}`)
        await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, 200) })
      }
    }
    const loops = Array.from({ length: IN_FLIGHT }, async (_, i) => { await loop(i) })
    try {
      await answered(1_000, 30_000, 'load before the stop')
      const servedBefore = byVictim
      okAtStop = ok
      const stoppedMs = Date.now()
      await victim.stop()
      const stopMs = Date.now() - stoppedMs
      // The load goes on against the two nodes left (one replica, then two again).
      await answered(okAtStop + 1_000, 60_000, 'load after the stop')
      process.stdout.write(`stop under load: ${ok} charges answered (${okAtStop} before the stop), node stopped in ${stopMs} ms, ${servedBefore} served by it before, ${caller.libp2p.services.synapse.stats().client.unread} failed unread by its GOAWAY and retried\n`)
      expect(servedBefore, 'the stopped node served part of the load').toBeGreaterThan(0)
    } finally {
      running = false
      await Promise.all(loops)
    }
    expect(failures).toEqual([])
  }, 180_000)
})
