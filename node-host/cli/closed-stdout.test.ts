// `cell status | head -3`, `cell logs -f | head`: the reader goes away and stdout's pipe closes.
// Before, the next write raised an unhandled EPIPE: a stack trace on stderr and exit status 1 (seen
// with `cell publish … | head -3`). Now the command stops quietly with 141, what a shell reports for
// a process killed by SIGPIPE; `cell up` keeps running (a node must not die with its log pipe).
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from './cli-harness.ts'

/** Runs the CLI with its stdout's read end closed before it writes a byte. */
async function withClosedStdout (args: string[]): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'node-host/cli/cell.js'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.destroy()
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => { resolve(c) }))
  clearTimeout(timer)
  return { code, stderr }
}

describe('a CLI whose stdout reader went away', () => {
  it.each([['--version'], ['completion', 'bash'], ['publish', '--help']])('cell %s stops quietly with 141', async (...args) => {
    const r = await withClosedStdout(args)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(141)
  })

  it('cell up keeps going and drops its output (here: its --help, then exits as usual)', async () => {
    const r = await withClosedStdout(['up', '--help'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
  })
})
