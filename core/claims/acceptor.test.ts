// The acceptor and client together over an in-memory transport: persistence before answering,
// restarts, the named outcomes of acquire / renew / release, and answers bound to their request.
import { describe, it, expect } from 'vitest'
import { ClaimAcceptor, MemoryAcceptorStore, type AcceptorState, type AcceptorStore } from './acceptor.ts'
import { ClaimRegisterClient, leaseValid, unansweredMs, type ClaimTransport } from './client.ts'
import { ClaimHeldError, ClaimLostError, ClaimQuorumError, ClaimVotersMismatchError, MalformedClaimFrameError, TooManyClaimsError } from './errors.ts'
import { decodeClaimFrame, encodeClaimRequest } from './codec.ts'
import { marginMs } from './register.ts'
import { openClaimGateForTests } from './testing.ts'
import { SeededRandom } from '../../test/sim/prng.ts'

const IDS = ['A', 'B', 'C', 'D'].map(c => `12D3KooW${c.repeat(44)}`)
const [A, B, C, D] = IDS
const VOTERS = [A, B, C]
const LEASE = 1_000

class FailingStore implements AcceptorStore {
  fail = false
  inner = new MemoryAcceptorStore()
  async load (): Promise<AcceptorState | null> { return await this.inner.load() }
  async save (state: AcceptorState): Promise<void> {
    if (this.fail) throw new Error('disk full')
    await this.inner.save(state)
  }
}

function world () {
  let now = 0
  const clock = { nowMs: () => now }
  // Real timers: backoff after a ballot conflict is a few ms; the register's clock is the fake one.
  const timers = { setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => { clearTimeout(h as ReturnType<typeof setTimeout>) } }
  const stores = new Map(IDS.map(id => [id, new FailingStore()]))
  const acceptors = new Map<string, ClaimAcceptor>()
  const down = new Set<string>()
  let seeds = 0
  const boot = (id: string): void => { acceptors.set(id, new ClaimAcceptor({ selfId: id, store: stores.get(id) as FailingStore, clock, gate: openClaimGateForTests })) }
  for (const id of IDS) boot(id)
  const client = (self: string, transport?: ClaimTransport): ClaimRegisterClient => new ClaimRegisterClient({
    selfId: self,
    clock,
    timers,
    gate: openClaimGateForTests,
    random: new SeededRandom(++seeds),
    leaseMs: LEASE,
    maxAttempts: 3,
    transport: transport ?? {
      send: async (peer, frame) => {
        if (down.has(peer)) throw new Error('unreachable')
        return await (acceptors.get(peer) as ClaimAcceptor).handle(self, frame)
      }
    }
  })
  return { clock, advance: (ms: number) => { now += ms }, stores, acceptors, boot, down, client }
}

describe('claim acceptor and client', () => {
  it('acquire, renew, held by another, release, then acquire without waiting', async () => {
    const w = world()
    const a = w.client(A)
    const lease = await a.acquire('ledger/0', VOTERS)
    expect(lease).toMatchObject({ claimId: 'ledger/0', epoch: 1, leaseMs: LEASE, leaseStartLocalMs: 0, voters: VOTERS })
    w.advance(400)
    const renewed = await a.renew('ledger/0', VOTERS, 1)
    expect(renewed.leaseStartLocalMs).toBe(400)
    const b = w.client(B)
    const held = await b.acquire('ledger/0', VOTERS).catch((e: unknown) => e)
    expect(held).toBeInstanceOf(ClaimHeldError)
    expect(held).toMatchObject({ holder: A, epoch: 1, leaseEndsInMs: LEASE + marginMs(LEASE) })
    await a.release('ledger/0', VOTERS, 1)
    expect(await b.acquire('ledger/0', VOTERS)).toMatchObject({ epoch: 2 })
    expect(await a.renew('ledger/0', VOTERS, 1).catch((e: unknown) => e)).toBeInstanceOf(ClaimLostError)
  })

  it('a takeover waits out the lease plus margin on the voters\' clocks', async () => {
    const w = world()
    await w.client(A).acquire('ledger/0', VOTERS)
    const b = w.client(B)
    w.advance(LEASE + marginMs(LEASE) - 1)
    expect(await b.acquire('ledger/0', VOTERS).catch((e: unknown) => e)).toBeInstanceOf(ClaimHeldError)
    w.advance(1)
    const lease = await b.acquire('ledger/0', VOTERS)
    expect(lease.epoch).toBe(2)
    expect(leaseValid(lease, LEASE + marginMs(LEASE) + LEASE)).toBe(true)
    expect(leaseValid(lease, LEASE + marginMs(LEASE) + LEASE + 1)).toBe(false)
  })

  it('a minority of voters grants nothing', async () => {
    const w = world()
    w.down.add(B)
    w.down.add(C)
    const err = await w.client(A).acquire('ledger/0', VOTERS).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ClaimQuorumError)
    // It says which voters failed (on the old code: "0 yes, no rejects, 2 failed").
    expect((err as Error).message).toMatch(new RegExp(`prepare: \\d of 3 yes; …${B.slice(-6)} failed: Error; …${C.slice(-6)} failed: Error\\)$`))
  })

  it('persists a promise before answering: a failed save gives no answer and no promise', async () => {
    const w = world()
    const store = w.stores.get(A) as FailingStore
    store.fail = true
    const frame = encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/0', ballot: { counter: 5, proposer: B }, nonce: '0000000000000001', voters: VOTERS }, new Uint8Array(0))
    await expect((w.acceptors.get(A) as ClaimAcceptor).handle(B, frame)).rejects.toThrow('disk full')
    expect((w.acceptors.get(A) as ClaimAcceptor).slot('ledger/0')).toBeUndefined()
    store.fail = false
    const answer = decodeClaimFrame(await (w.acceptors.get(A) as ClaimAcceptor).handle(B, frame))
    expect(answer).toMatchObject({ type: 'answer', answer: { kind: 'promise' } })
    // A restart keeps the promise: the same or a lower ballot is refused.
    w.boot(A)
    const again = decodeClaimFrame(await (w.acceptors.get(A) as ClaimAcceptor).handle(C, encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/0', ballot: { counter: 4, proposer: C }, nonce: '0000000000000002', voters: VOTERS }, new Uint8Array(0))))
    expect(again).toMatchObject({ type: 'answer', answer: { kind: 'reject', reason: 'ballot', promised: { counter: 5, proposer: B } } })
  })

  it('after an acceptor restart the lease is counted again from the restart', async () => {
    const w = world()
    await w.client(A).acquire('ledger/0', VOTERS)
    w.advance(LEASE + marginMs(LEASE))
    for (const id of VOTERS) w.boot(id)
    expect(await w.client(B).acquire('ledger/0', VOTERS).catch((e: unknown) => e)).toBeInstanceOf(ClaimHeldError)
    w.advance(LEASE + marginMs(LEASE))
    expect((await w.client(B).acquire('ledger/0', VOTERS)).epoch).toBe(2)
  })

  it('a voter not named in the request, or voters that differ from the claim\'s, are refused', async () => {
    const w = world()
    await w.client(A).acquire('ledger/0', VOTERS)
    const wrong = await w.client(B).acquire('ledger/0', [A, B, D]).catch((e: unknown) => e)
    expect(wrong).toBeInstanceOf(ClaimVotersMismatchError)
    expect((wrong as ClaimVotersMismatchError).voters).toEqual(VOTERS)
    const frame = encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/1', ballot: { counter: 1, proposer: B }, nonce: '0000000000000003', voters: [A, B] }, new Uint8Array(0))
    expect(decodeClaimFrame(await (w.acceptors.get(C) as ClaimAcceptor).handle(B, frame))).toMatchObject({ answer: { kind: 'reject', reason: 'not-voter' } })
  })

  it('answers bound to another request (an old ballot replayed) are not votes', async () => {
    const w = world()
    // Record every voter's answer to A's first acquire, then replay those answers to A's later requests.
    const recorded = new Map<string, Uint8Array[]>()
    const recording = w.client(A, {
      send: async (peer, frame) => {
        const answer = await (w.acceptors.get(peer) as ClaimAcceptor).handle(A, frame)
        recorded.set(peer, [...(recorded.get(peer) ?? []), answer])
        return answer
      }
    })
    await recording.acquire('ledger/0', VOTERS)
    const replaying = w.client(A, { send: async (peer) => (recorded.get(peer) as Uint8Array[])[0] })
    expect(await replaying.renew('ledger/0', VOTERS, 1).catch((e: unknown) => e)).toBeInstanceOf(ClaimQuorumError)
    expect(replaying.stats().staleAnswers).toBeGreaterThanOrEqual(3)
  })

  it('voters full of claims refuse a new one by name; claims they hold go on', async () => {
    const w = world()
    for (const id of IDS) w.acceptors.set(id, new ClaimAcceptor({ selfId: id, store: new MemoryAcceptorStore(), clock: w.clock, gate: openClaimGateForTests, maxClaims: 1 }))
    const a = w.client(A)
    await a.acquire('ledger/0', VOTERS)
    expect(await a.acquire('ledger/1', VOTERS).catch((e: unknown) => e)).toBeInstanceOf(TooManyClaimsError)
    expect((await a.renew('ledger/0', VOTERS, 1)).epoch).toBe(1)
  })

  it('a frame that is not a request is a named error, counted', async () => {
    const w = world()
    const acceptor = w.acceptors.get(A) as ClaimAcceptor
    await expect(acceptor.handle(B, new TextEncoder().encode('hello'))).rejects.toThrow(MalformedClaimFrameError)
    expect(acceptor.stats().malformed).toBe(1)
  })

  it('a request that jumps far ahead in generations (attack) neither wipes the voter\'s slot nor is answered as a move', async () => {
    const w = world()
    const lease = await w.client(A).acquire('ledger/0', VOTERS)
    const acceptor = w.acceptors.get(B) as ClaimAcceptor
    const before = acceptor.slot('ledger/0')
    const far = encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/0', ballot: { counter: 1, proposer: D }, nonce: '0123456789abcdef', voters: [B, C, D], gen: 1_001, origin: { owner: D, epoch: 1, leaseMs: 100 } }, new Uint8Array(0))
    const answer = decodeClaimFrame(await acceptor.handle(D, far))
    expect(answer).toMatchObject({ type: 'answer', answer: { kind: 'reject', reason: 'moved' } })
    expect(answer.type === 'answer' && answer.answer.kind === 'reject' ? answer.answer.gen : 'none').toBeUndefined()
    expect(acceptor.slot('ledger/0')).toEqual(before)
    // The owner renews on in generation 0 as if nothing had come.
    expect(await w.client(A).renew('ledger/0', VOTERS, lease.epoch)).toMatchObject({ epoch: lease.epoch, gen: 0 })
  })

  it('a node whose ballots on one claim ran far ahead (weeks of renewals) still creates and takes other claims', async () => {
    // A claim renewed every 3.75 s for seven weeks is past MAX_BALLOT_JUMP (1,000,000) rounds; the
    // voters' saved promises are where a long-lived fleet's are. A node that contends for it learns
    // that counter; its ballots for any other claim must not start there, or every voter of a new
    // claim (an empty slot) refuses them as a jump.
    const w = world()
    const old = { promised: { counter: 1_200_000, proposer: D }, accepted: null, acceptedAtLocalMs: 0 }
    for (const id of VOTERS) {
      await w.stores.get(id)?.save({ claims: { 'ledger/0': old } })
      w.boot(id)
    }
    const a = w.client(A)
    const first = await a.acquire('ledger/0', VOTERS)
    expect(first.epoch).toBe(1)
    const other = await a.acquire('ledger/1', VOTERS)
    expect(other.epoch).toBe(1)
    expect(w.acceptors.get(B)?.slot('ledger/1')?.promised?.counter).toBeLessThan(10)
  })

  it('moves to new voters when one is gone: the owner serves on at its epoch, a stale node follows, a takeover waits for the mover\'s lease', async () => {
    const w = world()
    const a = w.client(A)
    const lease = await a.acquire('ledger/0', VOTERS)
    w.down.add(C)
    const moved = await a.move('ledger/0', lease.voters, lease.epoch, [A, B, D], { gen: lease.gen })
    expect(moved).toMatchObject({ epoch: 1, gen: 1, voters: [A, B, D], origin: { owner: A, epoch: 1 } })
    expect(w.acceptors.get(D)?.place('ledger/0')).toEqual({ gen: 1, voters: [A, B, D], origin: moved.origin })
    // The old generation is finished: B answers its requests with where the claim went.
    const renewed = await a.renew('ledger/0', moved.voters, moved.epoch, { gen: moved.gen, ...(moved.origin !== undefined ? { origin: moved.origin } : {}) })
    expect(renewed).toMatchObject({ epoch: 1, gen: 1 })
    // Another node that knows only the first voters follows the claim, and finds it held.
    const d = w.client(D)
    await expect(d.acquire('ledger/0', VOTERS)).rejects.toMatchObject({ name: 'ClaimHeldError', holder: A, epoch: 1 })
    // A dies too; once its lease is over by the new voters' clocks, D takes the claim at the next epoch.
    w.down.add(A)
    w.advance(LEASE + marginMs(LEASE))
    const taken = await d.acquire('ledger/0', VOTERS)
    expect(taken).toMatchObject({ epoch: 2, gen: 1, voters: [A, B, D] })
    // The old generation's voters never grant it again: C comes back with its old state and is outvoted.
    w.down.delete(C)
    await expect(w.client(C).acquire('ledger/0', VOTERS)).rejects.toMatchObject({ name: 'ClaimHeldError', holder: D, epoch: 2 })
  })

  it('a move the old voters chose is finished by whoever finds it; the new generation waits out the mover\'s lease before anyone else takes it', async () => {
    const w = world()
    const a = w.client(A)
    const lease = await a.acquire('ledger/0', VOTERS)
    // A's move reaches the old voters, and A dies before it takes the claim up with the new ones.
    w.down.add(D)
    await a.move('ledger/0', lease.voters, lease.epoch, [A, B, D], { gen: 0 })
    w.down.delete(D)
    w.down.add(A)
    const b = w.client(B)
    await expect(b.acquire('ledger/0', VOTERS)).rejects.toMatchObject({ name: 'ClaimHeldError', holder: A, epoch: 1 })
    w.advance(LEASE + marginMs(LEASE))
    expect(await b.acquire('ledger/0', VOTERS)).toMatchObject({ epoch: 2, gen: 1, voters: [A, B, D] })
  })

  it('hears which voters answer: a voter whose store fails is asked and never heard, a slow one cut off by the majority still is', async () => {
    const w = world()
    const failing = w.stores.get(C) as FailingStore
    failing.fail = true
    // B answers after A and C (whose store fails at once): a majority without B never waits for it.
    let slowAnswers = 0
    const a = w.client(A, {
      send: async (peer, frame, { signal }) => {
        // Like a stream: an aborted request gets no answer.
        if (peer === B) {
          await new Promise((resolve, reject) => {
            const t = setTimeout(resolve, 20)
            signal.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason) }, { once: true })
          })
        }
        const answer = await (w.acceptors.get(peer) as ClaimAcceptor).handle(A, frame)
        if (peer === B) slowAnswers++
        return answer
      }
    })
    const heardFromB = async (rounds: number): Promise<void> => {
      const until = Date.now() + 5_000
      while (slowAnswers < rounds) {
        if (Date.now() > until) throw new Error(`B answered ${slowAnswers} of ${rounds} rounds`)
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }
    expect(a.heard('ledger/0', B)).toBeUndefined()
    // C's store fails: the acquire needs B, and hears it.
    await a.acquire('ledger/0', VOTERS)
    expect(slowAnswers).toBe(2)
    expect(a.heard('ledger/0', B)).toMatchObject({ firstAskedMs: 0, lastAnsweredMs: 0 })
    expect(a.heard('ledger/0', C)).toEqual({ firstAskedMs: 0, lastAskedMs: 0 })
    // C is back: A and C make the majority and B's answers come after the renew returned; they still count.
    failing.fail = false
    w.advance(200)
    await a.renew('ledger/0', VOTERS, 1)
    await heardFromB(4)
    expect(a.heard('ledger/0', B)).toMatchObject({ lastAskedMs: 200, lastAnsweredMs: 200 })
    // Now B's store fails: asked at every renew, heard no more.
    ;(w.stores.get(B) as FailingStore).fail = true
    for (let i = 0; i < 3; i++) {
      w.advance(200)
      await a.renew('ledger/0', VOTERS, 1)
    }
    const b = a.heard('ledger/0', B)!
    expect(b).toMatchObject({ firstAskedMs: 0, lastAskedMs: 800, lastAnsweredMs: 200 })
    expect(unansweredMs(b)).toBe(600)
    expect(unansweredMs(a.heard('ledger/0', A)!)).toBe(0)
    expect(unansweredMs(a.heard('ledger/0', C)!)).toBe(0)
    ;(w.stores.get(B) as FailingStore).fail = false
    w.advance(200)
    await a.renew('ledger/0', VOTERS, 1)
    await heardFromB(6)
    expect(a.heard('ledger/0', B)).toMatchObject({ lastAskedMs: 1000, lastAnsweredMs: 1000 })
    expect(a.heard('ledger/1', B)).toBeUndefined()
  })
})
