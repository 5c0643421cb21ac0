import { describe, it, expect } from 'vitest'
import { ManualClock } from '../testing/manual-clock.ts'
import { ClaimAcceptor, MemoryAcceptorStore } from './acceptor.ts'
import { ClaimRegisterClient } from './client.ts'
import { ClaimHolder } from './claim-holder.ts'
import { ClaimHeldError, ClaimLostError } from './errors.ts'
import { marginMs } from './register.ts'
import { openClaimGateForTests } from './testing.ts'
import { SeededRandom } from '../../test/sim/prng.ts'

const IDS = ['A', 'B', 'C'].map(c => `12D3KooW${c.repeat(44)}`)
const LEASE = 3_000

/** Lets promise chains started by a timer run before time moves on. */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>(resolve => { setImmediate(resolve) })
}

async function advance (clock: ManualClock, ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t))
    await settle()
  }
}

/** Advances the fake clock until `promise` settles (backoff after a ballot conflict waits on it). */
async function drive<T> (clock: ManualClock, promise: Promise<T>): Promise<T> {
  let done = false
  const out = promise.finally(() => { done = true })
  out.catch(() => {})
  for (let i = 0; i < 10_000 && !done; i++) {
    await settle()
    if (!done) clock.advance(10)
  }
  return await out
}

function world () {
  const clock = new ManualClock(0)
  const mono = { nowMs: () => clock.now() }
  const down = new Set<string>()
  const acceptors = new Map(IDS.map(id => [id, new ClaimAcceptor({ selfId: id, store: new MemoryAcceptorStore(), clock: mono, gate: openClaimGateForTests })]))
  let seed = 0
  const holder = (self: string, onLost?: (why: Error) => void): ClaimHolder => new ClaimHolder({
    client: new ClaimRegisterClient({
      selfId: self,
      clock: mono,
      timers: clock,
      gate: openClaimGateForTests,
      random: new SeededRandom(++seed),
      leaseMs: LEASE,
      transport: {
        send: async (peer, frame) => {
          if (down.has(peer) || down.has(self)) throw new Error('unreachable')
          return await (acceptors.get(peer) as ClaimAcceptor).handle(self, frame)
        }
      }
    }),
    clock: mono,
    timers: clock,
    claimId: 'ledger/0',
    voters: IDS,
    onLost
  })
  return { clock, down, holder }
}

describe('ClaimHolder', () => {
  it('keeps serving across many leases by renewing, and others stay out', async () => {
    const w = world()
    const a = w.holder(IDS[0])
    await a.acquire()
    await advance(w.clock, 5 * LEASE)
    expect(a.serving()).toBe(true)
    expect(a.assertServing()).toBe(1)
    await expect(drive(w.clock, w.holder(IDS[1]).acquire())).rejects.toThrow(ClaimHeldError)
  })

  it('cut off from the voters, it stops serving when its own lease ends and says so once', async () => {
    const w = world()
    const lost: Error[] = []
    const a = w.holder(IDS[0], why => lost.push(why))
    const lease = await a.acquire()
    w.down.add(IDS[0])
    await advance(w.clock, LEASE - 100)
    expect(a.serving()).toBe(true)
    await advance(w.clock, 200)
    expect(a.serving()).toBe(false)
    expect(lost).toHaveLength(1)
    expect(() => a.assertServing()).toThrow(ClaimLostError)
    // The others take over only after the lease plus margin on the voters' clocks, at a higher epoch.
    const b = w.holder(IDS[1])
    await expect(drive(w.clock, b.acquire())).rejects.toThrow(ClaimHeldError)
    await advance(w.clock, marginMs(LEASE) + 100)
    expect((await drive(w.clock, b.acquire())).epoch).toBe(lease.epoch + 1)
  })

  it('release stops serving at once and the next owner need not wait', async () => {
    const w = world()
    const a = w.holder(IDS[0])
    await a.acquire()
    await a.release()
    expect(a.serving()).toBe(false)
    expect((await drive(w.clock, w.holder(IDS[2]).acquire())).epoch).toBe(2)
  })
})
