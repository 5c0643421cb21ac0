// `cell publish`'s command line: the version comes from Cell.toml unless told otherwise, and a
// contradicting one is refused before joining any fleet (the fleet behaviour is in
// test/integration/cli-answers.test.ts and multi-process.test.ts).
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { makeTempDir, runCli } from './cli-harness.ts'
import { chooseVersion } from './publish.ts'

let home: { path: string, remove: () => Promise<void> }
beforeEach(async () => { home = await makeTempDir('cell-publish-') })
afterEach(async () => { await home.remove() })

const TOML = (version: string): string => `[cell]\nname = "greeter"\n${version}main = "cell.ts"\n\n[cell.authority]\ned25519 = "${'ab'.repeat(32)}"\n`

describe('cell publish', () => {
  it('takes Cell.toml\'s version, and refuses another unless forced', () => {
    expect(chooseVersion('1.2.0', undefined, false)).toEqual({ version: '1.2.0' })
    expect(chooseVersion('1.2.0', '1.2.0', false)).toEqual({ version: '1.2.0' })
    expect(chooseVersion('1.2.0', '1.3.0', false)).toEqual({ error: expect.stringMatching(/Cell\.toml says version 1\.2\.0 but the command line says 1\.3\.0.*--force-version/) })
    expect(chooseVersion('1.2.0', '1.3.0', true)).toEqual({ version: '1.3.0' })
    expect(chooseVersion(undefined, '0.4.0', false)).toEqual({ version: '0.4.0' })
    expect(chooseVersion(undefined, undefined, false)).toEqual({ error: expect.stringMatching(/names no version/) })
    expect(chooseVersion('1.2.0', 'one', true)).toEqual({ error: expect.stringMatching(/not a semantic version/) })
  })

  it.each([
    [['2.0.0'], 'version = "1.0.0"\n', /Cell\.toml says version 1\.0\.0 but the command line says 2\.0\.0/],
    [[], '', /Cell\.toml names no version/],
    [['1.0.0', '--output', 'yaml'], 'version = "1.0.0"\n', /--output must be text or json/],
    [['1.0.0', '--wait', 'x'], 'version = "1.0.0"\n', /--wait must be a whole number/]
  ])('%j with %j in Cell.toml is a usage error: exit 2 before joining any fleet', async (args, version, message) => {
    const dir = join(home.path, 'greeter')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'Cell.toml'), TOML(version))
    const r = await runCli(['publish', ...args, '--dir', dir], { home: home.path, env: { CELL_BOOTSTRAP: '' } })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^UsageError: /)
    expect(r.stderr).toMatch(message)
    expect(r.stdout).toBe('')
  })
})
