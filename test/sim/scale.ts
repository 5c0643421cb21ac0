// npm run sim:scale: per-node gossip bandwidth and view convergence at fleet scale, today's single
// fleet topic against the per-cell design, on the gossipsub model (test/sim/gossipsub-model.ts).
//
//   node test/sim/scale.ts                          1,000 and 10,000 nodes, 100 cells
//   node test/sim/scale.ts --validate               also the full model (every message of a second) at ≤ 2,000 nodes
//   options: --nodes 1000,10000 --cells 100 --samples 100 --seed 1 --hop-ms 10,80 --loss 0.01
//            --callers-follow (stage 1: a caller follows the cells it calls instead of pulling)
//            --write (table into docs/biology.md)

import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { measureGossipSizes } from './gossip-sizes.ts'
import { CELL_DESIGN, effectiveRefresh, makeWorkload, memberRates, runPerCell, runToday, scaleTable } from './gossip-scale.ts'
import { DEFAULT_LINKS } from './gossipsub-model.ts'
import type { ScaleRow } from './gossip-scale.ts'
import { SeededRandom } from './prng.ts'

const DOC = new URL('../../docs/biology.md', import.meta.url)
const BEGIN = '<!-- scale:begin -->'
const END = '<!-- scale:end -->'

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '1000,10000' },
      cells: { type: 'string', default: '100' },
      samples: { type: 'string', default: '100' },
      seed: { type: 'string', default: '1' },
      validate: { type: 'boolean', default: false },
      'hop-ms': { type: 'string', default: DEFAULT_LINKS.hopMs.join(',') },
      loss: { type: 'string', default: String(DEFAULT_LINKS.loss) },
      'callers-follow': { type: 'boolean', default: false },
      write: { type: 'boolean', default: false }
    }
  })
  const sizes = await measureGossipSizes()
  const cells = Number(values.cells)
  const samples = Number(values.samples)
  const seed = Number(values.seed)
  const [lo, hi] = values['hop-ms'].split(',').map(Number)
  const links = { ...DEFAULT_LINKS, hopMs: [lo, hi] as const, loss: Number(values.loss) }
  if (!(lo >= 0 && hi >= lo && links.loss >= 0 && links.loss < 1)) throw new Error('--hop-ms lo,hi with 0 ≤ lo ≤ hi, --loss in [0, 1)')
  const linkFlags = values['hop-ms'] !== DEFAULT_LINKS.hopMs.join(',') || links.loss !== DEFAULT_LINKS.loss ? ` --hop-ms ${lo},${hi} --loss ${links.loss}` : ''
  const out: string[] = []
  const say = (line: string): void => { out.push(line); process.stdout.write(line + '\n') }
  say(`Message sizes (bytes on the wire: gossipsub RPC with StrictSign fields + yamux + Noise), from the real codec and signatures: today's heartbeat ${sizes.todayMessageBytes(0)} with no replica, ${sizes.todayMessageBytes(1)} with one, +${sizes.todayMessageBytes(2) - sizes.todayMessageBytes(1)} per further replica (node record envelope ${sizes.nodeEnvelopeBytes}, instance envelope ${sizes.instanceEnvelopeBytes}); per-cell messages: instance record (with refreshMs) on its cell topic ${sizes.cellMessageBytes(1)} (envelope ${sizes.cellInstanceEnvelopeBytes}), member record ${sizes.memberMessageBytes} (envelope ${sizes.memberEnvelopeBytes}), node + member record ${sizes.nodeMessageBytes}, down report ${sizes.downMessageBytes} (envelope ${sizes.downEnvelopeBytes}); IHAVE ${sizes.ihaveBytes(1)} with one id, +${((sizes.ihaveBytes(100) - sizes.ihaveBytes(0)) / 100).toFixed(0)} per id (message id ${sizes.messageIdBytes}); IDONTWANT ${sizes.idontwantBytes}; gossipsub's own share of a message ${sizes.gossipsubOverheadBytes}.`)
  const d = { ...CELL_DESIGN, callersFollow: values['callers-follow'] }
  const r = memberRates(d)
  const refresh = effectiveRefresh(d)
  const perHour = (perS: number): string => (perS * 3_600).toFixed(3)
  say('')
  say(`Per-cell parameters (FleetGossip's defaults): cellRefreshMinMs ${d.cellRefreshMinMs}, cellRefreshPerSecond ${d.cellRefreshPerSecond}, memberRefreshMs ${d.memberRefreshMs / 3_600_000} h with FleetView memberTtlMs ${d.memberTtlMs / 3_600_000} h (the view's default is 3 h; member refresh ${refresh.memberMs / 3_600_000} h; full node record at start, on a change of addrs/grants/roles/slots/halts, and re-signed after ${refresh.nodeMs / 3_600_000} h without one), memberLoadMinIntervalMs ${d.memberLoadMinIntervalMs / 60_000} min, down reports kept per subject ${d.downReporters} (quorum ${d.downQuorum}). Assumed per node: ${d.memberChangesPerNodePerHour} slot/cell change and ${d.memberLoadChangesPerNodePerHour} load change an hour, ${d.nodeRecordChangesPerNodePerHour.toFixed(3)} node record changes an hour, ${d.failuresPerNodePerDay} failure a day reported by ${d.reportersPerFailure} peers, ${d.changesPerReplicaPerS * 3_600} instance changes per replica an hour, ${d.candidates} standby candidates per cell, ${d.callsPerNode} called cells ${d.callersFollow ? 'followed' : `pulled every ${d.pullMs / 1000} s (a sample of ${d.pullInstances} replicas)`}; anti-entropy: digest rounds every ${d.antiEntropyMs / 1000} s (the members layer in buckets, the release layer, and each followed cell asked of a host). Members topic per node an hour: ${perHour(r.node)} node + member bundles (${perHour(r.nodeRefresh)} of them refreshes), ${perHour(r.member)} member records (${perHour(r.refresh)} of them refreshes), ${perHour(r.down)} down reports.`)
  say('')
  const rows: ScaleRow[] = []
  for (const nodes of values.nodes.split(',').map(Number)) {
    const work = makeWorkload(nodes, cells, new SeededRandom(seed))
    const biggest = Math.max(...work.hosts.map(h => h.length))
    process.stderr.write(`${nodes} nodes: ${work.hosts.reduce((s, h) => s + h.length, 0)} replicas in ${cells} cells (biggest ${biggest})\n`)
    const o = { nodes, cells, seed, samples, links, design: d }
    rows.push(runToday(o, sizes, work))
    process.stderr.write(`  today done in ${(rows[rows.length - 1].wallMs / 1000).toFixed(1)} s\n`)
    rows.push(runPerCell(o, sizes, work))
    process.stderr.write(`  per-cell done in ${(rows[rows.length - 1].wallMs / 1000).toFixed(1)} s\n`)
    // The full model at 10,000 nodes is 10,000 messages of ~10⁵ deliveries each: validated at ≤ 2,000 only.
    if (values.validate && nodes <= 2_000) {
      const full = runToday({ ...o, exact: true }, sizes, work)
      const est = rows[rows.length - 2]
      say(`Validation at ${nodes} nodes, today's design: sampled ${samples} messages → mean ${(est.inMeanBps / 1000).toFixed(1)} kB/s, p99 ${(est.inP99Bps / 1000).toFixed(1)} kB/s, copies ${est.meanCopies.toFixed(2)}; every message of one second (${nodes}) → mean ${(full.inMeanBps / 1000).toFixed(1)} kB/s, p99 ${(full.inP99Bps / 1000).toFixed(1)} kB/s, copies ${full.meanCopies.toFixed(2)}, 99 % p50 ${(full.conv50Ms / 1000).toFixed(2)} s p99 ${(full.conv99Ms / 1000).toFixed(2)} s (${(full.wallMs / 1000).toFixed(1)} s wall).`)
      const fullCell = runPerCell({ ...o, exact: true }, sizes, work)
      const estCell = rows[rows.length - 1]
      say(`Validation at ${nodes} nodes, per-cell design: sampled → mean ${(estCell.inMeanBps / 1000).toFixed(2)} kB/s, p99 ${(estCell.inP99Bps / 1000).toFixed(2)} kB/s; every publisher once, weighted by its rate → mean ${(fullCell.inMeanBps / 1000).toFixed(2)} kB/s, p99 ${(fullCell.inP99Bps / 1000).toFixed(2)} kB/s.`)
      say('')
    }
  }
  const topics = rows.filter(r => r.topicsMean !== undefined).map(r => `${r.nodes.toLocaleString('en')} nodes: ${r.topicsMean!.toFixed(2)} topics per node on average, at most ${r.topicsMax}`).join('; ')
  say(scaleTable(rows))
  say('')
  say(`Per-cell topics followed (besides the members topic): ${topics}.`)
  say(`Command: \`npm run sim:scale -- --nodes ${values.nodes} --cells ${cells} --samples ${samples} --seed ${seed}${linkFlags}${d.callersFollow ? ' --callers-follow' : ''}${values.validate ? ' --validate' : ''}\` (model wall time per row: ${rows.map(r => (r.wallMs / 1000).toFixed(1)).join(', ')} s).`)
  if (values.write) {
    const doc = readFileSync(DOC, 'utf8')
    const a = doc.indexOf(BEGIN)
    const b = doc.indexOf(END)
    if (a < 0 || b < a) throw new Error(`docs/biology.md lacks the ${BEGIN} … ${END} markers`)
    writeFileSync(DOC, doc.slice(0, a + BEGIN.length) + '\n' + out.join('\n') + '\n' + doc.slice(b))
    process.stdout.write('wrote docs/biology.md\n')
  }
}

await main()
