import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { generateAuthority } from './authority.ts'
import { decodeCertificate, encodeCertificate, issueGrant, issueSession, verifyCertificateSignature } from './certificate.ts'
import { MalformedRecordError } from './errors.ts'
import { GRANT_TOKEN_PREFIX, MAX_GRANT_TOKEN_LENGTH, MalformedGrantTokenError, decodeGrantToken, encodeGrantToken } from './grant-token.ts'

async function grant (cells?: string[]) {
  const authority = await generateAuthority()
  const peerKey = await generateKeyPair('Ed25519') as Ed25519PrivateKey
  const subject = peerIdFromPrivateKey(peerKey).toString()
  const cert = await issueGrant(authority, { subject, roles: ['caller', 'host'], notBeforeMs: 1_000, notAfterMs: 1_000 + 7 * 86_400_000, cells })
  return { authority, peerKey, subject, cert }
}

/** Node's own base64url as an independent oracle for the hand-written codec. */
const oracle = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url')

describe('grant tokens', () => {
  it('round-trip a grant and match an independent base64url encoding', async () => {
    for (const cells of [undefined, ['billing'], ['a', 'ledger', 'z-cell']]) {
      const { cert, authority } = await grant(cells)
      const token = encodeGrantToken(cert)
      expect(token).toMatch(/^cell-grant-v1:[A-Za-z0-9_-]+$/)
      expect(token.slice(GRANT_TOKEN_PREFIX.length)).toBe(oracle(encodeCertificate(cert)))
      expect(token.length).toBeLessThanOrEqual(MAX_GRANT_TOKEN_LENGTH)
      const back = decodeGrantToken(`  ${token}\n`)
      expect(back).toEqual(cert)
      expect(back.issuer).toBe(authority.id)
      expect(await verifyCertificateSignature(back)).toBe(true)
    }
  })

  it('encodes every byte-length remainder (0, 1, 2 mod 3) like the oracle', async () => {
    const { cert } = await grant()
    const lengths = new Set<number>()
    // Subject lengths vary the body length; cell names of 1..3 chars cover the three remainders.
    for (const cells of [['a'], ['ab'], ['abc']]) {
      const c = { ...cert, cells }
      const bytes = encodeCertificate(c)
      lengths.add(bytes.length % 3)
      const token = encodeGrantToken(c)
      expect(token.slice(GRANT_TOKEN_PREFIX.length)).toBe(oracle(bytes))
      expect(decodeCertificate(encodeCertificate(decodeGrantToken(token)))).toEqual(c)
    }
    expect(lengths.size).toBe(3)
  })

  it('refuses anything but a well-formed grant token', async () => {
    const { cert, peerKey, subject } = await grant()
    const token = encodeGrantToken(cert)
    const body = token.slice(GRANT_TOKEN_PREFIX.length)
    const bad = [
      body, // no prefix
      'cell-grant-v2:' + body,
      GRANT_TOKEN_PREFIX,
      GRANT_TOKEN_PREFIX + body + '=',
      GRANT_TOKEN_PREFIX + body.replace(/.$/, '+'),
      GRANT_TOKEN_PREFIX + body.slice(0, -5), // truncated certificate
      GRANT_TOKEN_PREFIX + body + 'AAAA', // trailing bytes
      GRANT_TOKEN_PREFIX + 'A'.repeat(MAX_GRANT_TOKEN_LENGTH)
    ]
    for (const text of bad) expect(() => decodeGrantToken(text), text.slice(0, 40)).toThrow(MalformedGrantTokenError)
    expect(() => decodeGrantToken(42 as unknown as string)).toThrow(MalformedGrantTokenError)
    // A session certificate is not a grant, in either direction.
    const session = await issueSession(peerKey, cert, { subject, roles: ['host'], notBeforeMs: 2_000, notAfterMs: 60_000 })
    expect(() => encodeGrantToken(session)).toThrow(MalformedGrantTokenError)
    expect(() => decodeGrantToken(GRANT_TOKEN_PREFIX + oracle(encodeCertificate(session)))).toThrow(MalformedGrantTokenError)
  })

  it('refuses non-canonical base64url (non-zero padding bits)', async () => {
    const { cert } = await grant()
    const bytes = encodeCertificate(cert)
    expect(bytes.length % 3).not.toBe(0) // otherwise there are no padding bits to flip
    const body = oracle(bytes)
    const last = body.at(-1) as string
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const flipped = alphabet[alphabet.indexOf(last) ^ 1]
    const err = (() => { try { decodeGrantToken(GRANT_TOKEN_PREFIX + body.slice(0, -1) + flipped) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(MalformedGrantTokenError)
    expect(err).toBeInstanceOf(MalformedRecordError)
    expect((err as Error).name).toBe('MalformedGrantTokenError')
  })
})
