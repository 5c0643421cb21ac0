// Subscriptions a node keeps of each peer. gossipsub bounds the topics map per peer (each
// subscription charged its topic's length plus 1,024 bytes, a budget per peer): a subscription past
// the budget is dropped in silence, and the node then never forwards that topic to the peer.
// Per-cell dissemination subscribes one topic per followed cell, up to `maxFollowedCells` (1,024);
// clients follow every cell with a release. Real Mesh nodes in per-cell mode over TCP on 127.0.0.1,
// and a plain libp2p peer that subscribes to made-up topics.
import { afterEach, describe, expect, it } from 'vitest'
import { generateAuthority } from '../../core/identity/index.ts'
import { cellTopic, DEFAULT_MAX_FOLLOWED_CELLS, LIMITS } from '../../core/fleet/records.ts'
import { FLEET_GOSSIPSUB_OPTIONS } from '../../core/fleet/gossip-score.ts'
import { until } from '../integration/fleet-links.ts'
import { gossipPeer, grantedMesh } from './gossip-peers.ts'

interface Subscribers { getSubscribers: (topic: string) => Array<{ toString: () => string }> }

describe('gossip subscriptions a node keeps of a peer', () => {
  const stops: Array<() => Promise<void>> = []
  afterEach(async () => { for (const s of stops.reverse()) await s().catch(() => {}); stops.length = 0 })

  it(`knows a client following ${DEFAULT_MAX_FOLLOWED_CELLS} cells of the longest names as a subscriber of every one; a stranger's made-up topics stay within its budget`, async () => {
    const authority = await generateAuthority()
    const node = await grantedMesh(authority, { init: { dissemination: 'per-cell' } })
    stops.push(async () => { await node.stop() })
    const address = node.libp2p.getMultiaddrs()[0]!.toString()
    const client = await grantedMesh(authority, { full: false, bootstrap: [address], init: { dissemination: 'per-cell' } })
    stops.push(async () => { await client.stop() })
    const clientId = client.libp2p.peerId.toString()
    const pubsub = node.libp2p.services.pubsub as unknown as Subscribers
    const subscribed = (topic: string, peer: string): boolean => pubsub.getSubscribers(topic).some(p => p.toString() === peer)

    const cells = Array.from({ length: DEFAULT_MAX_FOLLOWED_CELLS }, (_, i) => `c${String(i).padStart(4, '0')}-`.padEnd(LIMITS.idChars, 'x'))
    for (const cell of cells) client.gossip.follow(cell)
    expect(client.gossip.followed().length).toBe(DEFAULT_MAX_FOLLOWED_CELLS)
    const known = (): number => cells.filter(c => subscribed(cellTopic(c), clientId)).length
    // The subscriptions arrive in order: the last one known means every one was read.
    await until(() => known() === cells.length, () => `the node knows the client as a subscriber of ${known()} of ${cells.length} cell topics`, 20_000)

    // A stranger subscribing to 5,000 made-up topics: the node keeps at most its budget of them.
    const stranger = await gossipPeer()
    stops.push(async () => { await stranger.stop() })
    const strangerId = stranger.peerId.toString()
    const junk = Array.from({ length: 5_000 }, (_, i) => `/junk/${i}`)
    for (const t of junk) stranger.services.pubsub.subscribe(t)
    await stranger.dial(node.libp2p.getMultiaddrs()[0]!)
    // gossipsub reads subscriptions in order and charges each its length plus 1,024 bytes: the ones
    // kept are the longest prefix within the budget.
    let most = 0
    for (let used = 0; most < junk.length && used + 1024 + junk[most]!.length <= FLEET_GOSSIPSUB_OPTIONS.maxTopicBytesPerPeer; most++) used += 1024 + junk[most]!.length
    expect(most).toBeLessThan(junk.length)
    await until(() => subscribed(junk[most - 1]!, strangerId), () => `the stranger's subscriptions never arrived (${junk.filter(t => subscribed(t, strangerId)).length} known)`, 20_000)
    const kept = junk.filter(t => subscribed(t, strangerId)).length
    console.log(`SUBSCRIPTIONS: a client following ${cells.length} cells of ${LIMITS.idChars}-character names is a known subscriber of all ${known()}; a stranger subscribing to ${junk.length} made-up topics has ${kept} kept (budget ${FLEET_GOSSIPSUB_OPTIONS.maxTopicBytesPerPeer} bytes, 1,024 + its length per topic)`)
    expect(kept).toBe(most)
  }, 90_000)
})
