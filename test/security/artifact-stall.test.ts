// Attack: an artifact provider that sends one byte and goes quiet. Before this fix a fetch with a 2 s
// deadline was still pending after 15 s (the deadline was only checked when a chunk arrived), and the
// next fetch asked the same staller first. Checked against the old artifact-exchange.ts (git stash):
// the first test fails at `within` (no rejection after 6 s), the second and third likewise hang on the
// staller, the fourth sees no reset from the server within 5 s.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import type { Stream } from '@libp2p/interface'
import {
  ARTIFACT_PROTOCOL, ArtifactStalledError, ArtifactTimeoutError, ProviderPenalties, findAndFetchArtifact, serveArtifacts
} from '../../node-host/artifacts/artifact-exchange.ts'
import { sha256Hex } from '../../core/identity/index.ts'
import { authority, grantPeer, within, type GrantPeer } from './grant-peers.ts'

describe('artifact fetch against a stalling provider', () => {
  const peers: GrantPeer[] = []
  let staller: GrantPeer
  let honest: GrantPeer
  let client: GrantPeer
  const artifact = new TextEncoder().encode('export default { ok: true }'.repeat(1000))
  let digest = ''
  /** Streams the staller received, so a test can tell whether a fetch contacted it. */
  let stallerStreams = 0
  const held: Stream[] = []

  beforeAll(async () => {
    const fleet = await authority()
    digest = await sha256Hex(artifact)
    staller = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    honest = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    client = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    peers.push(staller, honest, client)
    // The staller answers "found", sends nothing more and never closes.
    await staller.node.handle(ARTIFACT_PROTOCOL, (stream: Stream) => {
      stallerStreams++
      held.push(stream)
      stream.send(Uint8Array.of(0))
    })
    await serveArtifacts(honest.node, { get: async (d) => d === digest ? artifact : undefined }, { gate: honest.gate })
    for (const p of [staller, honest]) await client.node.peerStore.patch(p.node.peerId, { multiaddrs: p.node.getMultiaddrs() })
  })
  afterAll(async () => { await Promise.all(peers.map(async p => await p.node.stop())) })

  const penalties = new ProviderPenalties()

  it('a 2 s deadline fires on silence: the fetch rejects by name before 3 s', async () => {
    const startedMs = Date.now()
    const err = await within(findAndFetchArtifact(client.node, digest, {
      signal: AbortSignal.timeout(2_000), hint: [staller.node.peerId], gate: client.gate, penalties
    }).then(() => undefined, (e: unknown) => e), 6_000, 'fetch from the staller')
    const elapsedMs = Date.now() - startedMs
    expect(err instanceof ArtifactTimeoutError || err instanceof ArtifactStalledError).toBe(true)
    expect(elapsedMs).toBeLessThan(3_000)
    expect(stallerStreams).toBe(1)
    expect(penalties.has(staller.node.peerId.toString())).toBe(true)
  })

  it('the next fetch does not contact the staller first', async () => {
    const before = stallerStreams
    const bytes = await within(findAndFetchArtifact(client.node, digest, {
      signal: AbortSignal.timeout(5_000), hint: [staller.node.peerId, honest.node.peerId], gate: client.gate, penalties
    }), 6_000, 'fetch with the staller penalised')
    expect(bytes).toEqual(artifact)
    expect(stallerStreams).toBe(before)
  })

  it('within one fetch, a staller is abandoned after idleMs of silence and the next provider answers', async () => {
    const before = stallerStreams
    const fresh = new ProviderPenalties()
    const startedMs = Date.now()
    const bytes = await within(findAndFetchArtifact(client.node, digest, {
      signal: AbortSignal.timeout(8_000), idleMs: 500, hint: [staller.node.peerId, honest.node.peerId], gate: client.gate, penalties: fresh
    }), 9_000, 'fetch past the staller')
    expect(bytes).toEqual(artifact)
    expect(stallerStreams).toBe(before + 1)
    expect(Date.now() - startedMs).toBeLessThan(3_000)
    expect(fresh.reason(staller.node.peerId.toString())).toBe('ArtifactStalledError')
  })

  it('the server drops a requester that never sends its request', async () => {
    await client.node.peerStore.patch(honest.node.peerId, { multiaddrs: honest.node.getMultiaddrs() })
    const stream = await client.node.dialProtocol(honest.node.peerId, ARTIFACT_PROTOCOL)
    const closed = new Promise<void>((resolve) => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
    await within(closed, 5_000, 'server reset of a silent request')
    expect(stream.status).not.toBe('open')
  })
})
