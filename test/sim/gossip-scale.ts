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
import { SIZED_CELL } from './gossip-sizes.ts'
import { MEMBERS_TOPIC, cellTopic } from '../../core/fleet/records.ts'
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

/** The new design's knobs (modelled only; see docs/biology.md "Scale"). */
export interface CellDesign {
  /** Instance records of a cell are re-sent every max(refreshMinMs, hosts / topicCapPerS) when nothing changed... */
  refreshMinMs: number
  topicCapPerS: number
  /** ...and at once on a change; changes per replica per second (state, a load move past the dead band). */
  changesPerReplicaPerS: number
  /** Standby candidates per cell (highest rendezvous hash among eligible nodes without a replica) that follow its topic. */
  candidates: number
  /** A follower dials this many random followers of the cell (the topic's own links). */
  topicDials: number
  /** Member records: on a change (replica placed or gone, eligibility flip) and every refreshMs. */
  memberChangesPerNodePerS: number
  memberRefreshMs: number
  /**
   * Full node records on the members topic (per-cell mode, stage 1), each with a member record: at
   * start, when addrs, grants, roles, halts, prepared releases or slots change, and every
   * nodeRecordRefreshMs (FleetGossip: memberRefreshMs).
   */
  nodeRecordChangesPerNodePerS: number
  /** Periodic resend of the full node record (stage 1: memberRefreshMs; Infinity: only on change and pulled through fleet-sync). */
  nodeRecordRefreshMs: number
  /**
   * Node failures (crash, restart, lost link) per node per second. Each is reported down by the
   * full nodes that were connected to it (their failure detectors: one down record each), and the
   * node, when back, publishes a fresh full node record and member record.
   */
  failuresPerNodePerS: number
  reportersPerFailure: number
  /** Cells a node calls; a caller pulls a sample of 16 ready replicas of each every pullMs (no subscription). */
  callsPerNode: number
  pullMs: number
  pullBytes: number
}

export const CELL_DESIGN: CellDesign = {
  refreshMinMs: 5_000,
  topicCapPerS: 5,
  changesPerReplicaPerS: 1 / 600,
  candidates: 8,
  topicDials: GOSSIPSUB_DEFAULTS.Dlo,
  memberChangesPerNodePerS: 1 / 3_600,
  memberRefreshMs: 3_600_000,
  nodeRecordChangesPerNodePerS: 1 / 3_600,
  nodeRecordRefreshMs: 3_600_000,
  failuresPerNodePerS: 1 / 86_400,
  reportersPerFailure: 16,
  callsPerNode: 2,
  pullMs: 10_000,
  // request (cell name, count) + 16 entries of (node index 4, instance ordinal 1, load 6) + framing
  pullBytes: 40 + 16 * 11 + 2 * 30
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
  // FleetGossip sends them: a node record always with a member record in one bundle; a member
  // record alone on its own changes and when its refresh falls between node-record refreshes.
  const members = buildTopic(all, graph, 0, params, random.fork())
  const membersIhave = (n: number): number => sizes.ihaveBytes(n, MEMBERS_TOPIC)
  const nodeRate = d.nodeRecordChangesPerNodePerS + 1000 / d.nodeRecordRefreshMs + d.failuresPerNodePerS
  const memberRate = d.memberChangesPerNodePerS + Math.max(0, 1000 / d.memberRefreshMs - 1000 / d.nodeRecordRefreshMs)
  const downRate = d.failuresPerNodePerS * d.reportersPerFailure
  const memberPublishers: Publisher[] = []
  for (let v = 0; v < o.nodes; v++) {
    for (const [ratePerS, messageBytes] of [[memberRate, sizes.memberMessageBytes], [nodeRate, sizes.nodeMessageBytes], [downRate, sizes.downMessageBytes]]) {
      if (ratePerS > 0) memberPublishers.push({ member: v, ratePerS, messageBytes, dataBytes: messageBytes - sizes.membersOverheadBytes })
    }
  }
  const mr = simulateTopic(members, memberPublishers, { idontwantBytes: sizes.idontwantBytes, ihaveBytes: membersIhave }, params, links, random.fork(), o.samples, o.exact === true)
  for (let v = 0; v < o.nodes; v++) { data[v] += mr.dataBps[v]; control[v] += mr.controlBps[v] }
  // Per-cell topics.
  const topics = new Uint16Array(o.nodes)
  const extraLinks = new Float64Array(o.nodes)
  const conv: number[] = []
  const results: TopicResult[] = []
  for (const hosts of work.hosts) {
    const followers = new Set<number>(hosts)
    const pick = random.fork()
    let guard = 0
    while (followers.size < hosts.length + d.candidates && followers.size < o.nodes && guard++ < 1000) followers.add(Math.floor(pick.next() * o.nodes))
    const memberList = Int32Array.from(followers)
    for (const v of memberList) topics[v]++
    const topic = buildTopic(memberList, graph, d.topicDials, cellParams, random.fork())
    for (let i = 0; i < memberList.length; i++) {
      const viaGraph = graph[memberList[i]].filter(g => followers.has(g)).length
      extraLinks[memberList[i]] += topic.peers[i].length - viaGraph
    }
    const hostSet = new Set(hosts)
    const refreshMs = Math.max(d.refreshMinMs, 1000 * hosts.length / d.topicCapPerS)
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
    memberList.forEach((v, i) => { data[v] += r.dataBps[i]; control[v] += r.controlBps[i] })
  }
  // Callers pull a sample of replicas point to point instead of following the cell.
  for (let v = 0; v < o.nodes; v++) data[v] += d.callsPerNode * d.pullBytes * 1000 / d.pullMs
  const inbound = data.map((x, i) => x + control[i])
  const connections = (graph.reduce((s, g) => s + g.length, 0) + extraLinks.reduce((s, x) => s + x, 0)) / o.nodes
  const row = summarise('per-cell', o.nodes, inbound, data, control, conv, [mr, ...results], connections, started)
  const mc = [...mr.to99Ms].sort((a, b) => a - b)
  row.memberConv50Ms = percentile(mc, 50)
  row.memberConv99Ms = percentile(mc, 99)
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
    '| design | nodes | inbound kB/s per node, mean | p99 | of which control (IHAVE, IDONTWANT) | copies per message | new replica known by 99 %: p50 s | p99 s | member record, 99 % of nodes: p50 s | p99 s | msgs/s | links per node |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const r of rows) {
    lines.push(`| ${r.design === 'today' ? 'today (one fleet topic)' : 'per-cell topics + member records'} | ${r.nodes.toLocaleString('en')} | ${kB(r.inMeanBps)} | ${kB(r.inP99Bps)} | ${kB(r.controlMeanBps)} | ${r.meanCopies.toFixed(2)} | ${s(r.conv50Ms)} | ${s(r.conv99Ms)} | ${r.memberConv50Ms === undefined ? '–' : s(r.memberConv50Ms)} | ${r.memberConv99Ms === undefined ? '–' : s(r.memberConv99Ms)} | ${Math.round(r.messagesPerS).toLocaleString('en')} | ${r.meanConnections.toFixed(1)} |`)
  }
  return lines.join('\n')
}
