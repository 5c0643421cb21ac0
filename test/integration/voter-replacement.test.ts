// A claim outlives its voters: the example ledger cell on 5 full nodes (dir driver, real claim
// register over libp2p). Two of the claim's three first voters stop for good, one after the other.
// Before voter replacement the second loss stopped the claim (no majority left to renew it: the
// owner stopped serving and no node could take it). Now the owner replaces each voter once it has
// been out of the fleet for --voter-replace-after (2 s here): the claim moves to its next
// generation with a live node in the gone one's place, serving throughout at the same epoch; then a
// planned stop of the owner hands it over inside the new generation, and every acknowledged append
// is still there.
import { describe, it, expect, afterAll } from 'vitest'
import { generateAuthority } from '../../core/identity/index.ts'
import { waitForView } from '../../node-host/client.ts'
import type { FullNode } from '../../node-host/full-node.ts'
import { TestFleet } from './test-fleet.ts'

const LEASE_MS = 4_000

describe('a stateful claim whose voters leave for good', () => {
  const fleet = new TestFleet()
  const { nodes } = fleet
  afterAll(async () => { await fleet.stop() })

  it('moves to live voters while a majority is left, serves on at its epoch, and hands over in the new generation', async () => {
    const key = await generateAuthority()
    const storage = { leaseMs: LEASE_MS, voterReplaceAfterMs: 2_000, voterCheckMs: 250, tuning: { firstSnapshotMs: 500, handoverSafeMs: 20_000 } }
    await fleet.start('cell-voters-', 5, { authorityKeys: [key], storage, drainGraceMs: 2_000 })
    const operator = await fleet.publishDirLedger(key)

    let acked = 0
    let sum = 0
    const append = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i++) {
        const amount = acked + 1
        await operator.call('ledger', 'append', { account: 'ada', amount }, { timeoutMs: 15_000 })
        acked++
        sum += amount
      }
    }
    await append(10)
    const owner = nodes.find(n => n.replicas.list('ledger').some(r => r.state === 'ready'))!
    expect(owner).toBeDefined()
    const first = owner.volumes.manager!.claim('ledger/0')!
    expect(first.gen).toBe(0)
    const firstVoters = [...first.voters]
    const epoch = first.epoch
    const byId = (id: string): FullNode => nodes.find(n => n.peerId === id)!
    // Two voters other than the owner (the owner is one of the three, or not).
    const [x, y] = firstVoters.filter(id => id !== owner.peerId)

    // 1. One voter stops for good. The owner replaces it with a live node: generation 1.
    const stopped = performance.now()
    await byId(x).stop()
    const gen1 = await waitForView(operator, () => {
      const c = owner.volumes.manager!.claim('ledger/0')
      return c !== undefined && c.gen >= 1 && !c.voters.includes(x) ? { gen: c.gen, voters: [...c.voters] } : undefined
    }, 'the owner replacing the stopped voter', { timeoutMs: 40_000, tickMs: 100 })
    const movedMs = performance.now() - stopped
    const newcomer = gen1.voters.find(id => !firstVoters.includes(id))!
    expect(newcomer).toBeDefined()
    expect(gen1.voters).toHaveLength(3)
    // The new voter holds the claim in its new generation (its own vote), from the owner's move.
    expect(byId(newcomer).volumes.acceptor.place('ledger/0')).toMatchObject({ gen: gen1.gen, voters: gen1.voters, origin: { owner: owner.peerId, epoch } })
    expect(owner.volumes.manager!.counters.voterMoves).toBeGreaterThanOrEqual(1)
    expect(owner.volumes.manager!.claim('ledger/0')!.epoch).toBe(epoch)
    await append(5)

    // 2. A second of the first three voters stops for good. Without the move the claim would have
    // had one voter left and stopped; now it has a majority of its new voters (and is moved again
    // if a node is left to take the place).
    await byId(y).stop()
    const afterY = performance.now()
    // Serving on through several leases: each renew needed a majority of the new voters.
    while (performance.now() - afterY < 3 * LEASE_MS) {
      await append(1)
      expect(owner.volumes.manager!.claim('ledger/0')?.serving(), 'the owner still serves the claim').toBe(true)
    }
    const now = owner.volumes.manager!.claim('ledger/0')!
    expect(now.epoch).toBe(epoch)
    expect(now.voters.filter(id => id !== x && id !== y).length).toBeGreaterThanOrEqual(2)

    // 3. A planned stop of the owner hands the claim over inside the new generation.
    const rest = nodes.filter(n => n !== owner && n.peerId !== x && n.peerId !== y)
    await owner.stop()
    const next = await waitForView(operator, () => rest.find(n => n.replicas.list('ledger').some(r => r.state === 'ready')), 'ledger ready on another node', { timeoutMs: 60_000 })
    const taken = next.volumes.manager!.claim('ledger/0')!
    expect(taken.epoch).toBe(epoch + 1)
    expect(taken.gen).toBeGreaterThanOrEqual(1)
    const balance = await operator.call<{ balance: number, entries: number }>('ledger', 'balance', { account: 'ada' }, { timeoutMs: 15_000 })
    expect(balance).toMatchObject({ entries: acked, balance: sum })
    process.stdout.write(`voter replacement: the owner moved ledger/0 to generation ${gen1.gen} ${Math.round(movedMs)} ms after a voter stopped (replace after 2 s); ${acked} appends, all there after two of the first three voters left and the owner handed over (epoch ${epoch} → ${taken.epoch}, generation ${taken.gen})\n`)
  }, 240_000)
})
