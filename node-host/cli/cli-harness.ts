// Test support: runs the real `cell` launcher in a child process with a private HOME, so CLI tests
// exercise argument parsing, exit codes and the stdout/stderr contract exactly as a user sees them.
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node')
const CELL = join(REPO_ROOT, 'node-host', 'cli', 'cell.js')
/** A CLI invocation takes well under a second; this only stops a hung child from hanging the suite. */
const INVOCATION_TIMEOUT_MS = 15_000

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

export interface CliOptions {
  home: string
  cwd?: string
  env?: Record<string, string>
}

export async function runCli (args: string[], options: CliOptions): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: options.home, ...options.env }
  // The runner's own settings must not leak into what is being tested.
  if (options.env?.CELL_HOME == null) delete env.CELL_HOME
  delete env.CELL_DEBUG
  return await new Promise((resolve, reject) => {
    execFile(NODE, [CELL, ...args], { cwd: options.cwd ?? REPO_ROOT, env, timeout: INVOCATION_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err != null && typeof err.code !== 'number') {
        reject(new Error(`cell ${args.join(' ')} did not exit normally (${String(err.code ?? err.signal)}): ${stderr}`, { cause: err }))
        return
      }
      resolve({ code: err == null ? 0 : err.code as number, stdout, stderr })
    })
  })
}

export async function makeTempDir (prefix: string): Promise<{ path: string, remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: async () => { await rm(path, { recursive: true, force: true }) } }
}

/**
 * The command-line contract every `cell <command>` keeps, as tests: `--help` prints its usage with
 * exit 0 and `cell --help` lists it; each of `usageErrors` exits 2 with a `UsageError:` line that
 * matches its pattern and prints nothing on stdout, before joining any fleet. The invocations run
 * side by side (each is a separate process that exits at once).
 */
export function describeCommandLine (command: string, contract: { usage: RegExp, usageErrors: Array<[string[], RegExp]> }): void {
  describe(`cell ${command}`, () => {
    let home: { path: string, remove: () => Promise<void> }
    beforeAll(async () => { home = await makeTempDir(`cell-${command}-`) })
    afterAll(async () => { await home.remove() })

    it.concurrent(`prints its help with exit 0 and is listed by cell --help`, async () => {
      const [help, top] = await Promise.all([runCli([command, '--help'], { home: home.path }), runCli(['--help'], { home: home.path })])
      expect(help.code).toBe(0)
      expect(help.stdout).toMatch(contract.usage)
      expect(top.stdout).toContain(`cell ${command}`)
    })

    it.concurrent.each(contract.usageErrors)('%j is a usage error: exit 2 before joining any fleet', async (args, message) => {
      const r = await runCli(args, { home: home.path, env: { CELL_BOOTSTRAP: '' } })
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/^UsageError: /)
      expect(r.stderr).toMatch(message)
      expect(r.stdout).toBe('')
    })
  })
}
