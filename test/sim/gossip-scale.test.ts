// The gossipsub scale model (npm run sim:scale prints the full table): sanity of the propagation
// model on small fleets, the sampled estimate against simulating every message, and the message
// sizes taken from the real codec.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { measureGossipSizes, SIZED_MEMBER_CELLS, SIZED_REFRESH_MS } from './gossip-sizes.ts'
import { CELL_DESIGN, cellDigestRequestBytes, digestRequestBytes, effectiveRefresh, expectedDiffering, makeWorkload, memberRates, runPerCell, runToday } from './gossip-scale.ts'
import { TRANSPORT_OVERHEAD_BYTES } from './gossip-sizes.ts'
import { PER_CELL_ANTI_ENTROPY_MS } from '../../core/fleet/sync.ts'
import { FLEET_GOSSIPSUB_OPTIONS } from '../../core/fleet/gossip-score.ts'
import { generateAuthority } from '../../core/identity/authority.ts'
import { issueGrant } from '../../core/identity/certificate.ts'
import { Credentials } from '../../core/identity/credentials.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { LIMITS } from '../../core/fleet/records.ts'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { FleetGossip, cellRefreshMs } from '../../core/fleet/gossip.ts'
import type { FleetPubSub } from '../../core/fleet/gossip.ts'
import { FleetView } from '../../core/fleet/view.ts'
import { ManualClock } from '../../core/fleet/testing.ts'
import { decodeEnvelope, decodeFrame } from '../../core/fleet/codec.ts'
import type { SignedNodeKeyEnvelope } from '../../core/fleet/codec.ts'
import { verifyRecord } from '../../core/fleet/sign.ts'
import { buildTopic, connectionGraph, GOSSIPSUB_DEFAULTS, propagate } from './gossipsub-model.ts'
import { SeededRandom } from './prng.ts'

const params = { ...GOSSIPSUB_DEFAULTS }

describe('gossipsub scale model', () => {
  it('uses the gossipsub defaults that the installed @libp2p/gossipsub ships (core/mesh does not override them)', () => {
    const src = readFileSync(new URL('../../node_modules/@libp2p/gossipsub/dist/src/constants.js', import.meta.url), 'utf8')
    const constant = (name: string): number => Number(new RegExp(`export const ${name} = ([0-9.]+)`).exec(src)?.[1])
    expect(params.D).toBe(constant('GossipsubD'))
    expect(params.Dlo).toBe(constant('GossipsubDlo'))
    expect(params.Dhi).toBe(constant('GossipsubDhi'))
    expect(params.Dlazy).toBe(constant('GossipsubDlazy'))
    expect(params.gossipFactor).toBe(constant('GossipsubGossipFactor'))
    expect(params.historyGossip).toBe(constant('GossipsubHistoryGossip'))
    expect(params.maxIHaveLength).toBe(constant('GossipsubMaxIHaveLength'))
    expect(params.idontwantMinDataBytes).toBe(constant('GossipsubIdontwantMinDataSize'))
    const mesh = readFileSync(new URL('../../core/mesh/mesh.ts', import.meta.url), 'utf8')
    // The options go to gossipsub() as they are, directly or through gossipsubStoppingCleanly (core/mesh/gossipsub-stop.ts).
    const call = /gossipsub(?:StoppingCleanly)?\(\{([^}]*scoreThresholds[^)]*)\)/.exec(mesh)?.[1] ?? ''
    expect(call).toContain('StrictSign')
    for (const knob of ['D:', 'Dlo', 'Dhi', 'Dlazy', 'heartbeatInterval', 'floodPublish', 'gossipFactor']) expect(call).not.toContain(knob)
    // The options spread into that call set none of the modelled knobs either.
    expect(call).toContain('...FLEET_GOSSIPSUB_OPTIONS')
    for (const knob of ['D', 'Dlo', 'Dhi', 'Dlazy', 'heartbeatInterval', 'floodPublish', 'gossipFactor', 'historyGossip', 'maxIHaveLength']) expect(Object.keys(FLEET_GOSSIPSUB_OPTIONS)).not.toContain(knob)
  })

  it('delivers every message to every node of a 200-node mesh about D times, and loses none to 5 % transmission loss', () => {
    const random = new SeededRandom(7)
    const graph = connectionGraph(200, 8, random.fork())
    const all = Int32Array.from({ length: 200 }, (_, i) => i)
    const topic = buildTopic(all, graph, 0, params, random.fork())
    for (const m of topic.mesh) {
      expect(m.length).toBeGreaterThanOrEqual(params.Dlo)
      expect(m.length).toBeLessThanOrEqual(params.Dhi)
    }
    const phase = Float64Array.from({ length: 200 }, () => random.next() * 1000)
    let copies = 0
    let recovered = 0
    for (let k = 0; k < 20; k++) {
      const run = propagate(topic, k, 400, params, { hopMs: [10, 80], validateMs: 2, loss: 0.05 }, random, phase)
      for (let v = 0; v < 200; v++) {
        expect(run.seenMs[v]).toBeLessThan(Infinity)
        if (v !== k) expect(run.copies[v]).toBeGreaterThanOrEqual(1)
      }
      copies += run.copies.reduce((s, x) => s + x, 0) / 199
      recovered += run.recovered
      expect(run.to99Ms).toBeLessThan(2_000)
    }
    // Flood publish adds the publisher's other links; each node then hears from most of its mesh.
    expect(copies / 20).toBeGreaterThan(params.Dlo)
    expect(copies / 20).toBeLessThan(params.Dhi)
    // With loss, some nodes got the message only through IHAVE/IWANT.
    expect(recovered).toBeGreaterThan(0)
  })

  it('sampled messages estimate the full model (every message of a second), and the single topic grows with the fleet', async () => {
    const sizes = await measureGossipSizes()
    expect(sizes.todayMessageBytes(1)).toBeGreaterThan(sizes.todayMessageBytes(0))
    expect(sizes.todayMessageBytes(0)).toBeGreaterThan(sizes.nodeEnvelopeBytes)
    const work200 = makeWorkload(200, 20, new SeededRandom(3))
    const o = { nodes: 200, cells: 20, seed: 5, samples: 60 }
    const sampled = runToday(o, sizes, work200)
    const full = runToday({ ...o, exact: true }, sizes, work200)
    expect(Math.abs(sampled.inMeanBps - full.inMeanBps) / full.inMeanBps).toBeLessThan(0.1)
    expect(full.coverage).toBe(1)
    // Every node receives every node's heartbeat each second: inbound ≈ nodes × size × copies.
    const size = sizes.todayMessageBytes(1)
    expect(full.dataMeanBps).toBeGreaterThan(200 * size * params.Dlo * 0.9)
    const work400 = makeWorkload(400, 20, new SeededRandom(3))
    const double = runToday({ ...o, nodes: 400 }, sizes, work400)
    expect(double.inMeanBps / sampled.inMeanBps).toBeGreaterThan(1.7)
    // The per-cell design's inbound does not grow like that.
    const cells200 = runPerCell(o, sizes, work200)
    const cells400 = runPerCell({ ...o, nodes: 400 }, sizes, work400)
    expect(cells200.inMeanBps).toBeLessThan(sampled.inMeanBps / 10)
    expect(cells400.inMeanBps / cells200.inMeanBps).toBeLessThan(1.5)
    expect(cells400.coverage).toBe(1)
  }, 60_000)

  it('sizes the per-cell messages from real signed records: instance with refreshMs in a bundle, member, down, full node record', async () => {
    const sizes = await measureGossipSizes()
    const [entry, ...rest] = decodeFrame(sizes.data.cell)
    expect(rest).toEqual([])
    const [member] = decodeFrame(sizes.data.member).map(e => e.envelope)
    const down = decodeEnvelope(sizes.data.down)
    const nodeAndMember = decodeFrame(sizes.data.node).map(e => e.envelope)
    expect([entry.envelope.kind, member.kind, down.kind]).toEqual(['instance', 'member', 'down'])
    expect(nodeAndMember.map(e => e.kind)).toEqual(['node', 'member'])
    for (const env of [entry.envelope, member, down, ...nodeAndMember]) expect(await verifyRecord(env as SignedNodeKeyEnvelope)).toBe(true)
    if (entry.envelope.kind !== 'instance' || member.kind !== 'member' || down.kind !== 'down') throw new Error('unreachable')
    expect(entry.envelope.record.refreshMs).toBe(SIZED_REFRESH_MS)
    expect(member.record.cells).toEqual([...SIZED_MEMBER_CELLS].sort())
    expect(down.record.subject).not.toBe(down.record.nodeId)
    // Message = gossipsub's share + data (+ the data field's tag and length).
    const within = (message: number, overhead: number, data: Uint8Array): void => {
      expect(message - overhead).toBeGreaterThan(data.length)
      expect(message - overhead).toBeLessThanOrEqual(data.length + 4)
    }
    within(sizes.cellMessageBytes(1), sizes.cellOverheadBytes, sizes.data.cell)
    within(sizes.memberMessageBytes, sizes.membersOverheadBytes, sizes.data.member)
    within(sizes.downMessageBytes, sizes.membersOverheadBytes, sizes.data.down)
    within(sizes.nodeMessageBytes, sizes.membersOverheadBytes, sizes.data.node)
    expect(sizes.cellInstanceEnvelopeBytes).toBeGreaterThan(sizes.instanceEnvelopeBytes)
    expect(sizes.memberMessageBytesFor(4)).toBeGreaterThan(sizes.memberMessageBytesFor(0))
  })

  it('counts the full node records and down reports the members topic carries in per-cell mode', async () => {
    const sizes = await measureGossipSizes()
    const o = { nodes: 300, cells: 20, seed: 5, samples: 200 }
    // No cells: only the members topic, so the row's copies per message are that topic's.
    const work = { ...makeWorkload(300, 20, new SeededRandom(3)), hosts: [] }
    const quiet = { ...CELL_DESIGN, nodeRecordChangesPerNodePerHour: 0, failuresPerNodePerDay: 0, memberTtlMs: Infinity }
    const base = runPerCell({ ...o, design: quiet }, sizes, work)
    // Full node records (with their member record) at 1 per node per 100 s: every node receives each about `copies` times.
    const withNodes = runPerCell({ ...o, design: { ...quiet, nodeRecordChangesPerNodePerHour: 36 } }, sizes, work)
    const expected = 300 * 0.01 * sizes.nodeMessageBytes * base.meanCopies
    expect((withNodes.dataMeanBps - base.dataMeanBps) / expected).toBeGreaterThan(0.7)
    expect((withNodes.dataMeanBps - base.dataMeanBps) / expected).toBeLessThan(1.3)
    // One failure per node per 1,000 s, reported by 16 peers each, of which the views keep and forward 8
    // (LIMITS.downReporters); plus the returning node's records.
    const withDown = runPerCell({ ...o, design: { ...quiet, failuresPerNodePerDay: 86.4 } }, sizes, work)
    const downExpected = 300 * 0.001 * (LIMITS.downReporters * sizes.downMessageBytes + sizes.nodeMessageBytes) * base.meanCopies
    expect((withDown.dataMeanBps - base.dataMeanBps) / downExpected).toBeGreaterThan(0.7)
    expect((withDown.dataMeanBps - base.dataMeanBps) / downExpected).toBeLessThan(1.3)
  }, 60_000)

  it('derives the members topic rates from the real options: refresh only after memberRefreshMs of silence, load changes rate-limited, down reports up to downReporters', () => {
    const silent = { ...CELL_DESIGN, memberChangesPerNodePerHour: 0, memberLoadChangesPerNodePerHour: 0, nodeRecordChangesPerNodePerHour: 0, failuresPerNodePerDay: 0 }
    // Member refresh 6 h, node record re-signed every 18 - 6 = 12 h (a node bundle also counts as a member send).
    const quietRates = memberRates(silent)
    expect(effectiveRefresh(CELL_DESIGN)).toEqual({ memberMs: 6 * 3_600_000, nodeMs: 12 * 3_600_000 })
    expect(quietRates.node * 12 * 3_600).toBeCloseTo(1)
    expect(quietRates.nodeRefresh).toBe(quietRates.node)
    // Member records (alone or in a node bundle): at least one per 6 h, fewer alone than 1 per 6 h.
    expect((quietRates.member + quietRates.node) * 6 * 3_600).toBeGreaterThan(1)
    expect(quietRates.member * 6 * 3_600).toBeLessThan(1)
    expect(quietRates.down).toBe(0)
    // The view's default memberTtlMs (3 h) caps the member refresh at 1 h and the node refresh at 2 h.
    expect(effectiveRefresh({ ...CELL_DESIGN, memberTtlMs: 3 * 3_600_000 })).toEqual({ memberMs: 3_600_000, nodeMs: 2 * 3_600_000 })
    // Load changes offered far faster than the limit are sent about once per memberLoadMinIntervalMs.
    const busy = memberRates({ ...silent, memberLoadChangesPerNodePerHour: 3_600 })
    expect(busy.member * CELL_DESIGN.memberLoadMinIntervalMs / 1000).toBeGreaterThan(0.99)
    expect(busy.member * CELL_DESIGN.memberLoadMinIntervalMs / 1000).toBeLessThan(1.01)
    expect(busy.refresh).toBeLessThan(busy.member * 1e-2)
    // A failure: 16 reporters, of which a view keeps LIMITS.downReporters; the node's start bundle.
    const failing = memberRates({ ...silent, failuresPerNodePerDay: 1 })
    expect(failing.down * 86_400).toBeCloseTo(Math.min(16, LIMITS.downReporters))
    expect((failing.node - failing.nodeRefresh) * 86_400).toBeCloseTo(1)
    expect(CELL_DESIGN.downReporters).toBe(LIMITS.downReporters)
    // The defaults: a few member records an hour, refreshes almost never due.
    const rates = memberRates(CELL_DESIGN)
    expect(rates.member * 3_600).toBeLessThan(2)
    expect(rates.refresh * 3_600).toBeLessThan(0.01)
  })
  it('stage 1 callers follow the cells they call instead of pulling: more topics per node, more inbound', async () => {
    const sizes = await measureGossipSizes()
    const o = { nodes: 300, cells: 20, seed: 5, samples: 60 }
    const work = makeWorkload(300, 20, new SeededRandom(3))
    const pulling = runPerCell(o, sizes, work)
    const following = runPerCell({ ...o, design: { ...CELL_DESIGN, callersFollow: true } }, sizes, work)
    expect(following.topicsMean! - pulling.topicsMean!).toBeGreaterThan(CELL_DESIGN.callsPerNode * 0.8)
    expect(following.topicsMean! - pulling.topicsMean!).toBeLessThanOrEqual(CELL_DESIGN.callsPerNode)
    expect(following.inMeanBps).toBeGreaterThan(pulling.inMeanBps)
    expect(following.coverage).toBe(1)
  }, 60_000)
  it('counts per-cell anti-entropy: digest requests sized by the real encoder and grant chain, differing buckets\' records per round', async () => {
    // The chain a request carries: a host grant and its session certificate, as a node's Credentials present it.
    const key = await generateKeyPair('Ed25519')
    const authority = await generateAuthority()
    const now = Date.now()
    const creds = new Credentials({ peerKey: key })
    creds.addGrant(await issueGrant(authority, { subject: peerIdFromPrivateKey(key).toString(), roles: ['host'], notBeforeMs: now - 1_000, notAfterMs: now + 30 * 86_400_000 }))
    await creds.refresh()
    expect(creds.currentChain(authority.id).length).toBe(CELL_DESIGN.antiEntropyChainBytes)
    expect(CELL_DESIGN.antiEntropyMs).toBe(PER_CELL_ANTI_ENTROPY_MS)
    // 10,000 members: 1,024 buckets of 8 bytes, one for an empty release layer, the chain and a few header bytes.
    const request = digestRequestBytes(CELL_DESIGN.antiEntropyChainBytes, 10_000, [])
    expect(digestRequestBytes(CELL_DESIGN.antiEntropyChainBytes, 10_000, [], 300) - request).toBe(128 * 8 - 8 + 2)
    expect(request - 1_024 * 8 - CELL_DESIGN.antiEntropyChainBytes - 3 - TRANSPORT_OVERHEAD_BYTES).toBeGreaterThan(0)
    expect(request - 1_025 * 8 - CELL_DESIGN.antiEntropyChainBytes - 3 - TRANSPORT_OVERHEAD_BYTES).toBeLessThan(20)
    // A cell asked of its host alone: its buckets (256 for the biggest cell), the chain, the headers.
    expect(cellDigestRequestBytes(CELL_DESIGN.antiEntropyChainBytes, 1_928) - 256 * 8 - CELL_DESIGN.antiEntropyChainBytes - 3 - TRANSPORT_OVERHEAD_BYTES).toBeGreaterThan(0)
    expect(cellDigestRequestBytes(CELL_DESIGN.antiEntropyChainBytes, 1_928) - 256 * 8 - CELL_DESIGN.antiEntropyChainBytes - 3 - TRANSPORT_OVERHEAD_BYTES).toBeLessThan(20)
    // The biggest cell followed adds 256 buckets.
    expect(digestRequestBytes(CELL_DESIGN.antiEntropyChainBytes, 10_000, [1_928]) - request).toBeGreaterThan(256 * 8)
    expect(expectedDiffering(0, 300, 0.01, 60_000)).toBe(0)
    expect(expectedDiffering(4, 250, 0, 60_000)).toBe(1)
    expect(expectedDiffering(4, 250, 0.001, 60_000)).toBeCloseTo(1 + 2 * 4 * 0.001 * 60, 9)

    const sizes = await measureGossipSizes()
    const o = { nodes: 300, cells: 20, seed: 5, samples: 60 }
    const work = makeWorkload(300, 20, new SeededRandom(3))
    const without = runPerCell({ ...o, design: { ...CELL_DESIGN, antiEntropyMs: 0 } }, sizes, work)
    const every60 = runPerCell(o, sizes, work)
    const every30 = runPerCell({ ...o, design: { ...CELL_DESIGN, antiEntropyMs: 30_000 } }, sizes, work)
    expect(without.antiEntropyMeanBps).toBeUndefined()
    expect(every60.antiEntropyMeanBps).toBeGreaterThan(0)
    // The same gossip, plus the anti-entropy bytes.
    expect(every60.inMeanBps - without.inMeanBps).toBeCloseTo(every60.antiEntropyMeanBps!, 6)
    expect(every30.antiEntropyMeanBps! / every60.antiEntropyMeanBps!).toBeGreaterThan(1.5)
    expect(every30.antiEntropyMeanBps! / every60.antiEntropyMeanBps!).toBeLessThanOrEqual(2)
    expect(every60.antiEntropyP99Bps).toBeGreaterThanOrEqual(every60.antiEntropyMeanBps!)
  }, 60_000)
  it('models the refreshes the real FleetGossip runs with (core/fleet defaults)', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const pubsub: FleetPubSub = { subscribe: () => {}, unsubscribe: () => {}, publish: async () => undefined, topicValidators: new Map() }
    const real = (memberTtlMs?: number): { gossip: FleetGossip, view: FleetView } => {
      const clock = new ManualClock()
      const view = new FleetView({ clock, liveness: 'members', ...(memberTtlMs !== undefined ? { memberTtlMs } : {}) })
      return { gossip: new FleetGossip({ pubsub, view, clock, privateKey, dissemination: 'per-cell' }), view }
    }
    // With the memberTtlMs the model assumes: member refresh 6 h, node record re-signed after 12 h.
    const { gossip } = real(CELL_DESIGN.memberTtlMs)
    expect({ memberMs: gossip.memberRefreshMs, nodeMs: gossip.nodeRefreshMs }).toEqual(effectiveRefresh(CELL_DESIGN))
    expect(gossip.memberRefreshMs).toBe(CELL_DESIGN.memberRefreshMs)
    // With the view's default memberTtlMs, as effectiveRefresh says too.
    const defaults = real()
    expect({ memberMs: defaults.gossip.memberRefreshMs, nodeMs: defaults.gossip.nodeRefreshMs }).toEqual(effectiveRefresh({ ...CELL_DESIGN, memberTtlMs: defaults.view.memberTtlMs }))
    // The cell refresh: the real function with its defaults.
    for (const hosts of [1, 10, 25, 100, 1_928]) expect(cellRefreshMs(hosts, CELL_DESIGN.cellRefreshMinMs, CELL_DESIGN.cellRefreshPerSecond)).toBe(cellRefreshMs(hosts))
  })
})
