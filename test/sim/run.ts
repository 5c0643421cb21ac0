// Command line of the biology simulator.
//
//   node test/sim/run.ts --seeds 1000            all scenarios, seeds 1..1000, two worker threads
//   node test/sim/run.ts --quick                 50 seeds (what the test suite runs)
//   node test/sim/run.ts --seeds 1000 --write    also rewrite the table in docs/biology.md
//   options: --first-seed N, --workers N, --scenarios abcd,
//            --dissemination flat|per-cell, --cell-repair none|MIN,MAX (per-cell: lost cell messages)
//
// Exits 1 when any run breaks an invariant.

import { readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { SCENARIOS } from './scenarios.ts'
import type { ScenarioResult } from './scenarios.ts'
import { combinedDigest, markdownTable, summarise } from './stats.ts'

export interface SimRunOptions {
  scenarios: string[]
  firstSeed: number
  seeds: number
  /** How views are fed (world.ts): today's flat fleet gossip (default) or the per-cell design. */
  dissemination?: 'flat' | 'per-cell'
  /** Per-cell mode: how late a lost cell message arrives (world.ts `cellRepairMs`; default gossipsub's repair). */
  cellRepairMs?: readonly [number, number] | 'none'
}

export function runSeeds (options: SimRunOptions): ScenarioResult[] {
  const out: ScenarioResult[] = []
  for (const key of options.scenarios) {
    const extra = options.dissemination === 'per-cell' ? { dissemination: 'per-cell' as const, cellRepairMs: options.cellRepairMs } : undefined
    for (let seed = options.firstSeed; seed < options.firstSeed + options.seeds; seed++) out.push(SCENARIOS[key].run(seed, undefined, extra))
  }
  return out
}

async function runParallel (options: SimRunOptions, workers: number): Promise<ScenarioResult[]> {
  if (workers <= 1) return runSeeds(options)
  const per = Math.ceil(options.seeds / workers)
  const chunks: SimRunOptions[] = []
  for (let from = 0; from < options.seeds; from += per) {
    chunks.push({ scenarios: options.scenarios, firstSeed: options.firstSeed + from, seeds: Math.min(per, options.seeds - from), dissemination: options.dissemination, cellRepairMs: options.cellRepairMs })
  }
  const parts = await Promise.all(chunks.map(async chunk => await new Promise<ScenarioResult[]>((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: chunk })
    w.once('message', resolve)
    w.once('error', reject)
    w.once('exit', code => { if (code !== 0) reject(new Error(`simulator worker exited with ${code}`)) })
  })))
  return parts.flat()
}

const DOC = new URL('../../docs/biology.md', import.meta.url)
// The per-cell design's run has its own table (docs/biology.md, "Scale").
const markers = (dissemination: string): [string, string] => dissemination === 'per-cell' ? ['<!-- sim-per-cell:begin -->', '<!-- sim-per-cell:end -->'] : ['<!-- sim:begin -->', '<!-- sim:end -->']

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '1000' },
      quick: { type: 'boolean', default: false },
      'first-seed': { type: 'string', default: '1' },
      workers: { type: 'string', default: String(Math.min(2, availableParallelism())) },
      scenarios: { type: 'string', default: Object.keys(SCENARIOS).join('') },
      write: { type: 'boolean', default: false },
      dissemination: { type: 'string', default: 'flat' },
      'cell-repair': { type: 'string' }
    }
  })
  if (values.dissemination !== 'flat' && values.dissemination !== 'per-cell') throw new Error('--dissemination is flat or per-cell')
  const cellRepairMs = parseRepair(values['cell-repair'])
  if (cellRepairMs !== undefined && values.dissemination !== 'per-cell') throw new Error('--cell-repair needs --dissemination per-cell')
  const options: SimRunOptions = {
    scenarios: [...values.scenarios].filter(k => k in SCENARIOS),
    firstSeed: Number(values['first-seed']),
    seeds: values.quick ? 50 : Number(values.seeds),
    dissemination: values.dissemination,
    cellRepairMs
  }
  const started = performance.now()
  const results = await runParallel(options, Number(values.workers))
  const seconds = (performance.now() - started) / 1000
  const summaries = options.scenarios.map(k => summarise(k, results.filter(r => r.scenario === k)))
  const titles = Object.fromEntries(Object.entries(SCENARIOS).map(([k, s]) => [k, s.title]))
  const command = `node test/sim/run.ts --seeds ${options.seeds}${options.firstSeed !== 1 ? ` --first-seed ${options.firstSeed}` : ''}${values.scenarios !== Object.keys(SCENARIOS).join('') ? ` --scenarios ${values.scenarios}` : ''}${values.dissemination !== 'flat' ? ` --dissemination ${values.dissemination}` : ''}${values['cell-repair'] !== undefined ? ` --cell-repair ${values['cell-repair']}` : ''}`
  const table = markdownTable(titles, summaries)
  const digest = combinedDigest(results)
  const report = [
    `Command: \`${command}\` (seeds ${options.firstSeed}–${options.firstSeed + options.seeds - 1}; times in simulated seconds)`,
    '',
    table,
    '',
    `Digest of all event logs: \`${digest.slice(0, 16)}\` (the same command must print the same digest).`
  ].join('\n')
  process.stdout.write(report + '\n')
  for (const s of summaries) for (const e of s.examples) process.stdout.write(`VIOLATION (${s.scenario}) ${e}\n`)
  process.stdout.write(`${results.length} runs in ${seconds.toFixed(1)} s wall time\n`)
  if (values.write) {
    const [BEGIN, END] = markers(values.dissemination)
    const doc = readFileSync(DOC, 'utf8')
    const a = doc.indexOf(BEGIN)
    const b = doc.indexOf(END)
    if (a < 0 || b < a) throw new Error(`docs/biology.md lacks the ${BEGIN} … ${END} markers`)
    writeFileSync(DOC, doc.slice(0, a + BEGIN.length) + '\n' + report + '\n' + doc.slice(b))
    process.stdout.write('wrote docs/biology.md\n')
  }
  if (summaries.some(s => s.violations > 0)) process.exitCode = 1
}

/** `--cell-repair none` or `--cell-repair 1000,3000` (ms). */
function parseRepair (text: string | undefined): readonly [number, number] | 'none' | undefined {
  if (text === undefined) return undefined
  if (text === 'none') return 'none'
  const [a, b] = text.split(',').map(Number)
  if (!(a >= 0 && b >= a)) throw new Error('--cell-repair is none or MIN,MAX in ms')
  return [a, b]
}

// Only the simulator's own workers carry SimRunOptions; other thread pools (vitest) may import this file.
if (!isMainThread && Array.isArray((workerData as Partial<SimRunOptions> | null)?.scenarios)) {
  parentPort?.postMessage(runSeeds(workerData as SimRunOptions))
} else if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) {
  await main()
}
