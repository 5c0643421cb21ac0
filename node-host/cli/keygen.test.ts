import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { authorityIdOf } from '../../core/identity/index.ts'
import { parseManifest } from '../../core/manifest/index.ts'
import { readAuthorityKey } from '../keys/index.ts'
import { makeTempDir, runCli } from './cli-harness.ts'

let home: { path: string, remove: () => Promise<void> }
beforeEach(async () => { home = await makeTempDir('cell-keygen-') })
afterEach(async () => { await home.remove() })

describe('cell keygen', () => {
  it('writes a 0600 key under ~/.cell and prints the matching [cell.authority] TOML', async () => {
    const r = await runCli(['keygen'], { home: home.path })
    expect(r.stderr).not.toMatch(/Error/)
    expect(r.code).toBe(0)
    const path = join(home.path, '.cell', 'authority.key')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(r.stderr).toContain(path)

    const toml = parseToml(r.stdout) as { cell: { authority: { ed25519: string } } }
    expect(Object.keys(toml)).toEqual(['cell'])
    expect(Object.keys(toml.cell.authority)).toEqual(['ed25519'])
    const key = await readAuthorityKey(path)
    expect(toml.cell.authority.ed25519).toBe(authorityIdOf(key.publicKey))
    // The private key never reaches stdout or stderr.
    const secret = (await readFile(path, 'utf8')).trim()
    expect(r.stdout + r.stderr).not.toContain(secret.split(':')[1])
    // What it prints is exactly what a manifest takes.
    const manifest = parseManifest(`[cell]\nname = "greeter"\n\n${r.stdout}`)
    expect(manifest.authority.ed25519).toBe(key.id)
  })

  it('refuses to overwrite an existing key without --force, and replaces it with --force', async () => {
    const out = join(home.path, 'keys', 'a.key')
    const first = await runCli(['keygen', '--out', out], { home: home.path })
    expect(first.code).toBe(0)
    const original = await readFile(out, 'utf8')

    const second = await runCli(['keygen', '--out', out], { home: home.path })
    expect(second.code).toBe(1)
    expect(second.stdout).toBe('')
    expect(second.stderr).toMatch(/^KeyFileExistsError: .*a\.key already exists; pass --force/m)
    expect(await readFile(out, 'utf8')).toBe(original)

    const forced = await runCli(['keygen', '--out', out, '--force'], { home: home.path })
    expect(forced.code).toBe(0)
    const replaced = await readAuthorityKey(out)
    expect(forced.stdout).toContain(`ed25519 = "${replaced.id}"`)
    expect(await readFile(out, 'utf8')).not.toBe(original)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
  })

  it('--public prints the [cell.authority] table of the existing key and changes nothing', async () => {
    const out = join(home.path, 'keys', 'a.key')
    const made = await runCli(['keygen', '--out', out], { home: home.path })
    expect(made.code).toBe(0)
    const original = await readFile(out, 'utf8')
    const shown = await runCli(['keygen', '--public', '--out', out], { home: home.path })
    expect(shown.code).toBe(0)
    expect(shown.stdout).toBe(made.stdout)
    expect(await readFile(out, 'utf8')).toBe(original)
    // A second keygen's refusal says how to get the table back.
    const again = await runCli(['keygen', '--out', out], { home: home.path })
    expect(again.stderr).toContain('cell keygen --public')
    // No key there: a named error saying what makes one; --force with --public: a usage error.
    const none = await runCli(['keygen', '--public', '--out', join(home.path, 'none.key')], { home: home.path })
    expect(none.code).toBe(1)
    expect(none.stdout).toBe('')
    expect(none.stderr).toMatch(/^KeyFileNotFoundError: no authority key at .*none\.key; `cell keygen` makes one/m)
    const both = await runCli(['keygen', '--public', '--force', '--out', out], { home: home.path })
    expect(both.code).toBe(2)
    expect(await readFile(out, 'utf8')).toBe(original)
  })

  it('honours CELL_HOME', async () => {
    const cellHome = join(home.path, 'elsewhere')
    const r = await runCli(['keygen'], { home: home.path, env: { CELL_HOME: cellHome } })
    expect(r.code).toBe(0)
    const key = await readAuthorityKey(join(cellHome, 'authority.key'))
    expect(r.stdout).toBe(`[cell.authority]\ned25519 = "${key.id}"\n`)
  })

  it('prints help with exit 0 and rejects unknown flags and arguments with exit 2', async () => {
    const help = await runCli(['keygen', '--help'], { home: home.path })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: cell keygen/)
    for (const args of [['keygen', '--bogus'], ['keygen', 'extra'], ['keygen', '--out']]) {
      const r = await runCli(args, { home: home.path })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(/^UsageError: /)
    }
    // Nothing was written by the failed invocations.
    await expect(stat(join(home.path, '.cell'))).rejects.toThrow()
  })
})
