import { beforeAll, describe, expect, it } from 'vitest'
import { generateAuthority, type AuthorityKey } from './authority.ts'
import {
  checkArtifactDigest, decodeDesiredVersion, decodeRelease, encodeDesiredVersion, encodeRelease, sha256Hex,
  signDesiredVersion, signRelease, verifyDesiredVersion, verifyRelease, verifySignedRecord, type ReleaseInput
} from './release.ts'
import { BadSignatureError, DigestMismatchError, MalformedRecordError, TrustError, UnknownAuthorityError } from './errors.ts'

let author: AuthorityKey
let stranger: AuthorityKey
const artifact = new TextEncoder().encode('export default {}')
let input: ReleaseInput

beforeAll(async () => {
  author = await generateAuthority()
  stranger = await generateAuthority()
  input = { cell: 'billing', version: '1.2.3', digest: await sha256Hex(artifact), seq: 7, createdMs: 1_800_000_000_000 }
})

describe('releases', () => {
  it('sign and verify against a trusted authority, through the byte encoding', async () => {
    const signed = await signRelease(input, author)
    const decoded = decodeRelease(encodeRelease(signed))
    const release = await verifyRelease(decoded, { trusted: new Set([author.id]) })
    expect(release).toEqual({ ...input, authority: author.id })
    await checkArtifactDigest(artifact, release)
  })

  it('sha256Hex matches a known vector', async () => {
    expect(await sha256Hex(new TextEncoder().encode('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })

  it('a tampered digest, version, seq or cell fails the signature', async () => {
    const signed = await signRelease(input, author)
    const tampered = [
      { ...signed.release, digest: 'ff'.repeat(32) },
      { ...signed.release, version: '1.2.4' },
      { ...signed.release, seq: 8 },
      { ...signed.release, cell: 'ledger' }
    ]
    for (const release of tampered) {
      await expect(verifyRelease({ release, signature: signed.signature })).rejects.toThrow(BadSignatureError)
    }
  })

  it('a flipped bit anywhere in the encoded release never verifies', async () => {
    const bytes = encodeRelease(await signRelease(input, author))
    for (let i = 0; i < bytes.length; i++) {
      const copy = bytes.slice()
      copy[i] ^= 0x01
      const err = await (async () => await verifyRelease(decodeRelease(copy)))().then(() => undefined, e => e)
      expect(err, `byte ${i}`).toBeDefined()
      expect(err instanceof BadSignatureError || err instanceof MalformedRecordError, `byte ${i}: ${err}`).toBe(true)
    }
  })

  it('an untrusted authority is rejected before the signature is checked', async () => {
    const signed = await signRelease(input, stranger)
    const err = await verifyRelease(signed, { trusted: new Set([author.id]) }).catch(e => e)
    expect(err).toBeInstanceOf(UnknownAuthorityError)
    expect(err).toBeInstanceOf(TrustError)
    // Re-labelling the record with the trusted authority's id does not help.
    await expect(verifyRelease({ ...signed, release: { ...signed.release, authority: author.id } }, { trusted: new Set([author.id]) }))
      .rejects.toThrow(BadSignatureError)
  })

  it('an artifact that does not hash to the release digest is refused', async () => {
    const release = await verifyRelease(await signRelease(input, author))
    await expect(checkArtifactDigest(new TextEncoder().encode('export default 1'), release)).rejects.toThrow(DigestMismatchError)
  })

  it('refuses to sign invalid fields', async () => {
    const bad: ReleaseInput[] = [
      { ...input, seq: 0 }, { ...input, seq: 1.5 }, { ...input, digest: 'AB'.repeat(32) }, { ...input, cell: '' },
      { ...input, cell: 'x'.repeat(129) }, { ...input, version: 'v\n1' }, { ...input, createdMs: -1 }
    ]
    for (const b of bad) await expect(signRelease(b, author), JSON.stringify(b)).rejects.toThrow(MalformedRecordError)
  })
})

describe('desired-version records', () => {
  it('sign, encode, decode, verify', async () => {
    const signed = await signDesiredVersion({ ...input, reason: 'rollback: error rate 4%' }, author)
    const record = await verifyDesiredVersion(decodeDesiredVersion(encodeDesiredVersion(signed)), { trusted: new Set([author.id]) })
    expect(record).toEqual({ ...input, reason: 'rollback: error rate 4%', authority: author.id })
    await expect(verifyDesiredVersion({ ...signed, record: { ...signed.record, reason: 'other' } })).rejects.toThrow(BadSignatureError)
    await expect(verifyDesiredVersion(signed, { trusted: new Set([stranger.id]) })).rejects.toThrow(UnknownAuthorityError)
  })

  it('a release signature never validates as a desired-version record (domain separation)', async () => {
    const release = await signRelease(input, author)
    await expect(verifyDesiredVersion({ record: { ...release.release, reason: '' }, signature: release.signature }))
      .rejects.toThrow(BadSignatureError)
  })

  it('verifySignedRecord tells the kinds apart and honours `kind`', async () => {
    const rel = encodeRelease(await signRelease(input, author))
    const des = encodeDesiredVersion(await signDesiredVersion({ ...input, reason: 'r' }, author))
    expect((await verifySignedRecord(rel)).kind).toBe('release')
    expect(await verifySignedRecord(des, { trusted: new Set([author.id]) })).toMatchObject({ kind: 'desired', reason: 'r', seq: 7 })
    await expect(verifySignedRecord(rel, { kind: 'desired' })).rejects.toThrow(MalformedRecordError)
    await expect(verifySignedRecord(des, { trusted: new Set() })).rejects.toThrow(UnknownAuthorityError)
    await expect(verifySignedRecord(new Uint8Array(0))).rejects.toThrow(MalformedRecordError)
  })
})
