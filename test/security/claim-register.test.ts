// Attacks on `/cell/claim/1`, the quorum register that grants claim epochs, with real libp2p nodes
// (TCP + Noise + yamux on 127.0.0.1): only peers holding a HOST grant for the claim's cell from
// the cell's authority may propose or vote; forged, oversized and truncated frames are named
// errors that close the stream; a replayed old answer is never a vote for a newer ballot; and a
// minority of the voters cannot grant an epoch.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import {
  Credentials, generateAuthority, issueGrant, TruncatedChainError, UnknownAuthorityError, WrongRoleError,
  WrongCellScopeError, WrongSubjectError, type AuthorityKey, type Role
} from '../../core/identity/index.ts'
import {
  ClaimAcceptor, ClaimRegisterClient, HostGrantGate, MemoryAcceptorStore, serveClaimProtocol, libp2pClaimTransport,
  ownerClock, voterClock, encodeClaimRequest, decodeClaimFrame, CLAIM_PROTOCOL, MAX_CLAIM_FRAME_BYTES, ClaimQuorumError,
  type ClaimServeStats, type ClaimTransport
} from '../../core/claims/index.ts'
import { systemClock } from '../../core/ports.ts'
import { refusalError } from '../../core/fleet/peer-grant.ts'
import { within } from './grant-peers.ts'

const CLAIM = 'ledger/0'

interface ClaimPeer {
  id: string
  node: Libp2p
  gate: HostGrantGate
  acceptor: ClaimAcceptor
  serve: ClaimServeStats
  client: (transport?: ClaimTransport) => ClaimRegisterClient
}

const peers: ClaimPeer[] = []
afterAll(async () => { await Promise.all(peers.map(async p => await p.node.stop())) })

let fleet: AuthorityKey
let rogue: AuthorityKey

/** A node that trusts `trusts` (default: fleet) for ledger, holds the given grant (or none) and votes on claims. */
async function claimPeer (grant?: { from: AuthorityKey, roles: Role[], cells?: string[] }, trusts?: AuthorityKey): Promise<ClaimPeer> {
  const key = await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: key })
  if (grant != null) {
    const now = Date.now()
    credentials.addGrant(await issueGrant(grant.from, { subject: credentials.peerId, roles: grant.roles, cells: grant.cells, notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    await credentials.refresh()
  }
  const node = await createLibp2p({
    privateKey: key,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 1000 }
  })
  const id = node.peerId.toString()
  const gate = new HostGrantGate({ authoritiesOf: cell => new Set(cell === 'ledger' ? [(trusts ?? fleet).id] : []), credentials })
  const acceptor = new ClaimAcceptor({ selfId: id, store: new MemoryAcceptorStore(), clock: voterClock(), gate })
  const leaseClock = ownerClock()
  const serve: ClaimServeStats = { served: 0, malformed: 0, failed: 0 }
  await serveClaimProtocol(node, acceptor, { stats: serve })
  const peer: ClaimPeer = {
    id,
    node,
    gate,
    acceptor,
    serve,
    client: (transport) => new ClaimRegisterClient({
      selfId: id,
      transport: transport ?? libp2pClaimTransport(node, { local: { selfId: id, acceptor } }),
      clock: leaseClock,
      timers: systemClock,
      gate,
      leaseMs: 5_000,
      phaseTimeoutMs: 2_000,
      timeoutMs: 5_000,
      maxAttempts: 3
    })
  }
  peers.push(peer)
  return peer
}

async function connectAll (list: ClaimPeer[]): Promise<void> {
  for (const a of list) for (const b of list) if (a !== b) await a.node.dial(b.node.getMultiaddrs()[0])
}

/** Sends raw bytes as one claim request to `to` and reads what comes back (or the error that ended the stream). */
async function raw (from: ClaimPeer, to: ClaimPeer, bytes: Uint8Array): Promise<{ bytes: number, error?: string }> {
  const stream = await from.node.dialProtocol(to.node.peerId, CLAIM_PROTOCOL)
  let total = 0
  try {
    for (let at = 0; at < bytes.length; at += 64 * 1024) {
      if (!stream.send(bytes.subarray(at, at + 64 * 1024))) await stream.onDrain()
    }
    await stream.close()
    for await (const chunk of stream) total += chunk.byteLength
    return { bytes: total }
  } catch (err) {
    return { bytes: total, error: (err as Error).name }
  }
}

describe('/cell/claim/1 under attack', () => {
  let voters: ClaimPeer[]
  let ids: string[]

  beforeAll(async () => {
    fleet = await generateAuthority()
    rogue = await generateAuthority()
    voters = [
      await claimPeer({ from: fleet, roles: ['host'] }),
      await claimPeer({ from: fleet, roles: ['host'], cells: ['ledger'] }),
      await claimPeer({ from: fleet, roles: ['host', 'operator'] })
    ]
    ids = voters.map(v => v.id).sort()
    await connectAll(voters)
  })

  it('a granted host acquires, renews and releases over real streams', async () => {
    const lease = await within(voters[0].client().acquire(CLAIM, ids), 10_000, 'acquire')
    expect(lease.epoch).toBe(1)
    const renewed = await within(voters[0].client().renew(CLAIM, ids, 1), 10_000, 'renew')
    expect(renewed.epoch).toBe(1)
    await within(voters[0].client().release(CLAIM, ids, 1), 10_000, 'release')
    expect(voters[1].acceptor.slot(CLAIM)?.accepted?.value).toMatchObject({ owner: voters[0].id, epoch: 1, state: 'released' })
  })

  it('peers without a host grant for the cell from its authority cannot propose: refused by name, counted', async () => {
    const cases: Array<[ClaimPeer, new (...args: never[]) => Error]> = [
      [await claimPeer(), TruncatedChainError],
      // A stranger that believes its own authority owns ledger, and presents that grant.
      [await claimPeer({ from: rogue, roles: ['host'] }, rogue), UnknownAuthorityError],
      [await claimPeer({ from: fleet, roles: ['caller', 'operator'] }), WrongRoleError],
      [await claimPeer({ from: fleet, roles: ['host'], cells: ['billing'] }), WrongCellScopeError]
    ]
    for (const [stranger, named] of cases) {
      await connectAll([stranger, ...voters])
      const before = voters.map(v => v.acceptor.stats().refused)
      const err = await within(stranger.client().acquire('ledger/1', ids).then(() => null, (e: unknown) => e), 10_000, 'stranger acquire')
      expect(err).toBeInstanceOf(named)
      expect(voters.map(v => v.acceptor.stats().refused)).toEqual(before.map(n => n + 1))
      expect(voters.every(v => v.acceptor.slot('ledger/1') == null)).toBe(true)
    }
  })

  it('peers without a grant cannot vote: their yes is not counted, so they cannot make a majority', async () => {
    const strangers = [await claimPeer(), await claimPeer({ from: rogue, roles: ['host'] })]
    await connectAll([voters[0], ...strangers])
    const client = voters[0].client()
    const mixed = [voters[0].id, ...strangers.map(s => s.id)].sort()
    const err = await within(client.acquire('ledger/2', mixed).then(() => null, (e: unknown) => e), 10_000, 'acquire with stranger voters')
    expect(err).toBeInstanceOf(ClaimQuorumError)
    expect(client.stats().refusedVoters).toBeGreaterThanOrEqual(2)
    // The strangers did vote yes (they trust fleet and the proposer holds its grant): only the proposer's check stopped them.
    expect(strangers.every(s => s.acceptor.slot('ledger/2')?.promised != null)).toBe(true)
  })

  it('a forged frame (another peer\'s chain), an oversized and a truncated frame: named errors, stream closed, counted', async () => {
    const attacker = await claimPeer()
    await connectAll([attacker, voters[1]])
    const target = voters[1]
    // Forged: a granted voter's own chain, presented by the attacker (Noise says it is the attacker).
    const stolen = target.gate.chain('ledger')
    const forged = encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/3', ballot: { counter: 1, proposer: attacker.id }, nonce: '0123456789abcdef', voters: ids }, stolen)
    const refusedBefore = target.acceptor.stats().refused
    const answer = await within(raw(attacker, target, forged), 10_000, 'forged')
    expect(answer.error).toBeUndefined()
    expect(target.acceptor.stats().refused).toBe(refusedBefore + 1)
    expect(target.acceptor.slot('ledger/3')).toBeUndefined()
    const refusal = await (async () => {
      const stream = await attacker.node.dialProtocol(target.node.peerId, CLAIM_PROTOCOL)
      stream.send(forged)
      await stream.close()
      const parts: Uint8Array[] = []
      for await (const c of stream) parts.push(c.subarray())
      return decodeClaimFrame(Uint8Array.from(parts.flatMap(p => [...p])))
    })()
    expect(refusal.type).toBe('refused')
    expect(refusalError(refusal.type === 'refused' ? refusal.code : 0, 'voter')).toBeInstanceOf(WrongSubjectError)

    const malformedBefore = target.serve.malformed
    const valid = encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/3', ballot: { counter: 1, proposer: attacker.id }, nonce: '0123456789abcdef', voters: ids }, new Uint8Array(0))
    for (const bytes of [new Uint8Array(MAX_CLAIM_FRAME_BYTES + 1), valid.subarray(0, valid.length - 5), new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n')]) {
      const got = await within(raw(attacker, target, bytes), 10_000, 'malformed')
      expect(got.bytes).toBe(0)
      expect(got.error).toBeDefined()
    }
    expect(target.serve.malformed).toBe(malformedBefore + 3)
    expect(target.acceptor.slot('ledger/3')).toBeUndefined()
  })

  it('a replayed old answer is never taken as a vote for a newer ballot', async () => {
    const proposer = voters[2]
    const real = libp2pClaimTransport(proposer.node, { local: { selfId: proposer.id, acceptor: proposer.acceptor } })
    const recorded = new Map<string, Uint8Array>()
    const recording: ClaimTransport = {
      send: async (peer, frame, options) => {
        const answer = await real.send(peer, frame, options)
        if (!recorded.has(peer)) recorded.set(peer, answer)
        return answer
      }
    }
    const lease = await within(proposer.client(recording).acquire('ledger/4', ids), 10_000, 'acquire')
    // Every voter's first answer (a promise for the first ballot) is replayed to every later request.
    const replaying: ClaimTransport = { send: async (peer) => recorded.get(peer) as Uint8Array }
    const client = proposer.client(replaying)
    const err = await within(client.renew('ledger/4', ids, lease.epoch).then(() => null, (e: unknown) => e), 10_000, 'renew with replays')
    expect(err).toBeInstanceOf(ClaimQuorumError)
    expect(client.stats().staleAnswers).toBeGreaterThanOrEqual(3)
  })

  it('a minority of the voters cannot grant an epoch', async () => {
    const five = [voters[0], voters[1], voters[2], await claimPeer({ from: fleet, roles: ['host'] }), await claimPeer({ from: fleet, roles: ['host'] })]
    await connectAll(five)
    const fiveIds = five.map(v => v.id).sort()
    // The minority side of a 2 | 3 partition: the proposer reaches only itself and one other voter.
    const side = new Set([five[3].id, five[4].id])
    const real = libp2pClaimTransport(five[3].node, { local: { selfId: five[3].id, acceptor: five[3].acceptor } })
    const partitioned: ClaimTransport = {
      send: async (peer, frame, options) => {
        if (!side.has(peer)) throw new Error(`partitioned from ${peerIdFromString(peer).toString().slice(-6)}`)
        return await real.send(peer, frame, options)
      }
    }
    const err = await within(five[3].client(partitioned).acquire('ledger/5', fiveIds).then(() => null, (e: unknown) => e), 10_000, 'minority acquire')
    expect(err).toBeInstanceOf(ClaimQuorumError)
    // The majority side still can.
    const lease = await within(five[0].client().acquire('ledger/5', fiveIds), 10_000, 'majority acquire')
    expect(lease.epoch).toBe(1)
  })
})
