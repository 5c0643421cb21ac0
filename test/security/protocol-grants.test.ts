// Attack: `/cell/fleet-sync/1` and `/cell/artifact/1` served any peer that dialled (the fleet's full
// snapshot and every artifact to a fresh key). Now the request carries the requester's chain and the
// server admits only a grant (any role) from an authority it trusts, whose leaf is the Noise peer.
// Checked against the old code (git stash of sync.ts / artifact-exchange.ts): the old fleet-sync
// served the grant-less and the untrusted peer (the pulls resolved with accepted: 1) and the old
// artifact server answered them with the artifact, so every "refused" expectation below failed.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import type { Stream } from '@libp2p/interface'
import { fleetSync, type FleetSync } from '../../core/fleet/sync.ts'
import { FleetView } from '../../core/fleet/view.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { makeInstanceRecord } from '../../core/fleet/testing.ts'
import { encodeLengthPrefixed, decodeLengthPrefixed } from '../../core/fleet/framing.ts'
import { FLEET_SYNC_PROTOCOL, FLEET_WIRE_VERSION } from '../../core/fleet/records.ts'
import { PeerGrantGate } from '../../core/fleet/peer-grant.ts'
import { systemClock } from '../../core/ports.ts'
import { ManualClock } from '../../core/testing/manual-clock.ts'
import { identify } from '@libp2p/identify'
import { issueGrant } from '../../core/identity/index.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { TruncatedChainError, UnknownAuthorityError, WrongSubjectError } from '../../core/identity/index.ts'
import { serveArtifacts, fetchArtifact, artifactServeStats, type ArtifactServeStats } from '../../node-host/artifacts/artifact-exchange.ts'
import { sha256Hex, type AuthorityKey } from '../../core/identity/index.ts'
import { authority, grantPeer, within, type GrantPeer } from './grant-peers.ts'

type SyncPeer = GrantPeer & { view: FleetView, sync: FleetSync }

const peers: GrantPeer[] = []
afterAll(async () => { await Promise.all(peers.map(async p => await p.node.stop())) })

async function syncPeer (trusted: string[], grantFrom?: AuthorityKey, roles?: Array<'host' | 'caller' | 'operator'>): Promise<SyncPeer> {
  // Long heartbeats: the records must not expire while a test waits.
  const view = new FleetView({ clock: systemClock, heartbeatMs: 60_000 })
  const p = await grantPeer({
    trusted,
    grantFrom,
    roles,
    services: ({ credentials, trusted }) => ({ identify: identify(), fleetSync: fleetSync({ view, autoPull: 0, trusted, credentials, timeoutMs: 5_000 }) })
  })
  peers.push(p)
  return { ...p, view, sync: p.node.services.fleetSync as FleetSync }
}

describe('fleet-sync requires a grant from a trusted authority', () => {
  let fleet: AuthorityKey
  let rogue: AuthorityKey
  let server: SyncPeer

  beforeAll(async () => {
    fleet = await authority()
    rogue = await authority()
    server = await syncPeer([fleet.id], fleet, ['host'])
    const id = peerIdFromPrivateKey(server.key).toString()
    await server.view.apply(await signRecord(server.key, 'instance', makeInstanceRecord(id, { instanceId: 'i-1', sentMs: Date.now() })), { from: id })
    expect(server.view.instances()).toHaveLength(1)
  })

  async function pull (client: SyncPeer): Promise<unknown> {
    await client.node.dial(server.node.getMultiaddrs()[0])
    return await within(client.sync.pull(server.node.peerId).then(r => r, (e: unknown) => e), 8_000, 'pull')
  }

  it('refuses a peer without a grant, by name, and counts it', async () => {
    const stranger = await syncPeer([fleet.id])
    const before = server.sync.stats()
    expect(await pull(stranger)).toBeInstanceOf(TruncatedChainError)
    expect(stranger.view.instances()).toHaveLength(0)
    expect(server.sync.stats()).toMatchObject({ unauthorized: before.unauthorized + 1, served: before.served })
  })

  it('refuses a peer whose grant comes from an authority the server does not trust', async () => {
    const outsider = await syncPeer([rogue.id, fleet.id], rogue, ['host', 'caller', 'operator'])
    expect(await pull(outsider)).toBeInstanceOf(UnknownAuthorityError)
    expect(outsider.view.instances()).toHaveLength(0)
  })

  it('refuses a peer replaying another member\'s chain', async () => {
    const member = await syncPeer([fleet.id], fleet, ['caller'])
    const thief = await syncPeer([fleet.id])
    // The thief presents the member's (valid, trusted) chain as its own.
    const stolen = new PeerGrantGate({ trusted: new Set([fleet.id]), credentials: { authorities: () => [fleet.id], currentChain: () => member.credentials.currentChain(fleet.id) } })
    Object.defineProperty(thief.sync, 'gate', { value: stolen })
    expect(await pull(thief)).toBeInstanceOf(WrongSubjectError)
    expect(thief.view.instances()).toHaveLength(0)
  })

  it('refuses the first version\'s grant-less request', async () => {
    const raw = await grantPeer({ trusted: [] })
    peers.push(raw)
    await raw.node.dial(server.node.getMultiaddrs()[0])
    const stream: Stream = await raw.node.dialProtocol(server.node.peerId, FLEET_SYNC_PROTOCOL)
    const frames = decodeLengthPrefixed(stream, 1024)
    const first = frames.next()
    stream.send(encodeLengthPrefixed(new Uint8Array([FLEET_WIRE_VERSION, 0x20])))
    const answer = await within(first, 5_000, 'answer to a legacy request')
    expect(answer.done).toBe(false)
    expect([...(answer.value as Uint8Array)]).toEqual([FLEET_WIRE_VERSION, 0x2f, 1])
  })

  it('a refused auto-pull is retried, and succeeds once the peer holds a grant', async () => {
    const clock = new ManualClock(Date.now())
    const view = new FleetView({ clock: systemClock, heartbeatMs: 60_000 })
    const late = await grantPeer({
      trusted: [fleet.id],
      services: ({ credentials, trusted }) => ({ identify: identify(), fleetSync: fleetSync({ view, clock, autoPull: 1, trusted, credentials }) })
    })
    peers.push(late)
    const sync = late.node.services.fleetSync as FleetSync
    await late.node.dial(server.node.getMultiaddrs()[0])
    await within((async () => { while (sync.stats().pullFailures === 0) await new Promise(resolve => setImmediate(resolve)) })(), 5_000, 'the refused auto-pull')
    const now = Date.now()
    late.credentials.addGrant(await issueGrant(fleet, { subject: late.credentials.peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    await late.credentials.refresh()
    const pulled = new Promise<void>((resolve) => { sync.addEventListener('pulled', () => { resolve() }, { once: true }) })
    clock.advance(5_000)
    await within(pulled, 5_000, 'the retried auto-pull')
    expect(view.instances()).toHaveLength(1)
  })

  it('serves a peer holding a caller grant from a trusted authority', async () => {
    const caller = await syncPeer([fleet.id], fleet, ['caller'])
    expect(await pull(caller)).toMatchObject({ accepted: 1, dropped: 0 })
    expect(caller.view.instances()).toHaveLength(1)
  })

  it('tells onAdmitted of each requester the gate admits (the mesh vouches for its guest connections), never of a refused one', async () => {
    const member = await syncPeer([fleet.id], fleet, ['caller'])
    const admitted: Array<[string, number]> = []
    const gate = new PeerGrantGate({ trusted: new Set([fleet.id]), onAdmitted: (peer, verified) => { admitted.push([peer, verified.notAfterMs]) } })
    const chain = member.credentials.currentChain(fleet.id)
    await gate.check(chain, member.credentials.peerId)
    await expect(gate.check(chain, server.node.peerId.toString())).rejects.toBeInstanceOf(WrongSubjectError)
    await expect(gate.check(new Uint8Array(0), member.credentials.peerId)).rejects.toBeInstanceOf(TruncatedChainError)
    expect(admitted.map(([peer]) => peer)).toEqual([member.credentials.peerId])
    expect(admitted[0][1]).toBeGreaterThan(Date.now())
  })
})

describe('fleet-sync shows a peer without a trusted grant the public cells only', () => {
  it('sends the public cells\' records after a marker naming the refusal, and none of the private ones', async () => {
    const fleet = await authority()
    const view = new FleetView({ clock: systemClock, heartbeatMs: 60_000 })
    const server = await grantPeer({
      trusted: [fleet.id],
      grantFrom: fleet,
      roles: ['host'],
      services: ({ credentials, trusted }) => ({ identify: identify(), fleetSync: fleetSync({ view, autoPull: 0, trusted, credentials, publicCells: (cell) => cell === 'open' }) })
    })
    peers.push(server)
    const id = peerIdFromPrivateKey(server.key).toString()
    for (const cell of ['open', 'billing']) {
      await view.apply(await signRecord(server.key, 'instance', makeInstanceRecord(id, { instanceId: `i-${cell}`, cell, sentMs: Date.now() })), { from: id })
    }
    const stranger = await syncPeer([fleet.id])
    await stranger.node.dial(server.node.getMultiaddrs()[0])
    const result = await within(stranger.sync.pull(server.node.peerId), 8_000, 'public-only pull')
    expect(result).toMatchObject({ accepted: 1, publicOnly: 'TruncatedChainError' })
    expect(stranger.view.instances().map(i => i.cell)).toEqual(['open'])
    expect((server.node.services.fleetSync as FleetSync).stats().unauthorized).toBe(1)
    // A member gets both.
    const member = await syncPeer([fleet.id], fleet, ['caller'])
    await member.node.dial(server.node.getMultiaddrs()[0])
    const full = await within(member.sync.pull(server.node.peerId), 8_000, 'full pull')
    expect(full.publicOnly).toBeUndefined()
    expect(member.view.instances().map(i => i.cell).sort()).toEqual(['billing', 'open'])
  })
})

describe('/cell/artifact/1 requires a grant from a trusted authority', () => {
  let fleet: AuthorityKey
  let provider: GrantPeer
  let stats: ArtifactServeStats
  const artifact = new TextEncoder().encode('export default { secret: 42 }')
  let digest = ''

  beforeAll(async () => {
    fleet = await authority()
    digest = await sha256Hex(artifact)
    provider = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['host'] })
    peers.push(provider)
    stats = artifactServeStats()
    await serveArtifacts(provider.node, { get: async (d) => d === digest ? artifact : undefined }, { gate: provider.gate, stats })
  })

  async function fetchAs (client: GrantPeer): Promise<unknown> {
    await client.node.peerStore.patch(provider.node.peerId, { multiaddrs: provider.node.getMultiaddrs() })
    return await within(fetchArtifact(client.node, provider.node.peerId, digest, { gate: client.gate, timeoutMs: 5_000 }).then(r => r, (e: unknown) => e), 8_000, 'fetch')
  }

  it('refuses a peer without a grant and one with an untrusted grant, by name, and counts them', async () => {
    const stranger = await grantPeer({ trusted: [fleet.id] })
    const rogue = await authority()
    const outsider = await grantPeer({ trusted: [rogue.id], grantFrom: rogue, roles: ['host', 'caller', 'operator'] })
    peers.push(stranger, outsider)
    expect(await fetchAs(stranger)).toBeInstanceOf(TruncatedChainError)
    expect(await fetchAs(outsider)).toBeInstanceOf(UnknownAuthorityError)
    expect(stats).toMatchObject({ refused: 2, served: 0 })
    expect(provider.gate.stats().refused).toBe(2)
  })

  it('serves a peer holding a caller grant from a trusted authority', async () => {
    const caller = await grantPeer({ trusted: [fleet.id], grantFrom: fleet, roles: ['caller'] })
    peers.push(caller)
    expect(await fetchAs(caller)).toEqual(artifact)
    expect(stats.served).toBe(1)
  })
})
