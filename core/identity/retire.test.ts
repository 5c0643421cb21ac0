// Retire records (issue 8 §6): signed by the cell's authority, domain-separated, bounded. New file:
// on the old code there was no retire record at all.
import { beforeAll, describe, expect, it } from 'vitest'
import { generateAuthority, type AuthorityKey } from './authority.ts'
import { BadSignatureError, MalformedRecordError, UnknownAuthorityError } from './errors.ts'
import { encodeRelease, signRelease, verifySignedRecord } from './release.ts'
import { decodeRetire, encodeRetire, MAX_RETIRE_BYTES, signRetire, verifySignedRetire } from './retire.ts'

let author: AuthorityKey
let stranger: AuthorityKey
beforeAll(async () => {
  author = await generateAuthority()
  stranger = await generateAuthority()
})

describe('retire records', () => {
  it('sign and verify through the byte encoding against a trusted authority', async () => {
    const input = { cell: 'billing', seq: 1_800_000_000_001, createdMs: 1_800_000_000_000, reason: 'retired by operator' }
    const bytes = encodeRetire(await signRetire(input, author))
    expect(bytes.length).toBeLessThanOrEqual(MAX_RETIRE_BYTES)
    expect(await verifySignedRetire(bytes, { trusted: new Set([author.id]) })).toEqual({ ...input, authority: author.id })
    await expect(verifySignedRetire(bytes, { trusted: new Set([stranger.id]) })).rejects.toThrow(UnknownAuthorityError)
  })

  it('a tampered field fails the signature; truncation and other record types are malformed', async () => {
    const signed = await signRetire({ cell: 'billing', seq: 5, createdMs: 1, reason: '' }, author)
    for (const record of [{ ...signed.record, seq: 6 }, { ...signed.record, cell: 'ledger' }]) {
      await expect(verifySignedRetire(encodeRetire({ record, signature: signed.signature }))).rejects.toThrow(BadSignatureError)
    }
    const bytes = encodeRetire(signed)
    for (let n = 0; n < bytes.length; n++) expect(() => decodeRetire(bytes.subarray(0, n))).toThrow(MalformedRecordError)
    // A release is not a retire record, and a retire record is not a release or desired record.
    const release = encodeRelease(await signRelease({ cell: 'billing', version: '1.0.0', digest: 'ab'.repeat(32), seq: 5, createdMs: 1 }, author))
    await expect(verifySignedRetire(release)).rejects.toThrow(MalformedRecordError)
    await expect(verifySignedRecord(bytes)).rejects.toThrow(MalformedRecordError)
  })
})
