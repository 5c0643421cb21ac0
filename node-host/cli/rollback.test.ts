import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { makeTempDir, runCli } from './cli-harness.ts'

let home: { path: string, remove: () => Promise<void> }
beforeEach(async () => { home = await makeTempDir('cell-rollback-') })
afterEach(async () => { await home.remove() })

describe('cell rollback', () => {
  it('prints its help with exit 0 and is listed by cell --help', async () => {
    const help = await runCli(['rollback', '--help'], { home: home.path })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: cell rollback <cell> <version>/)
    const top = await runCli(['--help'], { home: home.path })
    expect(top.stdout).toMatch(/cell rollback/)
  })

  it.each([
    [['rollback', 'billing'], /expected at least 2 argument/],
    [['rollback', 'billing', 'one.two'], /not a semantic version/],
    [['rollback', 'billing', '1.0.0', '--digest', 'abc'], /--digest must be 64 hex/],
    [['rollback', 'billing', '1.0.0', '--wait', 'many'], /--wait must be a whole number/],
    [['rollback', 'billing', '1.0.0', '--timeout', '0'], /--timeout must be a positive/],
    [['rollback', 'billing', '1.0.0', '--bogus'], /UsageError/],
    [['rollback', 'billing', '1.0.0', '--output', 'yaml'], /--output must be text or json/]
  ])('%j is a usage error: exit 2 before joining any fleet', async (args, message) => {
    const r = await runCli(args, { home: home.path, env: { CELL_BOOTSTRAP: '' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^UsageError: /)
    expect(r.stderr).toMatch(message)
    expect(r.stdout).toBe('')
  })
})
