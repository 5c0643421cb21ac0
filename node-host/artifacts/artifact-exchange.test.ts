// Two real libp2p peers on loopback: artifacts fetched by digest are verified, forged bytes and
// unknown digests are refused by name; the request frame round-trips and is bounded.
import { describe, it, expect, afterAll } from 'vitest'
import { serveArtifacts, fetchArtifact, encodeArtifactRequest, decodeArtifactRequest, artifactServeStats, ProviderPenalties,
  ArtifactDigestMismatchError, ArtifactNotFoundError, ArtifactGateMissingError, MalformedArtifactRequestError } from './artifact-exchange.ts'
import { sha256Hex } from '../../core/identity/index.ts'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import { authority, grantPeer, type GrantPeer } from '../../test/security/grant-peers.ts'

describe('artifact exchange', () => {
  const peers: GrantPeer[] = []
  afterAll(async () => { await Promise.all(peers.map(async p => await p.node.stop())) })

  it('fetches and verifies, refuses forged bytes and unknown digests', async () => {
    const fleet = await authority()
    const trust = [fleet.id]
    const honest = await grantPeer({ trusted: trust, grantFrom: fleet, roles: ['host'] })
    const forger = await grantPeer({ trusted: trust, grantFrom: fleet, roles: ['host'] })
    const client = await grantPeer({ trusted: trust, grantFrom: fleet, roles: ['caller'] })
    peers.push(honest, forger, client)
    const artifact = new TextEncoder().encode('export default {}'.repeat(20_000))
    const digest = await sha256Hex(artifact)
    const stats = artifactServeStats()
    await serveArtifacts(honest.node, { get: async (d) => d === digest ? artifact : undefined }, { gate: honest.gate, stats })
    // The forger answers every digest with other bytes.
    await serveArtifacts(forger.node, { get: async () => new TextEncoder().encode('globalThis.evil = true') }, { gate: forger.gate })
    await client.node.peerStore.patch(honest.node.peerId, { multiaddrs: honest.node.getMultiaddrs() })
    await client.node.peerStore.patch(forger.node.peerId, { multiaddrs: forger.node.getMultiaddrs() })

    const fetched = await fetchArtifact(client.node, honest.node.peerId, digest, { gate: client.gate })
    expect(fetched).toEqual(artifact)
    await expect(fetchArtifact(client.node, forger.node.peerId, digest, { gate: client.gate })).rejects.toBeInstanceOf(ArtifactDigestMismatchError)
    await expect(fetchArtifact(client.node, honest.node.peerId, 'a'.repeat(64), { gate: client.gate })).rejects.toBeInstanceOf(ArtifactNotFoundError)
    expect(stats).toMatchObject({ served: 1, notFound: 1, refused: 0 })
  })

  it('will not serve without a grant gate', async () => {
    const bare = await grantPeer({ trusted: [] })
    peers.push(bare)
    await expect(serveArtifacts(bare.node, { get: async () => undefined })).rejects.toBeInstanceOf(ArtifactGateMissingError)
  })

  it('bounds and round-trips the request frame', () => {
    const digest = 'ab'.repeat(32)
    const chain = new Uint8Array([1, 4, 0])
    expect(decodeArtifactRequest(encodeArtifactRequest(digest, chain))).toEqual({ digest, chain })
    expect(() => encodeArtifactRequest(digest, new Uint8Array(4097))).toThrow(MalformedArtifactRequestError)
    // The first version's request (the hex digest as text) and truncated frames are refused by name.
    expect(() => decodeArtifactRequest(new TextEncoder().encode(digest + '\n'))).toThrow(MalformedArtifactRequestError)
    const good = encodeArtifactRequest(digest, chain)
    expect(() => decodeArtifactRequest(good.subarray(0, good.length - 1))).toThrow(MalformedArtifactRequestError)
    const huge = good.slice()
    new DataView(huge.buffer).setUint16(1, 0xffff)
    expect(() => decodeArtifactRequest(huge)).toThrow(MalformedArtifactRequestError)
  })

  it('penalties expire and stay bounded', () => {
    const clock = new ManualClock()
    const p = new ProviderPenalties({ clock, penaltyMs: 1000, maxEntries: 2 })
    p.add('a', 'ArtifactStalledError')
    p.add('b', 'x')
    p.add('c', 'y')
    expect([p.has('a'), p.has('b'), p.has('c'), p.evicted]).toEqual([false, true, true, 1])
    clock.advance(1000)
    expect(p.has('b')).toBe(false)
    expect(p.size).toBe(1)
  })
})
