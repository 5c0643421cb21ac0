import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/authority.ts'
import { readAuthorityKey, writeAuthorityKey } from './authority-file.ts'
import { KeyFileExistsError, KeyFileNotFoundError, KeyFilePermissionError, MalformedKeyFileError } from './errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cell-keys-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

const modeOf = async (p: string): Promise<number> => (await stat(p)).mode & 0o777

describe('authority key file', () => {
  it('creates the file 0600 (and its directory 0700) and reads the same key back', async () => {
    const key = await generateAuthority()
    const path = join(dir, 'nested', 'deeper', 'authority.key')
    await writeAuthorityKey(path, key)
    expect(await modeOf(path)).toBe(0o600)
    expect(await modeOf(join(dir, 'nested', 'deeper'))).toBe(0o700)
    expect((await readFile(path, 'utf8')).trim()).toMatch(/^cell-authority-v1:/)
    expect((await readAuthorityKey(path)).id).toBe(key.id)
  })

  it('refuses to overwrite without force, and replaces atomically with it', async () => {
    const first = await generateAuthority()
    const second = await generateAuthority()
    const path = join(dir, 'authority.key')
    await writeAuthorityKey(path, first)
    await expect(writeAuthorityKey(path, second)).rejects.toThrow(KeyFileExistsError)
    expect((await readAuthorityKey(path)).id).toBe(first.id)
    await writeAuthorityKey(path, second, { force: true })
    expect((await readAuthorityKey(path)).id).toBe(second.id)
    expect(await modeOf(path)).toBe(0o600)
  })

  it('refuses a file readable or writable by group or others', async () => {
    const path = join(dir, 'authority.key')
    await writeAuthorityKey(path, await generateAuthority())
    for (const mode of [0o640, 0o604, 0o620, 0o666]) {
      await chmod(path, mode)
      await expect(readAuthorityKey(path), mode.toString(8)).rejects.toThrow(KeyFilePermissionError)
    }
    await chmod(path, 0o400)
    await readAuthorityKey(path)
  })

  it('refuses malformed content, a directory and a missing file with named errors', async () => {
    const path = join(dir, 'authority.key')
    for (const content of ['', 'hello', 'cell-authority-v1:short', Buffer.from([0xff, 0xfe, 0x00])]) {
      await rm(path, { force: true })
      await writeFile(path, content, { mode: 0o600 })
      await expect(readAuthorityKey(path)).rejects.toThrow(MalformedKeyFileError)
    }
    await writeFile(path, 'x'.repeat(70_000), { mode: 0o600 })
    await expect(readAuthorityKey(path)).rejects.toThrow(MalformedKeyFileError)
    const sub = join(dir, 'sub')
    await mkdir(sub, { mode: 0o700 })
    await expect(readAuthorityKey(sub)).rejects.toThrow(MalformedKeyFileError)
    await expect(readAuthorityKey(join(dir, 'missing.key'))).rejects.toThrow(KeyFileNotFoundError)
  })

  it('honours an aborted signal', async () => {
    const path = join(dir, 'authority.key')
    await expect(writeAuthorityKey(path, await generateAuthority(), { signal: AbortSignal.abort() })).rejects.toThrow()
    await expect(stat(path)).rejects.toThrow()
  })
})
