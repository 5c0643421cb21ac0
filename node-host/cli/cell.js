#!/usr/bin/env node
// Launcher for the `cell` command. The project runs on Node 24 (the `node` devDependency) because it
// executes TypeScript directly; when invoked by an older Node, re-exec under the bundled Node 24.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const major = Number(process.versions.node.split('.')[0])
if (major >= 24) {
  await import(join(here, 'main.ts'))
} else {
  let nodeBin
  try {
    const require = createRequire(import.meta.url)
    nodeBin = join(dirname(require.resolve('node/package.json')), 'bin', 'node')
  } catch {
    console.error('cell: Node 24 is required; run `npm install` in the project to get it')
    process.exit(1)
  }
  const child = spawn(nodeBin, [join(here, 'main.ts'), ...process.argv.slice(2)], { stdio: 'inherit' })
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => { process.exitCode = code ?? (signal ? 128 : 1) })
}
