// `cell retire`'s command line (the fleet behaviour is in test/integration/retire-cli.test.ts and
// retire.test.ts). On the old code `retire` was an unknown command: exit 2 and not in `cell --help`.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { makeTempDir, runCli } from './cli-harness.ts'

let home: { path: string, remove: () => Promise<void> }
beforeEach(async () => { home = await makeTempDir('cell-retire-') })
afterEach(async () => { await home.remove() })

describe('cell retire', () => {
  it('prints its help with exit 0 and is listed by cell --help', async () => {
    const help = await runCli(['retire', '--help'], { home: home.path })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: cell retire <cell>/)
    const top = await runCli(['--help'], { home: home.path })
    expect(top.stdout).toMatch(/cell retire/)
  })

  it.each([
    [['retire'], /expected at least 1 argument/],
    [['retire', 'a', 'b'], /argument/],
    [['retire', 'billing', '--timeout', '0'], /--timeout must be a positive/],
    [['retire', 'billing', '--bogus'], /UsageError/],
    [['retire', 'billing', '--output', 'yaml'], /--output must be text or json/]
  ])('%j is a usage error: exit 2 before joining any fleet', async (args, message) => {
    const r = await runCli(args, { home: home.path, env: { CELL_BOOTSTRAP: '' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^UsageError: /)
    expect(r.stderr).toMatch(message)
    expect(r.stdout).toBe('')
  })
})
