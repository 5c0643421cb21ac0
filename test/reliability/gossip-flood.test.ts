// EXHAUST, gossip part (issue 14 point 5): a peer floods the fleet topic with valid-looking records
// (well-formed node records, correctly signed by its own key, StrictSign messages) but holds no
// grant from an authority the fleet trusts, so the FleetView rejects them. With the mesh's peer
// scoring (core/fleet/gossip-score.ts) its score must fall below the graylist threshold, it must
// be pruned from the node's mesh of the topic, and the node must stop validating its messages (the
// graylist drops them unread), while an honest granted peer keeps a non-negative score and stays.
// Real Mesh nodes and a plain libp2p attacker over TCP on 127.0.0.1.
import { afterAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority } from '../../core/identity/index.ts'
import { encodeBundles, encodeEnvelope } from '../../core/fleet/codec.ts'
import { signRecord } from '../../core/fleet/sign.ts'
import { makeNodeRecord } from '../../core/fleet/testing.ts'
import { FLEET_TOPIC } from '../../core/fleet/records.ts'
import { FLEET_SCORE_THRESHOLDS } from '../../core/fleet/gossip-score.ts'
import { until } from '../integration/fleet-links.ts'
import { gossipPeer, grantedMesh } from './gossip-peers.ts'

interface ScoredPubsub { getMeshPeers: (topic: string) => string[], getScore: (peer: string) => number }

const FLOOD = Number(process.env.CELL_GOSSIP_FLOOD ?? 5_000)

describe('EXHAUST: gossip flood of valid-looking records', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { for (const s of stops.reverse()) await s().catch(() => {}) })

  it(`graylists and prunes a peer flooding ${FLOOD} untrusted records; an honest peer stays`, async () => {
    const authority = await generateAuthority()
    const server = await grantedMesh(authority)
    stops.push(async () => { await server.stop() })
    const address = server.libp2p.getMultiaddrs()[0]
    const honest = await grantedMesh(authority, { listen: false })
    stops.push(async () => { await honest.stop() })
    await honest.libp2p.dial(address)

    const attackerKey = await generateKeyPair('Ed25519')
    const attackerId = peerIdFromPrivateKey(attackerKey).toString()
    const attacker = await gossipPeer({ privateKey: attackerKey })
    stops.push(async () => { await attacker.stop() })
    attacker.services.pubsub.subscribe(FLEET_TOPIC)
    await attacker.dial(address)

    // The node's gossipsub, through the two methods of the implementation this test reads.
    const pubsub = server.libp2p.services.pubsub as unknown as ScoredPubsub
    const honestId = honest.libp2p.peerId.toString()
    const inMesh = (id: string): boolean => pubsub.getMeshPeers(FLEET_TOPIC).includes(id)
    await until(() => inMesh(attackerId) && inMesh(honestId), () => `mesh of ${FLEET_TOPIC}: ${pubsub.getMeshPeers(FLEET_TOPIC).join(', ')}`, 15_000)
    const scoreBefore = pubsub.getScore(attackerId)
    const validatedBefore = server.view.stats().dropped.untrusted
    await until(() => server.view.node(honestId) !== undefined, () => 'the honest peer\'s record never reached the node', 10_000)

    // The flood: each message one well-formed, correctly signed node record of the attacker's own.
    let sent = 0
    const started = Date.now()
    for (let seq = 1; seq <= FLOOD; seq++) {
      const env = await signRecord(attackerKey, 'node', makeNodeRecord(attackerId, { seq, sentMs: Date.now(), startedMs: started }))
      for (const frame of encodeBundles([{ bytes: encodeEnvelope(env), ageMs: 0 }])) {
        await attacker.services.pubsub.publish(FLEET_TOPIC, frame).catch(() => {})
        sent++
      }
      if (seq % 100 === 0) await new Promise(resolve => setTimeout(resolve, 10))
    }
    await until(() => pubsub.getScore(attackerId) < FLEET_SCORE_THRESHOLDS.graylistThreshold && !inMesh(attackerId),
      () => `attacker score ${pubsub.getScore(attackerId)}, in mesh ${inMesh(attackerId)}`, 10_000)
    const scoreAfter = pubsub.getScore(attackerId)
    const validated = server.view.stats().dropped.untrusted - validatedBefore
    // The honest peer is unharmed and still in the mesh.
    await until(() => inMesh(honestId), () => `honest peer not in mesh; score ${pubsub.getScore(honestId)}`, 5_000)
    const honestScore = pubsub.getScore(honestId)
    console.log(`GOSSIP-FLOOD: ${sent} messages in ${Date.now() - started} ms; attacker score ${scoreBefore.toFixed(1)} -> ${scoreAfter.toFixed(1)} ` +
      `(graylist ${FLEET_SCORE_THRESHOLDS.graylistThreshold}), pruned from the mesh; the node validated ${validated} of them (the rest dropped unread); honest peer score ${honestScore.toFixed(2)}, in mesh`)
    expect(scoreAfter).toBeLessThan(FLEET_SCORE_THRESHOLDS.graylistThreshold)
    expect(validated).toBeGreaterThan(0)
    expect(validated).toBeLessThan(sent / 2)
    expect(honestScore).toBeGreaterThanOrEqual(0)
    // Its records never entered the view.
    expect(server.view.node(attackerId)).toBeUndefined()
  }, 90_000)
})
