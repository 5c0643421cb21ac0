// The gossipsub scale model (npm run sim:scale prints the full table): sanity of the propagation
// model on small fleets, the sampled estimate against simulating every message, and the message
// sizes taken from the real codec.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { measureGossipSizes } from './gossip-sizes.ts'
import { makeWorkload, runPerCell, runToday } from './gossip-scale.ts'
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
})
