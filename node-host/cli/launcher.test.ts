// `npx cell …` on a machine whose own Node is older than 24: the launcher (cell.js) re-runs the CLI
// on the Node 24 that `npm install` brings, so npm must not warn about the engine first. npm
// checked package.json `engines` (then ">=24", the runtime's version) against the shell's Node and
// printed five `npm warn EBADENGINE` lines before every first run from a fresh npx cache; `engines`
// now says what the shell's Node must be to start the launcher (>= 20), and the README says why.
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeTempDir, REPO_ROOT } from './cli-harness.ts'

async function run (cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(cmd, args, { cwd: REPO_ROOT, env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

// The shell's own node and npx (PATH without the project's node_modules/.bin).
const PATH = (process.env.PATH ?? '').split(':').filter(p => !p.includes('node_modules')).join(':')
const systemNode = await run('node', ['--version'], { PATH }).catch(() => ({ code: -1, stdout: '', stderr: '' }))
const systemMajor = Number(/^v(\d+)/.exec(systemNode.stdout)?.[1] ?? 0)

let home: { path: string, remove: () => Promise<void> }
beforeAll(async () => { home = await makeTempDir('cell-launcher-') })
afterAll(async () => { await home.remove() })

describe('the cell launcher', () => {
  it('package.json engines admits the Node that starts the launcher, and the runtime stays Node 24', async () => {
    const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string }, devDependencies: Record<string, string> }
    expect(pkg.engines.node).toBe('>=20')
    expect(pkg.devDependencies.node).toMatch(/^\^24\./)
  })

  it.skipIf(systemMajor === 0 || systemMajor >= 24)('npx cell --version on the shell\'s older Node prints no npm warning, only the version (from a fresh npx cache)', async () => {
    const r = await run('npx', ['cell', '--version'], { PATH, HOME: home.path, npm_config_update_notifier: 'false' })
    expect(r.stderr).not.toMatch(/EBADENGINE/)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^cell 0\.1\.0 \(node v24\./)
  }, 150_000)

  it.skipIf(systemMajor === 0 || systemMajor >= 24)('cell.js started by the shell\'s older Node itself (a linked or global `cell`) re-runs on Node 24', async () => {
    const r = await run('node', ['node-host/cli/cell.js', '--version'], { PATH, HOME: home.path })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^cell 0\.1\.0 \(node v24\./)
  }, 60_000)
})
