// Gossipsub peer scoring of the fleet topics. Every record on them is checked by the FleetView
// (origin signature, grant, bounds) in the topic validator, which rejects what fails: those rejects
// count as invalid message deliveries (P4), whose penalty grows with the square of their decaying
// count. A peer flooding records nobody trusts is graylisted within a few of them a second (its RPCs
// are then dropped unread, before any signature check) and pruned from the mesh; the penalty decays
// by half a second, so an honest peer relaying the odd record this node refuses (one a second or so,
// e.g. of an authority it does not trust) stays far above the thresholds.
//
// Not scored: mesh message delivery rates (P3/P3b). Fleet traffic is one heartbeat a second per node,
// duplicates are common and a quiet fleet is normal; the deficit penalty would graylist honest peers.
// IP colocation (P6) stays off (see core/mesh: one machine, a NAT or containers share an address).
//
// Per-cell dissemination (docs/biology.md, "Scale"): the members topic is scored like the fleet topic
// from construction. Cell topics (`/cell/c/<cell>/1`) cannot be listed at construction: gossipsub 17
// takes `scoreParams.topics` once (it copies the map and validates it in its constructor, and scores
// only topics the map names). Its copy stays reachable and live as `GossipSub.score.params.topics`
// (read on every score computation), so FleetGossip adds a cell topic's parameters there when it
// starts following the cell (`scoreTopic`) and removes them when it stops (`unscoreTopic`). A pubsub
// without that field (a fake in unit tests) leaves cell topics unscored.
import { FLEET_RELEASE_TOPIC, FLEET_TOPIC, MEMBERS_TOPIC } from './records.ts'

/** Topic score parameters of one fleet topic (gossipsub TopicScoreParams). */
export const FLEET_TOPIC_SCORE = {
  topicWeight: 1,
  // A little credit for time in the mesh and first deliveries (capped: topicScoreCap).
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1_000,
  timeInMeshCap: 3_600,
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.5,
  firstMessageDeliveriesCap: 20,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 100,
  meshMessageDeliveriesThreshold: 1,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5_000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  // -1 × count²: 9 rejected messages in flight reach the graylist (-80); halves every second.
  invalidMessageDeliveriesWeight: -1,
  invalidMessageDeliveriesDecay: 0.5
} as const

/**
 * gossipsub `scoreParams` for the mesh. `isFleetNode(peer)`: the view holds a granted node record of
 * that peer. Such peers get +10 (the application-specific score), so the odd record of theirs this
 * node rejects (a heartbeat that arrived before its release, a record of an authority this node does
 * not trust) never turns their score negative, which would prune them from the mesh; a stranger
 * starts at 0 and a flood of rejected records sinks it.
 */
export function fleetScoreParams (isFleetNode: (peer: string) => boolean): typeof FLEET_SCORE_PARAMS & { appSpecificScore: (peer: string) => number, appSpecificWeight: number } {
  return { ...FLEET_SCORE_PARAMS, appSpecificScore: (peer) => isFleetNode(peer) ? 1 : 0, appSpecificWeight: 10 }
}

/** The static part of the mesh's `scoreParams` (see `fleetScoreParams`). */
export const FLEET_SCORE_PARAMS = {
  IPColocationFactorWeight: 0,
  topicScoreCap: 10,
  // Scores of departed peers are kept (gossipsub's default, 1 h): a graylisted flooder that
  // reconnects with the same peer id is still graylisted.
  topics: { [FLEET_TOPIC]: FLEET_TOPIC_SCORE, [FLEET_RELEASE_TOPIC]: FLEET_TOPIC_SCORE, [MEMBERS_TOPIC]: FLEET_TOPIC_SCORE }
}

/** The part of gossipsub 17's `GossipSub` whose topic score parameters are adjusted at run time. */
export interface TopicScoring {
  score?: { params: { topics: Record<string, unknown> } }
}

/**
 * Scores `topic` with the fleet topics' parameters from now on (a cell topic this node starts to
 * follow); false when the pubsub exposes no live score parameters. Parameters already set are kept.
 */
export function scoreTopic (pubsub: TopicScoring, topic: string): boolean {
  const topics = pubsub.score?.params?.topics
  if (topics == null || typeof topics !== 'object') return false
  if (!(topic in topics)) topics[topic] = { ...FLEET_TOPIC_SCORE }
  return true
}

/** Stops scoring a cell topic this node no longer follows (the fleet, release and members topics stay). */
export function unscoreTopic (pubsub: TopicScoring, topic: string): void {
  const topics = pubsub.score?.params?.topics
  if (topics == null || typeof topics !== 'object') return
  if (topic === FLEET_TOPIC || topic === FLEET_RELEASE_TOPIC || topic === MEMBERS_TOPIC) return
  // eslint-disable-next-line @typescript-eslint/no-dynamic-delete
  delete topics[topic]
}

/** gossipsub `scoreThresholds` (its defaults, stated so tests and docs can name them). */
export const FLEET_SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 20
} as const
