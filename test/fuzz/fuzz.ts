// `npm run fuzz`: every decoder in targets.ts for CELL_FUZZ_RUNS inputs each (default 1,000,000),
// one after the other, printing inputs/s, accepted and refused counts (by error name), crashes and
// hangs per decoder. Exits 1 on any crash or hang; stops by itself. CELL_FUZZ_ONLY=<substring>
// fuzzes only the matching decoders; CELL_FUZZ_SEED fixes the seed to replay a run.
import { decoderTargets } from './targets.ts'
import { fuzzDecoder, type FuzzResult } from './fuzz-harness.ts'

const runs = Number(process.env.CELL_FUZZ_RUNS ?? 1_000_000)
const only = process.env.CELL_FUZZ_ONLY
const seed = process.env.CELL_FUZZ_SEED !== undefined ? Number(process.env.CELL_FUZZ_SEED) : undefined
const targets = (await decoderTargets()).filter(t => only === undefined || t.name.includes(only))
const results: FuzzResult[] = []
console.log(`fuzzing ${targets.length} decoders, ${runs.toLocaleString('en')} inputs each`)
for (const target of targets) {
  const r = await fuzzDecoder(target, { runs, ...(seed !== undefined ? { seed } : {}) })
  results.push(r)
  const top = Object.entries(r.errors).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([n, c]) => `${n} ${c}`).join(', ')
  console.log(`${r.crash != null ? 'CRASH' : 'ok   '} ${r.name}: ${r.runs.toLocaleString('en')} inputs in ${(r.ms / 1000).toFixed(1)} s (${r.perSecond.toLocaleString('en')}/s), ${r.accepted} accepted, ${r.rejected} refused [${top}], ${r.hangs} hangs`)
  if (r.crash != null) console.log(`  seed ${r.crash.seed}: ${r.crash.error}\n  input ${r.crash.input}`)
}
const crashes = results.filter(r => r.crash != null).length
const total = results.reduce((n, r) => n + r.runs, 0)
console.log(`${total.toLocaleString('en')} inputs, ${crashes} decoders crashed, ${results.reduce((n, r) => n + r.hangs, 0)} hangs`)
process.exit(crashes > 0 ? 1 : 0)
