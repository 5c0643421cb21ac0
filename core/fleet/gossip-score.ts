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
import { cellTopic, DEFAULT_MAX_FOLLOWED_CELLS, FLEET_RELEASE_TOPIC, FLEET_TOPIC, LIMITS, MEMBERS_TOPIC } from './records.ts'

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
 * gossipsub `scoreParams` for the mesh, the application-specific score from `scoring.appScore`. A
 * fleet member's is `MEMBER_SCORE` (+20), so the odd record of theirs this node rejects (a heartbeat that
 * arrived before its release, a record of an authority this node does not trust) never turns their
 * score negative, which would prune them from the mesh; a stranger starts at 0 and a flood of
 * rejected records sinks it.
 *
 * Members before guests: the topic part of a score is capped at `topicScoreCap` (10), so no guest (a
 * tab, a CLI client, or throwaway keys) scores as high as a member however many first deliveries it
 * makes; gossipsub keeps the best `Dscore` (4) peers by score when it trims a mesh. And a mesh is
 * full at `Dhi` (12): from then on it refuses every inbound GRAFT whatever the score and backs the
 * peer off (gossipsub: a minute), so guests that grafted first kept every member that dialed the node out of
 * its mesh (24 black-hole guests in test/reliability/gossip-eclipse.test.ts: 0 members of 12 after
 * 30 s, the node relaying nothing to the fleet). Hence `GuestScoring`: at most `MESH_GUEST_PLACES`
 * anonymous guests score 0, the others −1 (a negative score keeps a peer out of every mesh; it still
 * gets gossip and flood-published records, above the gossip and publish thresholds).
 */
export function fleetScoreParams (scoring: Pick<GuestScoring, 'appScore'>): typeof FLEET_SCORE_PARAMS & { appSpecificScore: (peer: string) => number, appSpecificWeight: number } {
  return { ...FLEET_SCORE_PARAMS, appSpecificScore: (peer) => scoring.appScore(peer), appSpecificWeight: MEMBER_SCORE }
}

/** The application-specific score of a fleet member: above any guest's (topic scores are capped at 10). */
export const MEMBER_SCORE = 20
/** Anonymous guests that may be in this node's gossip meshes at once. */
export const MESH_GUEST_PLACES = 6

export interface GuestScoringInit {
  /** The view holds a granted node record of the peer. */
  isMember: (peer: string) => boolean
  /** The peer proved a grant from an authority this node trusts (a caller, a joining node). */
  isVouched?: (peer: string) => boolean
  /** The peer has an open connection to this node. */
  isConnected: (peer: string) => boolean
  /** Default MESH_GUEST_PLACES. */
  places?: number
  /** The clock (ms) that spaces the search for places freed; default Date.now. */
  now?: () => number
}

/**
 * The application-specific score of each peer (before `MEMBER_SCORE` weighs it): 1 for a member,
 * 0 for a guest vouched for by a trusted grant (bounded by the grants an authority issued) and for
 * the first `places` anonymous guests connected (first come, a place is freed when its guest leaves,
 * becomes a member or is vouched for), −0.05 (−1 weighed) for every other anonymous guest.
 * gossipsub reads it at most once a heartbeat per peer (its score cache); while every place is held,
 * the holders are checked for leaving at most once a second, not once per waiting guest.
 */
export class GuestScoring {
  readonly places: number
  private readonly init: GuestScoringInit
  /** Anonymous guests holding a place, oldest first. */
  private readonly placed = new Set<string>()
  private checkedMs = -Infinity

  constructor (init: GuestScoringInit) {
    this.init = init
    this.places = init.places ?? MESH_GUEST_PLACES
    if (!Number.isInteger(this.places) || this.places < 0) throw new RangeError(`mesh guest places must be a whole number ≥ 0, not ${this.places}`)
  }

  appScore (peer: string): number {
    if (this.init.isMember(peer)) { this.placed.delete(peer); return 1 }
    if (this.init.isVouched?.(peer) === true) { this.placed.delete(peer); return 0 }
    if (this.placed.has(peer)) return 0
    const now = this.init.now?.() ?? Date.now()
    if (this.placed.size >= this.places && now - this.checkedMs >= 1_000) {
      this.checkedMs = now
      for (const p of this.placed) if (!this.init.isConnected(p) || this.init.isMember(p) || this.init.isVouched?.(p) === true) this.placed.delete(p)
    }
    if (this.placed.size < this.places && this.init.isConnected(peer)) { this.placed.add(peer); return 0 }
    return -0.05
  }

  /** Anonymous guests holding a place now (one that left still holds it until a waiting guest needs it, not counted here). */
  placedGuests (): string[] { return [...this.placed].filter(p => this.init.isConnected(p)) }
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

/**
 * gossipsub `scoreThresholds`: its defaults for gossip, publish and graylist; peer exchange and
 * opportunistic grafting at the member score.
 */
export const FLEET_SCORE_THRESHOLDS = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  // Peers to connect to are taken only from members' PRUNEs.
  acceptPXThreshold: MEMBER_SCORE,
  opportunisticGraftThreshold: MEMBER_SCORE
} as const

/**
 * The subscriptions of one peer gossipsub keeps (it charges each its topic's length plus 1,024 bytes
 * and drops the rest in silence, and then never forwards that topic to the peer): room for the three
 * fleet topics and `DEFAULT_MAX_FOLLOWED_CELLS` cell topics of the longest cell names. Its default of
 * 1 MiB held 991 cell topics beside the fleet topics for 20-character names and 899 for the longest,
 * so a client or node following more cells than that never got their records through the mesh
 * (test/reliability/gossip-subscriptions.test.ts).
 */
function topicBytesPerPeer (): number {
  const longest = Math.max(FLEET_TOPIC.length, FLEET_RELEASE_TOPIC.length, MEMBERS_TOPIC.length, cellTopic('x'.repeat(LIMITS.idChars)).length)
  return (3 + DEFAULT_MAX_FOLLOWED_CELLS) * (1024 + longest)
}

/**
 * gossipsub options of the mesh beside its scoring. A peer refused or pruned from a mesh is backed
 * off on both sides for `pruneBackoff` (gossipsub: a minute). A node that joins under attack can
 * graft before its record reaches the node it dialed, while the guest places are full: it is
 * refused as a stranger, and took a minute to be let in; now 10 s. Members usually come in through
 * the side that dialed (gossipsub keeps two peers of connections it dialed in each mesh); as a
 * fallback, a mesh whose median is a guest takes members in by opportunistic grafting every 5
 * heartbeats (gossipsub: 60), while a mesh whose median is a member (score ≥ 20) is left alone.
 */
export const FLEET_GOSSIPSUB_OPTIONS = {
  maxTopicBytesPerPeer: topicBytesPerPeer(),
  pruneBackoff: 10_000,
  // A GRAFT within 5 s of a PRUNE costs the extra flood penalty (gossipsub: 10 s of its minute).
  graftFloodThreshold: 5_000,
  opportunisticGraftTicks: 5
} as const
