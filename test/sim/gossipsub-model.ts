// A gossipsub-faithful dissemination model for fleets of thousands of nodes. It follows what
// @libp2p/gossipsub 17 does with the options core/mesh passes (its defaults plus StrictSign):
//
// - a connection graph: every full node keeps `keep` outbound links (core/mesh/peer-keeper: 8) to
//   random fleet peers, so it has about 2 × keep connections; a topic's peers are the connected
//   peers subscribed to it;
// - per topic a mesh: each member grafts random topic peers up to D and accepts grafts up to D_hi
//   (the heartbeat's maintenance keeps meshes within [D_lo, D_hi]);
// - publish with floodPublish (gossipsub's default): the publisher sends to ALL its topic peers;
// - forward once, on first receipt, to every mesh peer but the one it came from and those whose
//   IDONTWANT (sent on first receipt of data ≥ 512 bytes to the mesh) already arrived;
// - IHAVE on every heartbeat to max(D_lazy, gossipFactor × non-mesh topic peers) non-mesh topic peers
//   (ids of the last `historyGossip` heartbeats, at most 5000), answered by IWANT for unseen ids.
//
// One message is simulated event by event (every delivery, duplicate, IDONTWANT, IHAVE/IWANT
// recovery after a lost transmission). Per-node bandwidth comes from simulating `samples` messages
// per topic and scaling by the topic's message rate (`simulateTopic`): messages do not interact
// (no queueing), so the sample mean of bytes a node receives per message, times messages per
// second, is its inbound rate. `test/sim/gossip-scale.test.ts` checks that estimate against
// simulating every message of a second at 200 nodes, `npm run sim:scale -- --validate` at 1,000.
// IHAVE bytes are counted in closed form per heartbeat (see `ihaveInbound`).

import { SeededRandom } from './prng.ts'

/** @libp2p/gossipsub 17 defaults (dist/src/constants.js), which core/mesh/mesh.ts does not override. */
export const GOSSIPSUB_DEFAULTS = {
  D: 6,
  Dlo: 4,
  Dhi: 12,
  Dlazy: 6,
  gossipFactor: 0.25,
  heartbeatMs: 1_000,
  historyGossip: 3,
  maxIHaveLength: 5_000,
  idontwantMinDataBytes: 512,
  floodPublish: true
} as const

export type GossipsubParams = { -readonly [K in keyof typeof GOSSIPSUB_DEFAULTS]: typeof GOSSIPSUB_DEFAULTS[K] extends boolean ? boolean : number }

export interface LinkParams {
  /** One-way latency of one hop, uniform in [lo, hi] ms. */
  hopMs: readonly [number, number]
  /** Validation before forwarding (signature checks in the topic validator), ms. */
  validateMs: number
  /** Probability that one transmission is lost (a dropped connection or queue; recovered by IHAVE/IWANT). */
  loss: number
}

export const DEFAULT_LINKS: LinkParams = { hopMs: [10, 80], validateMs: 2, loss: 0.01 }

/** Undirected connection graph: every node dials `keep` distinct random others. */
export function connectionGraph (nodes: number, keep: number, random: SeededRandom): Int32Array[] {
  const sets: Array<Set<number>> = Array.from({ length: nodes }, () => new Set())
  for (let v = 0; v < nodes; v++) {
    const want = Math.min(keep, nodes - 1)
    let guard = 0
    let dialled = 0
    while (dialled < want && guard++ < 50 * want) {
      const u = Math.floor(random.next() * nodes)
      if (u === v || sets[v].has(u)) continue
      sets[v].add(u)
      sets[u].add(v)
      dialled++
    }
  }
  return sets.map(s => Int32Array.from(s))
}

/**
 * A topic among `members` (global node indices): its peer graph (connections between members,
 * plus `extraDials` random members each member connects to when it follows the topic) and its mesh.
 * Local indices 0..members.length-1.
 */
export interface Topic {
  members: Int32Array
  peers: Int32Array[]
  mesh: Int32Array[]
}

export function buildTopic (members: Int32Array, graph: Int32Array[] | undefined, extraDials: number, params: GossipsubParams, random: SeededRandom): Topic {
  const n = members.length
  const local = new Map<number, number>()
  members.forEach((g, i) => local.set(g, i))
  const peers: Array<Set<number>> = Array.from({ length: n }, () => new Set())
  if (graph !== undefined) {
    for (let i = 0; i < n; i++) {
      for (const g of graph[members[i]]) {
        const j = local.get(g)
        if (j !== undefined) peers[i].add(j)
      }
    }
  }
  for (let i = 0; i < n && extraDials > 0; i++) {
    const want = Math.min(extraDials, n - 1)
    let guard = 0
    while (peers[i].size < want && guard++ < 50 * want) {
      const j = Math.floor(random.next() * n)
      if (j !== i) { peers[i].add(j); peers[j].add(i) }
    }
  }
  const peerArrays = peers.map(s => Int32Array.from(s))
  const mesh: Array<Set<number>> = Array.from({ length: n }, () => new Set())
  const order = Array.from({ length: n }, (_, i) => i)
  shuffle(order, random)
  for (const i of order) {
    const candidates = [...peerArrays[i]]
    shuffle(candidates, random)
    for (const j of candidates) {
      if (mesh[i].size >= params.D) break
      if (mesh[i].has(j) || mesh[j].size >= params.Dhi) continue
      mesh[i].add(j)
      mesh[j].add(i)
    }
  }
  return { members, peers: peerArrays, mesh: mesh.map(s => Int32Array.from(s)) }
}

function shuffle<T> (a: T[], random: SeededRandom): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random.next() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
}

/** A binary min-heap of (time, kind, to, from) events on parallel arrays. */
class EventHeap {
  private t = new Float64Array(1024)
  private k = new Int32Array(1024)
  private a = new Int32Array(1024)
  private b = new Int32Array(1024)
  size = 0

  push (time: number, kind: number, to: number, from: number): void {
    if (this.size === this.t.length) this.grow()
    let i = this.size++
    while (i > 0) {
      const p = (i - 1) >> 1
      if (this.t[p] <= time) break
      this.t[i] = this.t[p]; this.k[i] = this.k[p]; this.a[i] = this.a[p]; this.b[i] = this.b[p]
      i = p
    }
    this.t[i] = time; this.k[i] = kind; this.a[i] = to; this.b[i] = from
  }

  /** Pops into `out` [time, kind, to, from]. */
  pop (out: Float64Array): void {
    out[0] = this.t[0]; out[1] = this.k[0]; out[2] = this.a[0]; out[3] = this.b[0]
    const last = --this.size
    if (last === 0) return
    const time = this.t[last]; const kind = this.k[last]; const to = this.a[last]; const from = this.b[last]
    let i = 0
    for (;;) {
      let c = 2 * i + 1
      if (c >= last) break
      if (c + 1 < last && this.t[c + 1] < this.t[c]) c++
      if (this.t[c] >= time) break
      this.t[i] = this.t[c]; this.k[i] = this.k[c]; this.a[i] = this.a[c]; this.b[i] = this.b[c]
      i = c
    }
    this.t[i] = time; this.k[i] = kind; this.a[i] = to; this.b[i] = from
  }

  private grow (): void {
    const n = this.t.length * 2
    const t = new Float64Array(n); t.set(this.t); this.t = t
    const k = new Int32Array(n); k.set(this.k); this.k = k
    const a = new Int32Array(n); a.set(this.a); this.a = a
    const b = new Int32Array(n); b.set(this.b); this.b = b
  }
}

const DELIVER = 0
const HEARTBEAT = 1
const IHAVE = 2

export interface MessageRun {
  /** First-seen time per member (ms after publication); Infinity if never. */
  seenMs: Float64Array
  /** Data copies each member received (first + duplicates). */
  copies: Uint16Array
  /** IDONTWANT RPCs each member received for this message. */
  idontwants: Uint16Array
  /** Time until 99 % of members had the message (ms after publication). */
  to99Ms: number
  transmissions: number
  recovered: number
}

export interface TopicSizes {
  /** Wire bytes of one data message (RPC with the message) and of one IDONTWANT RPC. */
  messageBytes: number
  idontwantBytes: number
}

/** Event-by-event propagation of one message published by local member `origin` at t = 0. */
export function propagate (topic: Topic, origin: number, dataBytes: number, params: GossipsubParams, links: LinkParams, random: SeededRandom, heartbeatPhaseMs: Float64Array): MessageRun {
  const n = topic.members.length
  const seen = new Float64Array(n).fill(Infinity)
  const source = new Int32Array(n).fill(-1)
  const copies = new Uint16Array(n)
  const idontwants = new Uint16Array(n)
  const requested = new Uint8Array(n)
  const heap = new EventHeap()
  const [lo, hi] = links.hopMs
  const hop = (): number => lo + (hi - lo) * random.next()
  const withIdontwant = dataBytes >= params.idontwantMinDataBytes
  let transmissions = 0
  let recovered = 0
  let seenCount = 0
  const target99 = Math.ceil(0.99 * n)
  let to99Ms = Infinity
  const send = (atMs: number, to: number, from: number): void => {
    transmissions++
    if (random.next() < links.loss) return
    heap.push(atMs + hop(), DELIVER, to, from)
  }
  const firstSeen = (v: number, atMs: number, from: number): void => {
    seen[v] = atMs
    source[v] = from
    if (++seenCount === target99) to99Ms = atMs
    const forwardMs = atMs + links.validateMs
    for (const u of topic.mesh[v]) {
      if (u === from) continue
      if (withIdontwant) idontwants[u]++
      // Skip a mesh peer whose IDONTWANT reached us before we forward (sampled one-way latency).
      if (withIdontwant && seen[u] <= forwardMs && source[u] !== v && seen[u] + hop() <= forwardMs) continue
      send(forwardMs, u, v)
    }
    // Gossip: this node's next `historyGossip` heartbeats carry the id in IHAVE.
    const phase = heartbeatPhaseMs[v]
    const next = phase + Math.ceil((atMs - phase) / params.heartbeatMs) * params.heartbeatMs
    heap.push(next <= atMs ? next + params.heartbeatMs : next, HEARTBEAT, v, params.historyGossip)
  }
  // The publisher: floodPublish sends to every topic peer, not only the mesh.
  seen[origin] = 0
  source[origin] = origin
  seenCount = 1
  if (seenCount >= target99) to99Ms = 0
  for (const u of params.floodPublish ? topic.peers[origin] : topic.mesh[origin]) send(0, u, origin)
  {
    const phase = heartbeatPhaseMs[origin]
    heap.push(phase + Math.ceil(-phase / params.heartbeatMs) * params.heartbeatMs + params.heartbeatMs, HEARTBEAT, origin, params.historyGossip)
  }
  const e = new Float64Array(4)
  while (heap.size > 0) {
    heap.pop(e)
    const atMs = e[0]; const kind = e[1]; const v = e[2]; const from = e[3]
    if (kind === DELIVER) {
      copies[v]++
      if (seen[v] === Infinity) firstSeen(v, atMs, from)
      continue
    }
    if (seenCount === n) continue // everyone has it: gossip can only add IHAVE bytes, counted in closed form
    if (kind === HEARTBEAT) {
      const nonMesh = nonMeshPeers(topic, v)
      const want = Math.min(nonMesh.length, Math.max(params.Dlazy, Math.floor(params.gossipFactor * nonMesh.length)))
      for (let picked = 0; picked < want; picked++) {
        const j = picked + Math.floor(random.next() * (nonMesh.length - picked))
        const u = nonMesh[j]; nonMesh[j] = nonMesh[picked]; nonMesh[picked] = u
        if (seen[u] <= atMs || requested[u] === 1) continue
        heap.push(atMs + hop(), IHAVE, u, v)
      }
      if (from > 1) heap.push(atMs + params.heartbeatMs, HEARTBEAT, v, from - 1)
      continue
    }
    // IHAVE arrived at v from `from`: v asks with IWANT, `from` answers with the message.
    if (seen[v] <= atMs || requested[v] === 1) continue
    requested[v] = 1
    recovered++
    heap.push(atMs + hop() + hop(), DELIVER, v, from)
  }
  return { seenMs: seen, copies, idontwants, to99Ms, transmissions, recovered }
}

function nonMeshPeers (topic: Topic, v: number): number[] {
  const mesh = topic.mesh[v]
  const out: number[] = []
  for (const u of topic.peers[v]) if (!mesh.includes(u)) out.push(u)
  return out
}

export interface Publisher {
  /** Local member index. */
  member: number
  /** Messages per second this member publishes on the topic. */
  ratePerS: number
  /** Wire bytes of one of its messages, and the gossipsub `data` bytes inside (for IDONTWANT's threshold). */
  messageBytes: number
  dataBytes: number
}

export interface TopicResult {
  /** Inbound bytes per second per member, split by kind. */
  dataBps: Float64Array
  controlBps: Float64Array
  /** Time to 99 % of members per sampled message (ms, publication to 99 %). */
  to99Ms: number[]
  /** Mean data copies a member received per message (first + duplicates). */
  meanCopies: number
  /** Fraction of deliveries to a member that had not yet got the message in a run (coverage check). */
  coverage: number
  messagesPerS: number
  sampled: number
}

/**
 * Per-member inbound rates on one topic. With `samples` ≥ the number of publishers and `exact`,
 * every publisher's message is simulated once and weighted by its own rate (the full model); else
 * `samples` messages are drawn with probability proportional to rate and scaled (the estimate).
 */
export function simulateTopic (topic: Topic, publishers: readonly Publisher[], sizes: { idontwantBytes: number, ihaveBytes: (ids: number) => number }, params: GossipsubParams, links: LinkParams, random: SeededRandom, samples: number, exact = false): TopicResult {
  const n = topic.members.length
  const dataBps = new Float64Array(n)
  const controlBps = new Float64Array(n)
  const to99Ms: number[] = []
  const totalRate = publishers.reduce((s, p) => s + p.ratePerS, 0)
  const phase = new Float64Array(n)
  for (let i = 0; i < n; i++) phase[i] = random.next() * params.heartbeatMs
  let copiesSum = 0
  let reached = 0
  const runs = exact ? publishers.length : samples
  const cumulative = new Float64Array(publishers.length)
  publishers.reduce((s, p, i) => (cumulative[i] = s + p.ratePerS), 0)
  for (let r = 0; r < runs; r++) {
    let p: Publisher
    let weight: number
    if (exact) {
      p = publishers[r]
      weight = p.ratePerS
    } else {
      const x = random.next() * totalRate
      let a = 0; let b = publishers.length - 1
      while (a < b) { const m = (a + b) >> 1; if (cumulative[m] > x) b = m; else a = m + 1 }
      p = publishers[a]
      weight = totalRate / samples
    }
    const run = propagate(topic, p.member, p.dataBytes, params, links, random, phase)
    to99Ms.push(run.to99Ms)
    for (let i = 0; i < n; i++) {
      dataBps[i] += weight * run.copies[i] * p.messageBytes
      controlBps[i] += weight * run.idontwants[i] * sizes.idontwantBytes
      copiesSum += run.copies[i]
      if (run.seenMs[i] < Infinity) reached++
    }
  }
  const ihave = ihaveInbound(topic, totalRate, sizes.ihaveBytes, params)
  for (let i = 0; i < n; i++) controlBps[i] += ihave[i]
  return { dataBps, controlBps, to99Ms, meanCopies: copiesSum / (runs * Math.max(1, n - 1)), coverage: reached / (runs * n), messagesPerS: totalRate, sampled: runs }
}

/**
 * IHAVE bytes per second each member receives: every heartbeat, each member u sends one IHAVE with
 * the ids of the last `historyGossip` heartbeats (Poisson with mean rate × history, at most 5000;
 * none when empty) to `want_u` of its non-mesh topic peers, chosen at random.
 */
export function ihaveInbound (topic: Topic, messagesPerS: number, ihaveBytes: (ids: number) => number, params: GossipsubParams): Float64Array {
  const n = topic.members.length
  const lambda = messagesPerS * params.historyGossip * params.heartbeatMs / 1000
  const ids = Math.min(params.maxIHaveLength, lambda)
  const pNonEmpty = 1 - Math.exp(-lambda)
  const base = ihaveBytes(0)
  const perId = (ihaveBytes(100) - base) / 100
  // Expected bytes of one IHAVE given it is sent (ids ≥ 1).
  const bytes = pNonEmpty === 0 ? 0 : base + perId * (lambda >= params.maxIHaveLength ? ids : lambda / pNonEmpty)
  const out = new Float64Array(n)
  const perSecond = 1000 / params.heartbeatMs
  for (let u = 0; u < n; u++) {
    const nonMesh = nonMeshPeers(topic, u)
    if (nonMesh.length === 0) continue
    const want = Math.min(nonMesh.length, Math.max(params.Dlazy, Math.floor(params.gossipFactor * nonMesh.length)))
    const share = want / nonMesh.length * pNonEmpty * bytes * perSecond
    for (const v of nonMesh) out[v] += share
  }
  return out
}
