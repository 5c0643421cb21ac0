// `cell restore`'s command line (the restore itself, its operator gate and a caller-only refusal are
// in test/integration/stateful-handover.test.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { makeTempDir, runCli } from './cli-harness.ts'

let home: { path: string, remove: () => Promise<void> }
beforeEach(async () => { home = await makeTempDir('cell-restore-') })
afterEach(async () => { await home.remove() })

describe('cell restore', () => {
  it('prints its help with exit 0 and is listed by cell --help', async () => {
    const help = await runCli(['restore', '--help'], { home: home.path })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: cell restore <cell> <tag>/)
    const top = await runCli(['--help'], { home: home.path })
    expect(top.stdout).toMatch(/restore/)
  })

  it.each([
    [['restore'], /argument/],
    [['restore', 'ledger'], /argument/],
    [['restore', 'ledger', 'snapshot-e1-20261130T123436Z', 'extra'], /argument/],
    [['restore', 'ledger', 'snapshot-e1-20261130T123436Z', '--output', 'yaml'], /--output must be text or json/]
  ])('%j is a usage error: exit 2 before joining any fleet', async (args, message) => {
    const r = await runCli(args, { home: home.path, env: { CELL_BOOTSTRAP: '' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^UsageError: /)
    expect(r.stderr).toMatch(message)
    expect(r.stdout).toBe('')
  })
})
