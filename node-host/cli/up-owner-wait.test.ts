// `cell up --owner-wait`: a duration, checked before the node starts (test:fleet-restart uses it on
// real nodes; docs/storage.md says what it bounds).
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
    expect(await readdir(dir)).toEqual([])
  })
})
