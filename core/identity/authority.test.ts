import { describe, expect, it } from 'vitest'
import {
  authorityIdOf, deserializeAuthorityKey, generateAuthority, isAuthorityId, parseAuthorityId,
  serializeAuthorityKey, signBytes, verifyBytes
} from './authority.ts'
import { MalformedRecordError } from './errors.ts'
import { CellError } from '../errors.ts'

const data = new TextEncoder().encode('hello')

describe('authority keys', () => {
  it('ids are 64 lowercase hex chars of the public key and parse back', async () => {
    const key = await generateAuthority()
    expect(key.id).toMatch(/^[0-9a-f]{64}$/)
    expect(authorityIdOf(key.publicKey)).toBe(key.id)
    expect(authorityIdOf(key.privateKey.publicKey)).toBe(key.id)
    expect(parseAuthorityId(key.id)).toEqual(key.publicKey)
    expect(isAuthorityId(key.id)).toBe(true)
    expect((await generateAuthority()).id).not.toBe(key.id)
  })

  it('rejects ids that are not exactly 64 lowercase hex characters', () => {
    const good = 'ab'.repeat(32)
    for (const bad of [good.toUpperCase(), good.slice(2), good + 'ab', 'zz' + good.slice(2), '', ` ${good.slice(1)}`]) {
      expect(() => parseAuthorityId(bad)).toThrow(MalformedRecordError)
      expect(isAuthorityId(bad)).toBe(false)
    }
  })

  it('serialises to a one-line text format that round-trips', async () => {
    const key = await generateAuthority()
    const text = serializeAuthorityKey(key)
    expect(text).toMatch(/^cell-authority-v1:[A-Za-z0-9_-]{43}$/)
    const back = await deserializeAuthorityKey(text + '\n')
    expect(back.id).toBe(key.id)
    const sig = await signBytes(back, 'test', data)
    expect(await verifyBytes(key.id, 'test', data, sig)).toBe(true)
  })

  it('rejects malformed serialised keys with MalformedRecordError', async () => {
    const text = serializeAuthorityKey(await generateAuthority())
    const seed = text.slice('cell-authority-v1:'.length)
    const cases = [
      '', 'garbage', `cell-authority-v2:${seed}`, `cell-authority-v1:${seed.slice(1)}`,
      `cell-authority-v1:${seed}A`, `cell-authority-v1:${seed.slice(0, 42)}+`,
      // Non-zero padding bits: decodes, but is not the canonical spelling of any seed.
      `cell-authority-v1:${seed.slice(0, 42)}${seed.endsWith('B') ? 'C' : 'B'}`
    ]
    for (const bad of cases) {
      const err = await deserializeAuthorityKey(bad).catch(e => e)
      expect(err, bad).toBeInstanceOf(MalformedRecordError)
      expect(err).toBeInstanceOf(CellError)
    }
  })

  it('signs under a domain; the signature fails for other data, domains or keys', async () => {
    const a = await generateAuthority()
    const b = await generateAuthority()
    const sig = await signBytes(a, 'app-v1', data)
    expect(await verifyBytes(a.id, 'app-v1', data, sig)).toBe(true)
    expect(await verifyBytes(a.id, 'app-v2', data, sig)).toBe(false)
    expect(await verifyBytes(a.id, 'app-v1', new TextEncoder().encode('hellO'), sig)).toBe(false)
    expect(await verifyBytes(b.id, 'app-v1', data, sig)).toBe(false)
    expect(await verifyBytes(a.id, 'app-v1', data, sig.subarray(1))).toBe(false)
  })

  it('refuses to sign or verify under the record domains, so it is never a signing oracle', async () => {
    const a = await generateAuthority()
    await expect(signBytes(a, 'cell-release-v1', data)).rejects.toThrow(MalformedRecordError)
    await expect(verifyBytes(a.id, 'cell-grant-v1', data, new Uint8Array(64))).rejects.toThrow(MalformedRecordError)
    await expect(signBytes(a, 'a\0b', data)).rejects.toThrow(MalformedRecordError)
  })

  it('honours an aborted signal', async () => {
    const a = await generateAuthority()
    const signal = AbortSignal.abort()
    await expect(generateAuthority({ signal })).rejects.toThrow()
    await expect(signBytes(a, 'x', data, { signal })).rejects.toThrow()
  })
})
