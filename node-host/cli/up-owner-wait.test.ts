// `cell up --owner-wait` and `--voter-replace-after`: durations, checked before the node starts
// (test:fleet-restart and the soak use them on real nodes; docs/storage.md says what they bound).
import { afterAll, describe, expect, it } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cellRun } from '../../test/integration/processes.ts'

describe('cell up --owner-wait', () => {
  let dir = ''
  afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

  it('is listed in the help, and a value that is not a duration is a usage error before anything starts', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-owner-wait-'))
    const env = { CELL_HOME: dir }
    const help = await cellRun(['up', '--help'], 15_000, env)
    expect(help.stdout).toMatch(/--owner-wait D +how long a stateful claim is left to its last owner/)
    const bad = await cellRun(['up', '--owner-wait', 'soon', '--data', join(dir, 'node')], 15_000, env)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/UsageError: --owner-wait: invalid duration "soon"/)
    expect(help.stdout).toMatch(/--voter-replace-after D\n +a voter of a stateful claim this node owns that has been out of the fleet/)
    const worse = await cellRun(['up', '--voter-replace-after', 'later', '--data', join(dir, 'node')], 15_000, env)
    expect(worse.code).toBe(2)
    expect(worse.stderr).toMatch(/UsageError: --voter-replace-after: invalid duration "later"/)
    expect(await readdir(dir)).toEqual([])
  })
})
