// Fleet-scale gossip: today's single fleet topic against the per-cell design (docs/biology.md,
// "Scale"), on the gossipsub model of gossipsub-model.ts with message sizes from gossip-sizes.ts.
//
// Workload: `nodes` full nodes with 4 slots, `cells` cells, about one replica per node in all;
// cell sizes follow Zipf (s = 1: the biggest cell has ~19 % of the replicas, the smallest 2), each
// cell's replicas on distinct random nodes (the biology spreads them). Every node keeps 8 outbound
// links (core/mesh/peer-keeper).

import { SeededRandom } from './prng.ts'
import { buildTopic, connectionGraph, DEFAULT_LINKS, GOSSIPSUB_DEFAULTS, simulateTopic } from './gossipsub-model.ts'
import type { GossipsubParams, LinkParams, Publisher, TopicResult } from './gossipsub-model.ts'
import type { GossipSizes } from './gossip-sizes.ts'
import { SIZED_CELL, TRANSPORT_OVERHEAD_BYTES } from './gossip-sizes.ts'
import { LIMITS, MEMBERS_TOPIC, cellTopic } from '../../core/fleet/records.ts'
import { cellRefreshMs, PER_CELL_DEFAULTS } from '../../core/fleet/gossip.ts'
import { DIGEST_RECORD_BYTES, PER_CELL_ANTI_ENTROPY_MS, digestBuckets, encodeDigestRequest } from '../../core/fleet/sync.ts'
import type { DigestScope } from '../../core/fleet/sync.ts'
import { percentile } from './stats.ts'

export interface Workload {
  nodes: number
  /** hosts[c] = node indices running a replica of cell c (distinct). */
  hosts: Int32Array[]
  /** instances[v] = replicas on node v. */
  instances: Uint8Array
}

export function makeWorkload (nodes: number, cells: number, random: SeededRandom, slots = 4, replicasPerNode = 1): Workload {
  const total = Math.round(nodes * replicasPerNode)
  const h = Array.from({ length: cells }, (_, i) => 1 / (i + 1)).reduce((s, x) => s + x, 0)
  const sizes = Array.from({ length: cells }, (_, i) => Math.max(2, Math.min(nodes, Math.round(total / (h * (i + 1))))))
  const instances = new Uint8Array(nodes)
  const hosts = sizes.map(size => {
    const chosen = new Set<number>()
    let guard = 0
    while (chosen.size < size && guard++ < 100 * size) {
      const v = Math.floor(random.next() * nodes)
      if (chosen.has(v) || instances[v] >= slots) continue
      chosen.add(v)
      instances[v]++
    }
    return Int32Array.from(chosen)
  })
  return { nodes, hosts, instances }
}

/**
 * The per-cell design as core/fleet runs it in `dissemination = "per-cell"` mode: the real defaults
 * (named as FleetGossip's and FleetView's options) and the workload's assumptions, in one place.
 */
export interface CellDesign {
  // --- Real defaults (core/fleet/gossip.ts FleetGossipInit, view.ts, records.ts LIMITS) ---
  /** FleetGossip: an instance is re-sent when nothing changed every cellRefreshMs(hosts) = max(cellRefreshMinMs, hosts / cellRefreshPerSecond s)... */
  cellRefreshMinMs: number
  cellRefreshPerSecond: number
  /**
   * FleetGossip: a member record is re-sent after this long without any member or node record sent,
   * capped at memberTtlMs / 3; the full node record is re-signed after max(that, memberTtlMs - that)
   * without a change (so a view that pulls it later does not refuse it as expired). See effectiveRefresh.
   */
  memberRefreshMs: number
  /** FleetView ('members' liveness): a node lives this long after its newest node or member record. */
  memberTtlMs: number
  /** FleetGossip: a member record whose only change is load (CPU, memory past the dead band) waits until this long after the previous one. */
  memberLoadMinIntervalMs: number
  /** FleetView: distinct reporters kept per down subject (LIMITS.downReporters); a further report is dropped ('overflow-down', ignored: not forwarded). */
  downReporters: number
  /** FleetView: reporters that make a verdict, min(downQuorum, other live full nodes); it does not change the bytes (every report up to downReporters travels). */
  downQuorum: number

  // --- Workload assumptions ---
  /** Instance records at once on a change (state, release, readiness, end, claim, CPU by more than 10 points): per replica per second. */
  changesPerReplicaPerS: number
  /** Standby candidates per cell (highest rendezvous hash among eligible nodes without a replica) that follow its topic. */
  candidates: number
  /** A follower dials this many random followers of the cell (the topic's own links). */
  topicDials: number
  /** Member records sent at once: free slots, slots, hosted cells or leaving changed (a replica placed or gone), per node per hour. */
  memberChangesPerNodePerHour: number
  /** Load moves past the member record's dead band (CPU by 10 points × cores, memory by 10 points), per node per hour, before the memberLoadMinIntervalMs limit. */
  memberLoadChangesPerNodePerHour: number
  /**
   * Full node records (each in one bundle with a member record) besides starts: addrs, grants, roles,
   * capacity.slots or halts changed, per node per hour. Not periodic, not on `prepared` changes.
   */
  nodeRecordChangesPerNodePerHour: number
  /**
   * Node failures (crash, restart, lost links) per node per day. Every full node connected to the
   * lost node reports it down (its failure detector: connection loss, one redial, suspectMs), and
   * the node, when back, starts with a full node record and member record.
   */
  failuresPerNodePerDay: number
  /** Full nodes connected to a lost node, each sending one down report (about 16: 8 outbound links each way). */
  reportersPerFailure: number
  /** Cells a node calls (chosen in proportion to the cells' sizes); a caller pulls a sample of 16 ready replicas of each every pullMs (no subscription)... */
  callsPerNode: number
  /** ...or, as stage 1 does (FleetGossip.follow for callers), follows each called cell's topic instead. */
  callersFollow?: boolean
  pullMs: number
  /** A caller's sample: instances per pull (fleet-sync's `sample`, core/mesh CALLER_SAMPLE); its bytes come from the real codec. */
  pullInstances: number
  /**
   * Anti-entropy (fleet-sync digest rounds, core/fleet/sync.ts antiEntropyMode 'digest'): every this
   * long (on average; ±50 % jitter) a full node sends one connected full node the range digests of
   * the members layer and of the cells it follows, and gets the records of the differing buckets.
   * 0: not counted.
   */
  antiEntropyMs: number
  /** The grant chain a fleet-sync request carries (a host grant and its session certificate, as Credentials.currentChain gives; measured in gossip-scale.test.ts). */
  antiEntropyChainBytes: number
  /** Release-layer records per cell a view holds (newest release, an older one, a desired record): the releases scope's size. Their changes are rare and not counted in the responses. */
  releaseRecordsPerCell: number
}

/** Bytes of opening a fleet-sync stream as seen by either side: multistream-select (protocol and header, both ways) and yamux stream frames. */
export const STREAM_OPEN_BYTES = 2 * (1 + '/multistream/1.0.0\n'.length + 1 + '/cell/fleet-sync/1\n'.length) + 4 * 12

/**
 * Bytes on the wire of one digest request: the real encoder (encodeDigestRequest) on a chain of
 * `chainBytes`, the members scope of `nodes` nodes, the releases scope of `releaseRecords` records
 * (releases, their history, desired, retire, snapshot and pin records) and one scope per followed cell (its hosts),
 * with its length prefix and the transport's framing.
 */
export function digestRequestBytes (chainBytes: number, nodes: number, followedHosts: readonly number[], releaseRecords = 0): number {
  const scopes: DigestScope[] = [
    { scope: { kind: 'members' }, buckets: digestBuckets(nodes, DIGEST_RECORD_BYTES.member), digest: new Uint8Array(0) },
    { scope: { kind: 'releases' }, buckets: digestBuckets(releaseRecords, DIGEST_RECORD_BYTES.release), digest: new Uint8Array(0) }
  ]
  followedHosts.forEach((hosts, i) => scopes.push({ scope: { kind: 'cell', cell: `cell-${i}` }, buckets: digestBuckets(hosts, DIGEST_RECORD_BYTES.instance), digest: new Uint8Array(0) }))
  let total = scopes.reduce((n, x) => n + x.buckets, 0)
  while (total > 4096) {
    const largest = scopes.reduce((a, b) => (b.buckets > a.buckets ? b : a))
    largest.buckets /= 2
    total -= largest.buckets
  }
  for (const x of scopes) x.digest = new Uint8Array(x.buckets * 8)
  return encodeDigestRequest(new Uint8Array(chainBytes), scopes).length + 3 + TRANSPORT_OVERHEAD_BYTES
}

/**
 * Bytes on the wire of a digest request for one followed cell of `hosts` replicas alone: what a
 * digest round sends a host of the cell when the round's peer does not host it (FleetSync compares
 * each followed cell with a connected host, at most 4 other peers a round).
 */
export function cellDigestRequestBytes (chainBytes: number, hosts: number): number {
  const buckets = digestBuckets(hosts, DIGEST_RECORD_BYTES.instance)
  return encodeDigestRequest(new Uint8Array(chainBytes), [{ scope: { kind: 'cell', cell: 'cell-0' }, buckets, digest: new Uint8Array(buckets * 8) }]).length + 3 + TRANSPORT_OVERHEAD_BYTES
}

/**
 * Expected records whose buckets differ between a requester's and a server's digests of one scope
 * in a round: records in flight (published at `ratePerS` in the scope, reaching nodes over about
 * `windowMs` apart, plus the request's transit between the two digests), and records one of the
 * two missed (gossip's residual miss rate `miss`) since the previous round, each side's misses.
 */
export function expectedDiffering (ratePerS: number, windowMs: number, miss: number, periodMs: number): number {
  return ratePerS * windowMs / 1000 + 2 * ratePerS * miss * periodMs / 1000
}

/**
 * Inbound bytes of one caller's sample (fleet-sync response): `n` signed instance envelopes in one
 * bundle (version, kind, count, and per entry its age and length varints), the frame's length
 * prefix, and the transport's framing.
 */
export function samplePullBytes (sizes: Pick<GossipSizes, 'cellInstanceEnvelopeBytes'>, n: number): number {
  return 3 + n * (sizes.cellInstanceEnvelopeBytes + 2 + 3) + 3 + TRANSPORT_OVERHEAD_BYTES
}

export const CELL_DESIGN: CellDesign = {
  // FleetGossip's per-cell defaults, read from core/fleet (one source).
  cellRefreshMinMs: PER_CELL_DEFAULTS.cellRefreshMinMs,
  cellRefreshPerSecond: PER_CELL_DEFAULTS.cellRefreshPerSecond,
  memberRefreshMs: PER_CELL_DEFAULTS.memberRefreshMs,
  memberTtlMs: PER_CELL_DEFAULTS.memberTtlMs,
  memberLoadMinIntervalMs: PER_CELL_DEFAULTS.memberLoadMinIntervalMs,
  downReporters: LIMITS.downReporters,
  downQuorum: 2,
  changesPerReplicaPerS: 1 / 600,
  candidates: 8,
  topicDials: GOSSIPSUB_DEFAULTS.Dlo,
  // A replica placed or removed about once an hour per node (autoscaling, rollouts).
  memberChangesPerNodePerHour: 1,
  // A diurnal swing of 60 points over 12 h crosses a 10-point band ~0.5 times an hour; twice that for noise.
  memberLoadChangesPerNodePerHour: 1,
  // One a day: an address change (DHCP, NAT mapping), a grant renewal or a halt adopted.
  nodeRecordChangesPerNodePerHour: 1 / 24,
  failuresPerNodePerDay: 1,
  reportersPerFailure: 16,
  callsPerNode: 2,
  pullMs: 10_000,
  // core/mesh: 16 signed instance records (with refreshMs) in one fleet-sync frame, without node records.
  pullInstances: 16,
  antiEntropyMs: PER_CELL_ANTI_ENTROPY_MS,
  antiEntropyChainBytes: 347,
  releaseRecordsPerCell: 3
}

/** Per-node message rates (per second) on the members topic that a CellDesign implies. */
export interface MemberRates {
  /** Full node record + member record bundles: starts after a failure, node record changes, node refreshes. */
  node: number
  /** Of `node`: refreshes (the node refresh passed without a change). */
  nodeRefresh: number
  /** Member records alone: at once on slot/cell/leaving changes, load changes at most once per memberLoadMinIntervalMs, refreshes. */
  member: number
  /** Of `member`: refreshes (memberRefreshMs passed without any send). */
  refresh: number
  /** Down reports about a lost node that travel the whole topic: min(reportersPerFailure, downReporters) per failure. */
  down: number
}

/** The member and node record refreshes FleetGossip runs with (ms): memberRefreshMs capped at memberTtlMs / 3; the node record's max(member, memberTtlMs - member). */
export function effectiveRefresh (d: CellDesign): { memberMs: number, nodeMs: number } {
  const memberMs = Math.max(1, Math.min(d.memberRefreshMs, Math.floor(d.memberTtlMs / 3)))
  return { memberMs, nodeMs: Math.max(memberMs, d.memberTtlMs - memberMs) }
}

/** Refreshes per second of a record re-sent after refreshS of silence, when other sends come as a Poisson process of `lambda` per s: λ e^(-λR) / (1 - e^(-λR)); 1/R when λ = 0. */
function refreshRate (lambda: number, refreshS: number): number {
  return lambda > 0 ? lambda * Math.exp(-lambda * refreshS) / -Math.expm1(-lambda * refreshS) : 1 / refreshS
}

export function memberRates (d: CellDesign): MemberRates {
  const { memberMs, nodeMs } = effectiveRefresh(d)
  const nodeChanges = d.nodeRecordChangesPerNodePerHour / 3_600 + d.failuresPerNodePerDay / 86_400
  const nodeRefresh = refreshRate(nodeChanges, nodeMs / 1000)
  const node = nodeChanges + nodeRefresh
  // Load changes as a Poisson process of rate λ, each sent when memberLoadMinIntervalMs has passed since the previous one.
  const loadOffered = d.memberLoadChangesPerNodePerHour / 3_600
  const load = loadOffered > 0 ? 1 / (d.memberLoadMinIntervalMs / 1000 + 1 / loadOffered) : 0
  const changes = d.memberChangesPerNodePerHour / 3_600 + load
  // A refresh is due when the member refresh passes without a send (node bundles carry a member record too).
  const refresh = refreshRate(changes + node, memberMs / 1000)
  const down = d.failuresPerNodePerDay / 86_400 * Math.min(d.reportersPerFailure, d.downReporters)
  return { node, nodeRefresh, member: changes + refresh, refresh, down }
}

export interface ScaleRow {
  design: 'today' | 'per-cell'
  nodes: number
  /** Inbound bytes per second per node: mean and p99 over nodes; data/control split of the mean. */
  inMeanBps: number
  inP99Bps: number
  dataMeanBps: number
  controlMeanBps: number
  /** Time (ms) until 99 % of the nodes that need it know a new replica: p50 and p99 over sampled messages. */
  conv50Ms: number
  conv99Ms: number
  /** Same for the member layer (a node's changed member record reaching 99 % of all nodes); per-cell only. */
  memberConv50Ms?: number
  memberConv99Ms?: number
  meanCopies: number
  coverage: number
  messagesPerS: number
  /** Mean connections per node (links kept + the per-cell design's topic dials). */
  meanConnections: number
  /** Of the inbound bytes: anti-entropy (per-cell design's digest rounds), mean and p99 over nodes. */
  antiEntropyMeanBps?: number
  antiEntropyP99Bps?: number
  /** Topics a node follows: mean and max (per-cell design). */
  topicsMean?: number
  topicsMax?: number
  wallMs: number
}

export interface ScaleOptions {
  nodes: number
  cells: number
  seed: number
  samples: number
  params?: GossipsubParams
  /** Gossipsub parameters of the per-cell topics (default: params), e.g. a lower D there only. */
  cellParams?: GossipsubParams
  links?: LinkParams
  keep?: number
  design?: CellDesign
  /** Simulate every publisher's message once instead of sampling (the full model). */
  exact?: boolean
}

function summarise (design: ScaleRow['design'], nodes: number, inbound: Float64Array, data: Float64Array, control: Float64Array, conv: number[], results: TopicResult[], connections: number, started: number): ScaleRow {
  const sorted = Float64Array.from(inbound).sort()
  const c = [...conv].sort((a, b) => a - b)
  const mean = (a: Float64Array): number => a.reduce((s, x) => s + x, 0) / a.length
  const w = results.reduce((s, r) => s + r.sampled, 0)
  return {
    design,
    nodes,
    inMeanBps: mean(inbound),
    inP99Bps: percentile([...sorted], 99),
    dataMeanBps: mean(data),
    controlMeanBps: mean(control),
    conv50Ms: percentile(c, 50),
    conv99Ms: percentile(c, 99),
    meanCopies: results.reduce((s, r) => s + r.meanCopies * r.sampled, 0) / w,
    coverage: results.reduce((s, r) => s + r.coverage * r.sampled, 0) / w,
    messagesPerS: results.reduce((s, r) => s + r.messagesPerS, 0),
    meanConnections: connections,
    wallMs: performance.now() - started
  }
}

/** Today: one fleet topic; every node publishes its record and its instances' heartbeats every second. */
export function runToday (o: ScaleOptions, sizes: GossipSizes, work: Workload): ScaleRow {
  const started = performance.now()
  const params = o.params ?? { ...GOSSIPSUB_DEFAULTS }
  const links = o.links ?? DEFAULT_LINKS
  const random = new SeededRandom(o.seed)
  const graph = connectionGraph(o.nodes, o.keep ?? 8, random.fork())
  const all = Int32Array.from({ length: o.nodes }, (_, i) => i)
  const topic = buildTopic(all, graph, 0, params, random.fork())
  const publishers: Publisher[] = Array.from({ length: o.nodes }, (_, v) => ({
    member: v, ratePerS: 1, messageBytes: sizes.todayMessageBytes(work.instances[v]), dataBytes: sizes.todayDataBytes(work.instances[v])
  }))
  const r = simulateTopic(topic, publishers, { idontwantBytes: sizes.idontwantBytes, ihaveBytes: (n) => sizes.ihaveBytes(n) }, params, links, random.fork(), o.samples, o.exact === true)
  // A new replica waits for its node's next heartbeat (FleetGossip, every second) before it is published.
  const wait = random.fork()
  const conv = r.to99Ms.map(t => t + wait.next() * 1000)
  const inbound = r.dataBps.map((d, i) => d + r.controlBps[i])
  const connections = graph.reduce((s, g) => s + g.length, 0) / o.nodes
  return summarise('today', o.nodes, inbound, r.dataBps, r.controlBps, conv, [r], connections, started)
}

/** The per-cell design: a members topic for everyone, one topic per cell for its hosts and standby candidates. */
export function runPerCell (o: ScaleOptions, sizes: GossipSizes, work: Workload): ScaleRow {
  const started = performance.now()
  const params = o.params ?? { ...GOSSIPSUB_DEFAULTS }
  const cellParams = o.cellParams ?? params
  const links = o.links ?? DEFAULT_LINKS
  const d = o.design ?? CELL_DESIGN
  const random = new SeededRandom(o.seed)
  const graph = connectionGraph(o.nodes, o.keep ?? 8, random.fork())
  const all = Int32Array.from({ length: o.nodes }, (_, i) => i)
  const data = new Float64Array(o.nodes)
  const control = new Float64Array(o.nodes)
  const cellIhave = (n: number): number => sizes.ihaveBytes(n, cellTopic(SIZED_CELL))
  // Members topic: member records, full node records and down reports of every full node. As
  // FleetGossip sends them: a node record always with a member record in one bundle (at start and
  // when the record's shape changes); a member record alone on its changes and refreshes. Down
  // reports: a view keeps downReporters per subject and ignores (does not forward) the rest, so
  // about that many reports per failure reach every node; the others stop one hop from their reporter
  // (not counted: ~8 × 16 copies per failure fleet-wide).
  const members = buildTopic(all, graph, 0, params, random.fork())
  const membersIhave = (n: number): number => sizes.ihaveBytes(n, MEMBERS_TOPIC)
  const rates = memberRates(d)
  const memberPublishers: Publisher[] = []
  for (let v = 0; v < o.nodes; v++) {
    for (const [ratePerS, messageBytes] of [[rates.member, sizes.memberMessageBytes], [rates.node, sizes.nodeMessageBytes], [rates.down, sizes.downMessageBytes]]) {
      if (ratePerS > 0) memberPublishers.push({ member: v, ratePerS, messageBytes, dataBytes: messageBytes - sizes.membersOverheadBytes })
    }
  }
  const mr = simulateTopic(members, memberPublishers, { idontwantBytes: sizes.idontwantBytes, ihaveBytes: membersIhave }, params, links, random.fork(), o.samples, o.exact === true)
  for (let v = 0; v < o.nodes; v++) { data[v] += mr.dataBps[v]; control[v] += mr.controlBps[v] }
  // Per-cell topics.
  const topics = new Uint16Array(o.nodes)
  /** Per node: [hosts, expected differing instance records per round] of each cell it follows. */
  const followed: Array<Array<[number, number]>> = Array.from({ length: o.nodes }, () => [])
  const extraLinks = new Float64Array(o.nodes)
  const hopMeanMs = (links.hopMs[0] + links.hopMs[1]) / 2 + links.validateMs
  const conv: number[] = []
  const results: TopicResult[] = []
  // Stage 1: callers follow the cells they call (picked in proportion to the cells' sizes).
  const callers: number[][] = work.hosts.map(() => [])
  if (d.callersFollow === true && work.hosts.length > 0) {
    const pick = random.fork()
    const cumulative: number[] = []
    let total = 0
    for (const h of work.hosts) cumulative.push(total += h.length)
    for (let v = 0; v < o.nodes; v++) {
      const called = new Set<number>()
      for (let guard = 0; called.size < Math.min(d.callsPerNode, work.hosts.length) && guard < 100; guard++) {
        const x = pick.next() * total
        let c = 0
        while (cumulative[c] <= x) c++
        called.add(c)
      }
      for (const c of called) callers[c].push(v)
    }
  }
  for (const [c, hosts] of work.hosts.entries()) {
    const followers = new Set<number>(hosts)
    const pick = random.fork()
    let guard = 0
    while (followers.size < hosts.length + d.candidates && followers.size < o.nodes && guard++ < 1000) followers.add(Math.floor(pick.next() * o.nodes))
    for (const v of callers[c]) followers.add(v)
    const memberList = Int32Array.from(followers)
    for (const v of memberList) topics[v]++
    const topic = buildTopic(memberList, graph, d.topicDials, cellParams, random.fork())
    for (let i = 0; i < memberList.length; i++) {
      const viaGraph = graph[memberList[i]].filter(g => followers.has(g)).length
      extraLinks[memberList[i]] += topic.peers[i].length - viaGraph
    }
    const hostSet = new Set(hosts)
    const refreshMs = cellRefreshMs(hosts.length, d.cellRefreshMinMs, d.cellRefreshPerSecond)
    const publishers: Publisher[] = []
    memberList.forEach((v, i) => {
      if (!hostSet.has(v)) return
      const bytes = sizes.cellMessageBytes(1)
      publishers.push({ member: i, ratePerS: 1000 / refreshMs + d.changesPerReplicaPerS, messageBytes: bytes, dataBytes: bytes - sizes.cellOverheadBytes })
    })
    // Small topics are simulated message by message; big ones sampled like the fleet topic.
    const samples = Math.max(8, Math.min(o.samples, Math.ceil(o.samples * hosts.length / 200)))
    const r = simulateTopic(topic, publishers, { idontwantBytes: sizes.idontwantBytes, ihaveBytes: cellIhave }, cellParams, links, random.fork(), samples, o.exact === true)
    results.push(r)
    conv.push(...r.to99Ms)
    if (d.antiEntropyMs > 0) {
      const cellRate = hosts.length * (1000 / refreshMs + d.changesPerReplicaPerS)
      const window = percentile([...r.to99Ms].sort((a, b) => a - b), 50) + hopMeanMs
      const k = expectedDiffering(cellRate, window, Math.max(0, 1 - r.coverage), d.antiEntropyMs)
      for (const v of memberList) followed[v].push([hosts.length, k])
    }
    memberList.forEach((v, i) => { data[v] += r.dataBps[i]; control[v] += r.controlBps[i] })
  }
  // Callers pull a sample of replicas point to point instead of following the cell.
  const pullBytes = samplePullBytes(sizes, d.pullInstances)
  if (d.callersFollow !== true) for (let v = 0; v < o.nodes; v++) data[v] += d.callsPerNode * pullBytes * 1000 / d.pullMs
  // Anti-entropy (digest rounds): each node's request goes to one random neighbour (expected share
  // 1/degree of each neighbour's requests reaches this node); the response carries the records of
  // the differing buckets, every record of such a bucket (nodes / buckets of them).
  const ae = new Float64Array(o.nodes)
  if (d.antiEntropyMs > 0) {
    const memberRate = o.nodes * (rates.member + rates.node + d.failuresPerNodePerDay / 86_400)
    const memberWindow = percentile([...mr.to99Ms].sort((a, b) => a - b), 50) + hopMeanMs
    const memberK = expectedDiffering(memberRate, memberWindow, Math.max(0, 1 - mr.coverage), d.antiEntropyMs)
    const memberBuckets = digestBuckets(o.nodes, DIGEST_RECORD_BYTES.member)
    // A bundle entry: the envelope with its age and length varints.
    const memberBucketBytes = (o.nodes / memberBuckets) * (sizes.nodeEnvelopeBytes + sizes.memberEnvelopeBytes + 2 * 5)
    const frame = 3 + 3 + TRANSPORT_OVERHEAD_BYTES
    const request = new Float64Array(o.nodes)
    for (let v = 0; v < o.nodes; v++) {
      // The members and release layers with the round's peer; each followed cell (counted as) with a host of its own.
      request[v] = digestRequestBytes(d.antiEntropyChainBytes, o.nodes, [], work.hosts.length * d.releaseRecordsPerCell) + STREAM_OPEN_BYTES
      for (const [hosts] of followed[v]) request[v] += cellDigestRequestBytes(d.antiEntropyChainBytes, hosts) + STREAM_OPEN_BYTES
      let response = (1 + followed[v].length) * STREAM_OPEN_BYTES + memberK * memberBucketBytes
      for (const [hosts, k] of followed[v]) response += k * (hosts / digestBuckets(hosts, DIGEST_RECORD_BYTES.instance)) * (sizes.cellInstanceEnvelopeBytes + 5)
      // At least one frame when anything differs (expected: capped at one frame per round for the overhead).
      ae[v] += (response + Math.min(1, memberK) * frame) * 1000 / d.antiEntropyMs
    }
    for (let v = 0; v < o.nodes; v++) {
      const deg = graph[v].length
      if (deg === 0) continue
      for (const u of graph[v]) ae[u] += request[v] / deg * 1000 / d.antiEntropyMs
    }
    for (let v = 0; v < o.nodes; v++) data[v] += ae[v]
  }
  const inbound = data.map((x, i) => x + control[i])
  const connections = (graph.reduce((s, g) => s + g.length, 0) + extraLinks.reduce((s, x) => s + x, 0)) / o.nodes
  const row = summarise('per-cell', o.nodes, inbound, data, control, conv, [mr, ...results], connections, started)
  const mc = [...mr.to99Ms].sort((a, b) => a - b)
  row.memberConv50Ms = percentile(mc, 50)
  row.memberConv99Ms = percentile(mc, 99)
  if (d.antiEntropyMs > 0) {
    row.antiEntropyMeanBps = ae.reduce((s, x) => s + x, 0) / o.nodes
    row.antiEntropyP99Bps = percentile([...ae].sort((a, b) => a - b), 99)
  }
  row.topicsMean = topics.reduce((s, x) => s + x, 0) / o.nodes
  row.topicsMax = topics.reduce((m, x) => Math.max(m, x), 0)
  return row
}

function kB (bps: number): string {
  return (bps / 1000).toFixed(bps < 10_000 ? 2 : bps < 1e6 ? 1 : 0)
}

function s (ms: number): string {
  return Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '∞'
}

export function scaleTable (rows: readonly ScaleRow[]): string {
  const lines = [
    '| design | nodes | inbound kB/s per node, mean | p99 | of which control (IHAVE, IDONTWANT) | of which anti-entropy, mean | p99 | copies per message | new replica known by 99 %: p50 s | p99 s | member record, 99 % of nodes: p50 s | p99 s | msgs/s | links per node |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    lines.push(`| ${r.design === 'today' ? 'today (one fleet topic)' : 'per-cell topics + member records'} | ${r.nodes.toLocaleString('en')} | ${kB(r.inMeanBps)} | ${kB(r.inP99Bps)} | ${kB(r.controlMeanBps)} | ${r.antiEntropyMeanBps === undefined ? '–' : kB(r.antiEntropyMeanBps)} | ${r.antiEntropyP99Bps === undefined ? '–' : kB(r.antiEntropyP99Bps)} | ${r.meanCopies.toFixed(2)} | ${s(r.conv50Ms)} | ${s(r.conv99Ms)} | ${r.memberConv50Ms === undefined ? '–' : s(r.memberConv50Ms)} | ${r.memberConv99Ms === undefined ? '–' : s(r.memberConv99Ms)} | ${Math.round(r.messagesPerS).toLocaleString('en')} | ${r.meanConnections.toFixed(1)} |`)
  }
  return lines.join('\n')
}
