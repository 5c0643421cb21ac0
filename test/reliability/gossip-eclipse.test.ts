// ECLIPSE, gossip part: guests (peers holding no node record in the view: a light peer, a CLI
// client, or an attacker with throwaway keys) may subscribe to the fleet topic and graft into a
// node's gossipsub mesh. Attackers that graft first and then forward nothing (a black hole) try to
// fill the node's mesh so that records relayed by fleet members no longer reach it.
//
// Real Mesh nodes (the target T and granted members) and plain libp2p attackers over TCP on
// 127.0.0.1. The attackers connect, subscribe and fill T's mesh of the fleet topic before any
// member arrives; then members dial T. Measured: how many members T's mesh holds, and whether a
// record that only a member relays (a member not connected to T) reaches T's view.
import { afterEach, describe, expect, it } from 'vitest'
import { TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import type { Libp2p } from 'libp2p'
import { generateAuthority } from '../../core/identity/index.ts'
import { FLEET_TOPIC } from '../../core/fleet/records.ts'
import { FLEET_SCORE_THRESHOLDS, MESH_GUEST_PLACES } from '../../core/fleet/gossip-score.ts'
import { until } from '../integration/fleet-links.ts'
import { gossipPeer, grantedMesh } from './gossip-peers.ts'

interface MeshPubsub { getMeshPeers: (topic: string) => string[], getScore: (peer: string) => number }

const ATTACKERS = Number(process.env.CELL_ECLIPSE_ATTACKERS ?? 24)

/** A gossipsub peer that subscribes to the fleet topic and forwards nothing it receives. */
async function blackHole (): Promise<Libp2p<{ pubsub: GossipSub }>> {
  const node = await gossipPeer()
  node.services.pubsub.topicValidators.set(FLEET_TOPIC, () => TopicValidatorResult.Ignore)
  node.services.pubsub.subscribe(FLEET_TOPIC)
  return node
}

describe('ECLIPSE: guests that fill a node\'s gossip mesh and forward nothing', () => {
  const stops: Array<() => Promise<void>> = []
  afterEach(async () => { for (const s of stops.reverse()) await s().catch(() => {}); stops.length = 0 })

  it(`${ATTACKERS} black-hole guests grafted first: members still enter the mesh, relayed records arrive, a guest left out still gets them`, async () => {
    const authority = await generateAuthority()
    // The attackers share 127.0.0.1 with the members (fewer than the 32 guests one host may keep):
    // libp2p's 5 inbound connections per host per second would only slow them down.
    const target = await grantedMesh(authority, { init: { libp2p: { connectionManager: { inboundConnectionThreshold: 1_000 } } } })
    stops.push(async () => { await target.stop() })
    const address = target.libp2p.getMultiaddrs()[0]!
    const pubsub = target.libp2p.services.pubsub as unknown as MeshPubsub
    const mesh = (): string[] => pubsub.getMeshPeers(FLEET_TOPIC)

    const attackers = await Promise.all(Array.from({ length: ATTACKERS }, async () => await blackHole()))
    for (const a of attackers) stops.push(async () => { await a.stop() })
    const dialed = Date.now()
    await Promise.all(attackers.map(async a => await a.dial(address)))
    const attackerIds = new Set(attackers.map(a => a.peerId.toString()))
    let mostGuests = 0
    const guestsInMesh = (): number => {
      const n = mesh().filter(id => attackerIds.has(id)).length
      mostGuests = Math.max(mostGuests, n)
      return n
    }
    await until(() => guestsInMesh() >= MESH_GUEST_PLACES, () => `mesh of ${FLEET_TOPIC}: ${mesh().length} peers`, 15_000)
    const filledMs = Date.now() - dialed

    // An honest guest that came last (a tab, say): no place is left for it in the mesh.
    const tab = await gossipPeer()
    stops.push(async () => { await tab.stop() })
    const authors = new Map<string, number>()
    tab.services.pubsub.addEventListener('message', (evt) => { if (evt.detail.type === 'signed' && !authors.has(evt.detail.from.toString())) authors.set(evt.detail.from.toString(), Date.now()) })
    tab.services.pubsub.subscribe(FLEET_TOPIC)
    await tab.dial(address)

    // Members: two dial the target; a third knows only the first, so its records reach the target
    // (and the tab) only through members.
    const m1 = await grantedMesh(authority, { bootstrap: [address.toString()] })
    stops.push(async () => { await m1.stop() })
    const m2 = await grantedMesh(authority, { bootstrap: [address.toString()] })
    stops.push(async () => { await m2.stop() })
    const joined = Date.now()
    const m3 = await grantedMesh(authority, { bootstrap: [m1.libp2p.getMultiaddrs()[0]!.toString()] })
    stops.push(async () => { await m3.stop() })
    const m3Id = m3.libp2p.peerId.toString()
    const members = [m1, m2, m3].map(m => m.libp2p.peerId.toString())
    const membersInMesh = (): number => mesh().filter(id => members.includes(id)).length
    const describeMesh = (): string => `members in the mesh: ${membersInMesh()} of ${mesh().length}: ${mesh().map(id => attackerIds.has(id) ? 'A' : id.slice(-6)).join(' ')}`
    await until(() => { guestsInMesh(); return target.view.node(m3Id) !== undefined }, () => 'the relayed member\'s record never reached the target', 20_000)
    const relayedMs = Date.now() - joined
    await until(() => { guestsInMesh(); return membersInMesh() >= 2 }, describeMesh, 30_000)
    const membersMs = Date.now() - joined
    await until(() => authors.has(m3Id), () => `the tab got records of ${authors.size} authors, none of the relayed member`, 15_000)
    const tabMs = authors.get(m3Id)! - joined
    const tabId = tab.peerId.toString()
    console.log(`ECLIPSE: ${ATTACKERS} black-hole guests took ${guestsInMesh()} places in the mesh (${mesh().length} peers at the end) within ${filledMs} ms of their dials, at most ${mostGuests} at any check; ` +
      `after members started: the relayed record at the target in ${relayedMs} ms, ${membersInMesh()} members in its mesh in ${membersMs} ms, the relayed record at the last guest (not in the mesh: ${!mesh().includes(tabId)}) in ${tabMs} ms; ` +
      `scores: members ${members.map(id => pubsub.getScore(id).toFixed(1)).join('/')}, guests in the mesh ${mesh().filter(id => attackerIds.has(id)).slice(0, 2).map(id => pubsub.getScore(id).toFixed(1)).join('/')}, the last guest ${pubsub.getScore(tabId).toFixed(1)}`)
    expect(membersInMesh()).toBeGreaterThanOrEqual(2)
    expect(mostGuests).toBeLessThanOrEqual(MESH_GUEST_PLACES)
    expect(target.guestScoring.placedGuests().length).toBe(MESH_GUEST_PLACES)
    expect(pubsub.getScore(tabId)).toBeLessThan(0)
    expect(pubsub.getScore(tabId)).toBeGreaterThan(FLEET_SCORE_THRESHOLDS.gossipThreshold)
  }, 120_000)
})
