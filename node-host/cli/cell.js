#!/usr/bin/env node
// Launcher for the `cell` command. The project runs on Node 24 (the `node` devDependency) because it
// executes TypeScript directly; when invoked by an older Node, re-exec under the bundled Node 24.
import { spawn } from 'node:child_process'
// A namespace import: a named import of enableCompileCache (Node ≥ 22.1) fails to link on the older
// Node this launcher exists for, before any line of it runs.
import * as nodeModule from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const major = Number(process.versions.node.split('.')[0])
// `cell up` runs for days, mostly idle: it starts with a small young generation (V8's semi-spaces
// otherwise grow to 16 MiB each and stay, some 20 MiB of RSS; a busy node scavenges more often, with
// no cost per call measured above the noise, docs/performance.md) and at most two malloc arenas (the
// WebRTC library's threads otherwise get one each). An operator's own NODE_OPTIONS or
// MALLOC_ARENA_MAX win. `npm run bench:memory` measures the idle node against its 150 MiB goal.
const LEAN_FLAGS = ['--max-semi-space-size=2']
const lean = process.argv[2] === 'up' && process.env.CELL_LEAN !== '1' &&
  ![...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some(f => f.startsWith('--max-semi-space-size'))
const leanEnv = () => ({ ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2', CELL_LEAN: '1' })
if (major >= 24) {
  // The same process (same pid, same descriptors) restarts with the flags: signals and `kill` reach it as before.
  if (lean && typeof process.execve === 'function') process.execve(process.execPath, [process.execPath, ...LEAN_FLAGS, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], leanEnv())
  // Compiled code (and the TypeScript stripped to get it) is cached on disk per source hash: a start
  // loads some 1,400 modules, and this saves about 40 % of it on the second start. The cache lives
  // under the project's node_modules, not in a shared /tmp another user could write into.
  if (typeof nodeModule.enableCompileCache === 'function' && process.env.NODE_COMPILE_CACHE === undefined) {
    try { nodeModule.enableCompileCache(join(here, '..', '..', 'node_modules', '.cache', 'node-compile-cache')) } catch {}
  }
  await import(join(here, 'main.ts'))
} else {
  let nodeBin
  try {
    const require = nodeModule.createRequire(import.meta.url)
    nodeBin = join(dirname(require.resolve('node/package.json')), 'bin', 'node')
  } catch {
    console.error('cell: Node 24 is required; run `npm install` in the project to get it')
    process.exit(1)
  }
  const child = spawn(nodeBin, [...(lean ? LEAN_FLAGS : []), join(here, 'main.ts'), ...process.argv.slice(2)], { stdio: 'inherit', ...(lean ? { env: leanEnv() } : {}) })
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => { process.exitCode = code ?? (signal ? 128 : 1) })
}
