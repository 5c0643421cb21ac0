// Interleaved before/after of the full call path: `node test/bench/full-path-ab.ts <treeA> <treeB> [ms] [rounds] [inFlight]`.
// Each tree is a checkout of this repository (e.g. `git worktree add /tmp/before <commit>` with a
// node_modules link); both full paths (a node and a bubblewrap replica each, and a client mesh in
// this process) start first, then rounds of calls alternate A, B, B, A, ... so that a shared,
// drifting machine load falls on both alike. Prints per tree the median calls/s, p99 and CPU per
// call of the caller, the node and the replica (the per-round values in brackets). The caller's CPU
// includes the other tree's idle client mesh in this process (heartbeats, gossip), so it reads a
// little above `npm run bench`'s. For comparing changes on a machine other work shares;
// `npm run bench` is the figure of record.
import { isAbsolute, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { FullPath, LatencyFigure } from './full-path.ts'

const [treeA, treeB] = process.argv.slice(2, 4)
if (treeA === undefined || treeB === undefined) {
  console.error('usage: node test/bench/full-path-ab.ts <treeA> <treeB> [ms per round, 2000] [rounds, 8] [in flight, 64]')
  process.exit(2)
}
const ms = Number(process.argv[4] ?? 2000)
const rounds = Number(process.argv[5] ?? 8)
const inFlight = Number(process.argv[6] ?? 64)

interface FullPathModule {
  startFullPath: () => Promise<FullPath>
  fullPathCalls: (mesh: FullPath['mesh'], nodePid: number, inFlight: number, o: { quick: boolean, durationMs: number }, count: number) => Promise<LatencyFigure>
}
interface Side { tree: string, m: FullPathModule, fp: FullPath, figures: LatencyFigure[] }

const sides: Side[] = []
try {
  for (const tree of [treeA, treeB]) {
    const root = isAbsolute(tree) ? tree : resolve(tree)
    const m = await import(pathToFileURL(`${root}/test/bench/full-path.ts`).href) as FullPathModule
    sides.push({ tree, m, fp: await m.startFullPath(), figures: [] })
  }
  const pid = (s: Side): number => s.fp.node.child.pid ?? 0
  for (const s of sides) await s.m.fullPathCalls(s.fp.mesh, pid(s), inFlight, { quick: true, durationMs: 0 }, 5_000)
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      s.figures.push(await s.m.fullPathCalls(s.fp.mesh, pid(s), inFlight, { quick: false, durationMs: ms }, 0))
    }
  }
} finally {
  for (const s of sides) await s.fp.stop()
}

const median = (xs: number[]): number => {
  const a = [...xs].sort((x, y) => x - y)
  return a.length % 2 === 1 ? a[a.length >> 1] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2
}
for (const s of sides) {
  const all = (f: (x: LatencyFigure) => number, digits: number): string => `${median(s.figures.map(f)).toFixed(digits)} [${s.figures.map(x => f(x).toFixed(digits)).join(' ')}]`
  console.log(`${s.tree}, ${inFlight} in flight, ${rounds} rounds of ${ms} ms: calls/s ${all(f => f.perSec / 1000, 1)} k; p99 ${all(f => f.p99Ms, 1)} ms; CPU per call (µs): caller ${all(f => f.cpuUsPerCall.caller, 1)}, node ${all(f => f.cpuUsPerCall.node, 1)}, replica ${all(f => f.cpuUsPerCall.replica, 1)}`)
}
