import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { loadOrCreatePeerKey, readPeerKey } from './peer-key-file.ts'
import { KeyFileNotFoundError, KeyFilePermissionError, MalformedKeyFileError } from './errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'cell-peer-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('peer key file', () => {
  it('creates an ed25519 key 0600 on first start and loads the same key afterwards', async () => {
    const path = join(dir, 'state', 'peer.key')
    await expect(readPeerKey(path)).rejects.toThrow(KeyFileNotFoundError)
    const first = await loadOrCreatePeerKey(path)
    expect(first.type).toBe('Ed25519')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const again = await loadOrCreatePeerKey(path)
    expect(again.equals(first)).toBe(true)
  })

  it('racing starts agree on one key, and none finds it half written', async () => {
    // The file used to be created empty and then written: a racer read it in between (MalformedKeyFileError;
    // a unit run of 3 Dec, and 1 of 3 runs of this test on the old code).
    for (let round = 0; round < 300; round++) {
      const path = join(dir, `peer-${round}.key`)
      const keys = await Promise.all(Array.from({ length: 8 }, async () => await loadOrCreatePeerKey(path)))
      for (const k of keys) expect(k.equals(keys[0])).toBe(true)
    }
    expect((await readdir(dir)).filter(f => f.endsWith('.tmp'))).toEqual([])
  })

  it('refuses group/other-readable files, garbage and non-ed25519 keys', async () => {
    const path = join(dir, 'peer.key')
    await loadOrCreatePeerKey(path)
    await chmod(path, 0o644)
    await expect(loadOrCreatePeerKey(path)).rejects.toThrow(KeyFilePermissionError)
    await rm(path)
    await writeFile(path, new Uint8Array([1, 2, 3]), { mode: 0o600 })
    await expect(loadOrCreatePeerKey(path)).rejects.toThrow(MalformedKeyFileError)
    await rm(path)
    await writeFile(path, privateKeyToProtobuf(await generateKeyPair('secp256k1')), { mode: 0o600 })
    await expect(loadOrCreatePeerKey(path)).rejects.toThrow(MalformedKeyFileError)
  })
})
