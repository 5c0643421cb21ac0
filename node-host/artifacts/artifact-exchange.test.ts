// Two real libp2p peers on loopback: artifacts fetched by digest are verified, forged bytes and
// unknown digests are refused by name.
import { describe, it, expect, afterAll } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { serveArtifacts, fetchArtifact, ArtifactDigestMismatchError, ArtifactNotFoundError } from './artifact-exchange.ts'
import { sha256Hex } from '../../core/identity/index.ts'

async function peer (): Promise<Libp2p> {
  return await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
}

describe('artifact exchange', () => {
  const peers: Libp2p[] = []
  afterAll(async () => { await Promise.all(peers.map(async p => await p.stop())) })

  it('fetches and verifies, refuses forged bytes and unknown digests', async () => {
    const honest = await peer()
    const forger = await peer()
    const client = await peer()
    peers.push(honest, forger, client)
    const artifact = new TextEncoder().encode('export default {}'.repeat(20_000))
    const digest = await sha256Hex(artifact)
    await serveArtifacts(honest, { get: async (d) => d === digest ? artifact : undefined })
    // The forger answers every digest with other bytes.
    await serveArtifacts(forger, { get: async () => new TextEncoder().encode('globalThis.evil = true') })
    await client.peerStore.patch(honest.peerId, { multiaddrs: honest.getMultiaddrs() })
    await client.peerStore.patch(forger.peerId, { multiaddrs: forger.getMultiaddrs() })

    const fetched = await fetchArtifact(client, honest.peerId, digest)
    expect(fetched).toEqual(artifact)
    await expect(fetchArtifact(client, forger.peerId, digest)).rejects.toBeInstanceOf(ArtifactDigestMismatchError)
    await expect(fetchArtifact(client, honest.peerId, 'a'.repeat(64))).rejects.toBeInstanceOf(ArtifactNotFoundError)
  })
})
