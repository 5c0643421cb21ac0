import { describe, expect, it } from 'vitest'
import { suggestCommand } from './suggest.ts'
import { makeTempDir, runCli } from './cli-harness.ts'

const COMMANDS = ['keygen', 'up', 'build', 'publish', 'rollback', 'retire', 'call', 'restore', 'snapshots', 'grant', 'logs', 'top', 'status', 'completion']

describe('cell: an unknown command', () => {
  it.each([
    ['ls', 'status'], ['ps', 'status'], ['deploy', 'publish'], ['log', 'logs'], ['invoke', 'call'], ['rm', 'retire'],
    ['publsh', 'publish'], ['stauts', 'status'], ['snapshot', 'snapshots'], ['rollbak', 'rollback'], ['LOGS', 'logs'], ['pub', 'publish']
  ])('%s: did you mean %s', (typed, meant) => {
    expect(suggestCommand(typed, COMMANDS)).toBe(meant)
  })

  it.each(['xyzzy', 'q', 'frobnicate', 'x'.repeat(10_000), '', 're', 'constructor', '__proto__'])('%s: no guess', (typed) => {
    expect(suggestCommand(typed, COMMANDS)).toBeUndefined()
  })

  it('names the command it guesses, then the usage, with exit 2', async () => {
    const home = await makeTempDir('cell-suggest-')
    try {
      const r = await runCli(['ls'], { home: home.path })
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/^cell: unknown command "ls"; did you mean `cell status`\?\n\nusage: cell <command>/)
      const none = await runCli(['xyzzy'], { home: home.path })
      expect(none.code).toBe(2)
      expect(none.stderr).toMatch(/^cell: unknown command "xyzzy"\n\nusage:/)
    } finally {
      await home.remove()
    }
  })
})
