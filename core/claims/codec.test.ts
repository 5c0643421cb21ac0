import { describe, it, expect } from 'vitest'
import {
  decodeClaimFrame, encodeClaimAnswer, encodeClaimRequest, encodeClaimRefusal, MAX_CLAIM_FRAME_BYTES,
  type ClaimAnswer, type ClaimRequest
} from './codec.ts'
import { MalformedClaimFrameError } from './errors.ts'
import { SeededRandom } from '../../test/sim/prng.ts'

const A = '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
const B = '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'
const VOTERS = [A, B]
const chain = Uint8Array.of(1, 4, 0)

const requests: ClaimRequest[] = [
  { kind: 'prepare', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0123456789abcdef', voters: VOTERS },
  { kind: 'accept', claimId: 'ledger/12', ballot: { counter: 8, proposer: A }, nonce: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 3, leaseMs: 10_000, state: 'held', voters: VOTERS } },
  // A move, and a request of the generation it made.
  { kind: 'accept', claimId: 'ledger/1', ballot: { counter: 9, proposer: B }, nonce: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 3, leaseMs: 10_000, state: 'held', voters: VOTERS, next: { gen: 1, voters: [B] } } },
  { kind: 'prepare', claimId: 'ledger/1', ballot: { counter: 1, proposer: B }, nonce: '0123456789abcdef', voters: [B], gen: 1, origin: { owner: A, epoch: 3, leaseMs: 10_000 } }
]
const answers: ClaimAnswer[] = [
  { kind: 'promise', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: 'ffffffffffffffff', accepted: null, waitMs: 0 },
  { kind: 'promise', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: 'ffffffffffffffff', accepted: { ballot: { counter: 6, proposer: B }, value: { owner: B, epoch: 2, leaseMs: 500, state: 'released', voters: VOTERS } }, waitMs: 12 },
  { kind: 'promise', claimId: 'ledger/0', ballot: { counter: 9, proposer: A }, nonce: 'ffffffffffffffff', accepted: { ballot: { counter: 8, proposer: B }, value: { owner: B, epoch: 2, leaseMs: 500, state: 'released', voters: VOTERS, final: 'snapshot-e2-20261130T144213Z' } }, waitMs: 0 },
  { kind: 'accepted', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0000000000000000' },
  { kind: 'reject', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0000000000000000', phase: 'accept', reason: 'lease-held', holder: B, epoch: 2, waitMs: 900 },
  { kind: 'reject', claimId: 'ledger/0', ballot: { counter: 7, proposer: A }, nonce: '0000000000000000', phase: 'prepare', reason: 'moved', gen: 2, voters: [B], origin: { owner: B, epoch: 5, leaseMs: 15_000 } }
]

function body (json: unknown): Uint8Array {
  const text = new TextEncoder().encode(JSON.stringify(json))
  return Uint8Array.from([1, 1, 0, 0, ...text])
}

describe('/cell/claim/1 frames', () => {
  it('round-trips requests, answers and refusals', () => {
    for (const r of requests) expect(decodeClaimFrame(encodeClaimRequest(r, chain))).toEqual({ type: 'request', chain, request: r })
    for (const a of answers) expect(decodeClaimFrame(encodeClaimAnswer(a, chain))).toEqual({ type: 'answer', chain, answer: a })
    expect(decodeClaimFrame(encodeClaimRefusal(2))).toEqual({ type: 'refused', code: 2 })
  })

  it('a generation comes with the move that made it; a move names a generation and its voters, bounded', () => {
    const prepare = (extra: Record<string, unknown>): Uint8Array => body({ t: 'prepare', claim: 'ledger/0', ballot: [8, A], n: '0123456789abcdef', voters: VOTERS, ...extra })
    const origin = { owner: A, epoch: 3, leaseMs: 10_000 }
    expect(decodeClaimFrame(prepare({ gen: 1, origin }))).toMatchObject({ request: { gen: 1, origin } })
    for (const bad of [{ gen: 1 }, { origin }, { gen: 0, origin }, { gen: 1.5, origin }, { gen: 1, origin: { ...origin, leaseMs: 10 } }, { gen: 1, origin: { ...origin, extra: 1 } }, { gen: 1, origin: { ...origin, owner: 'x' } }]) {
      expect(() => decodeClaimFrame(prepare(bad)), JSON.stringify(bad)).toThrow(MalformedClaimFrameError)
    }
    const accept = (next: unknown): Uint8Array => body({ t: 'accept', claim: 'ledger/0', ballot: [8, A], n: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 3, leaseMs: 10_000, state: 'held', next } })
    expect(decodeClaimFrame(accept({ gen: 4, voters: [B] }))).toMatchObject({ request: { value: { next: { gen: 4, voters: [B] } } } })
    for (const bad of [{ gen: 4 }, { gen: 0, voters: [B] }, { gen: 4, voters: [B, A] }, { gen: 4, voters: [] }, { gen: 4, voters: [A, A] }, { gen: 4, voters: [B], x: 1 }, 'gen']) {
      expect(() => decodeClaimFrame(accept(bad)), JSON.stringify(bad)).toThrow(MalformedClaimFrameError)
    }
  })

  it('carries a release\'s final snapshot tag, and refuses one on a held value or one that is not a tag', () => {
    const value = { owner: A, epoch: 3, leaseMs: 10_000 }
    const accept = (v: Record<string, unknown>): Uint8Array => body({ t: 'accept', claim: 'ledger/0', ballot: [8, A], n: '0123456789abcdef', voters: VOTERS, value: v })
    expect(decodeClaimFrame(accept({ ...value, state: 'released', final: 'snapshot-e3-20261130T144213Z' })).type).toBe('request')
    for (const v of [{ ...value, state: 'held', final: 'snapshot-e3-x' }, { ...value, state: 'released', final: '../../etc' }, { ...value, state: 'released', final: 'x'.repeat(200) }, { ...value, state: 'released', final: 7 }]) {
      expect(() => decodeClaimFrame(accept(v))).toThrow(MalformedClaimFrameError)
    }
  })

  it('names every malformed frame: cut short, oversized, wrong version, unknown keys, bad values', () => {
    const good = encodeClaimRequest(requests[1], chain)
    const bad: Uint8Array[] = [
      good.subarray(0, good.length - 3),
      good.subarray(0, 3),
      new Uint8Array(MAX_CLAIM_FRAME_BYTES + 1),
      Uint8Array.from([2, ...good.subarray(1)]),
      Uint8Array.from([1, 9, ...good.subarray(2)]),
      Uint8Array.from([1, 1, 0xff, 0xff, ...good.subarray(4)]),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: VOTERS, extra: 1 }),
      body({ t: 'prepare', claim: 'Ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: VOTERS }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [0, A], n: '0123456789abcdef', voters: VOTERS }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1.5, A], n: '0123456789abcdef', voters: VOTERS }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, 'not a peer'], n: '0123456789abcdef', voters: VOTERS }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: [B, A] }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: [A, A] }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: [] }),
      body({ t: 'accept', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 1, leaseMs: 5, state: 'held' } }),
      body({ t: 'accept', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 1, leaseMs: 1000, state: 'owned' } }),
      body({ t: 'accept', claim: 'ledger/0', ballot: [1, A], n: '0123456789abcdef', voters: VOTERS, value: { owner: A, epoch: 1, leaseMs: 1000, state: 'held', voters: VOTERS } }),
      body({ t: 'commit', claim: 'ledger/0' }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], n: '0123', voters: VOTERS }),
      body({ t: 'prepare', claim: 'ledger/0', ballot: [1, A], voters: VOTERS }),
      body(['prepare']),
      Uint8Array.from([1, 1, 0, 0, 0xc3, 0x28]),
      Uint8Array.from([1, 3, 0, 0])
    ]
    for (const bytes of bad) expect(() => decodeClaimFrame(bytes), `frame ${bytes.length} bytes`).toThrow(MalformedClaimFrameError)
  })

  it('refuses to encode a body past its limit', () => {
    expect(() => encodeClaimRequest(requests[0], new Uint8Array(5000))).toThrow(MalformedClaimFrameError)
  })

  it('fuzz: mutated frames decode or fail with MalformedClaimFrameError, nothing else', () => {
    const random = new SeededRandom(42)
    const seeds = [...requests.map(r => encodeClaimRequest(r, chain)), ...answers.map(a => encodeClaimAnswer(a, chain))]
    for (let i = 0; i < 5_000; i++) {
      const bytes = seeds[i % seeds.length].slice()
      for (let k = 0; k < 1 + (i % 4); k++) bytes[Math.floor(random.next() * bytes.length)] = Math.floor(random.next() * 256)
      try {
        decodeClaimFrame(bytes)
      } catch (err) {
        expect(err).toBeInstanceOf(MalformedClaimFrameError)
      }
    }
  })
})
