// The key every fleet command acts with (cell call, publish, status, …): a missing one says where it
// was looked for and how to make one. It said only `no key file at /root/.cell/authority.key`.
import { afterEach, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { KeyFileNotFoundError, writeAuthorityKey } from '../keys/index.ts'
import { authorityKey } from './fleet-options.ts'
import { makeTempDir } from './cli-harness.ts'

const saved = { home: process.env.CELL_HOME, key: process.env.CELL_AUTHORITY_KEY }
afterEach(() => {
  for (const [name, value] of [['CELL_HOME', saved.home], ['CELL_AUTHORITY_KEY', saved.key]] as const) {
    if (value === undefined) delete process.env[name]
    else process.env[name] = value
  }
})

describe('authorityKey', () => {
  it('names the file, where its path came from, and `cell keygen`, when there is no key', async () => {
    const dir = await makeTempDir('cell-key-')
    try {
      process.env.CELL_HOME = dir.path
      delete process.env.CELL_AUTHORITY_KEY
      const missing = join(dir.path, 'authority.key')
      await expect(authorityKey(undefined)).rejects.toThrow(new KeyFileNotFoundError(`no authority key at ${missing} (the default, $CELL_HOME/authority.key): \`cell keygen\` makes one there, or pass --key with the key that signs your grants`))
      process.env.CELL_AUTHORITY_KEY = join(dir.path, 'env.key')
      await expect(authorityKey(undefined)).rejects.toThrow(/^no authority key at .*env\.key \(CELL_AUTHORITY_KEY\): /)
      await expect(authorityKey(join(dir.path, 'flag.key'))).rejects.toThrow(/^no authority key at .*flag\.key \(--key\): /)
      // Found: the key itself.
      const key = await generateAuthority()
      await writeAuthorityKey(join(dir.path, 'flag.key'), key)
      expect((await authorityKey(join(dir.path, 'flag.key'))).id).toBe(key.id)
    } finally {
      await dir.remove()
    }
  })
})
