// Every decoder faces untrusted bytes from the network: truncations, trailing bytes, mutations and
// pure noise must only ever produce MalformedRecordError, and whatever decodes must re-encode to
// the identical bytes (the encoding is canonical, so signatures cover exactly what was accepted).
import { beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority } from './authority.ts'
import { decodeCertificate, encodeCertificate, issueGrant, issueSession, type Certificate } from './certificate.ts'
import { decodeChain, encodeChain, MAX_CHAIN_BYTES } from './chain.ts'
import {
  decodeDesiredVersion, decodeRelease, encodeDesiredVersion, encodeRelease, signDesiredVersion, signRelease
} from './release.ts'
import { MalformedRecordError } from './errors.ts'
import { seededBytes } from './testing.ts'
import { bytesEqual } from './bytes.ts'

interface Codec { name: string, decode: (b: Uint8Array) => unknown, encode: (v: any) => Uint8Array, sample: Uint8Array, type: number }
const codecs: Codec[] = []
let grant: Certificate
let session: Certificate

beforeAll(async () => {
  const authority = await generateAuthority()
  const hostKey = await generateKeyPair('Ed25519')
  const host = peerIdFromPrivateKey(hostKey).toString()
  const now = 1_800_000_000_000
  const base = { cell: 'billing', version: '1.0.0', digest: '0f'.repeat(32), seq: 3, createdMs: now }
  grant = await issueGrant(authority, { subject: host, roles: ['host', 'caller'], notBeforeMs: now, notAfterMs: now + 1e9, cells: ['billing', 'ledger'] })
  session = await issueSession(hostKey, grant, { subject: host, roles: ['caller'], notBeforeMs: now, notAfterMs: now + 6e5 })
  codecs.push(
    { name: 'release', decode: decodeRelease, encode: encodeRelease, sample: encodeRelease(await signRelease(base, authority)), type: 1 },
    { name: 'desired', decode: decodeDesiredVersion, encode: encodeDesiredVersion, sample: encodeDesiredVersion(await signDesiredVersion({ ...base, reason: 'rollback ✓' }, authority)), type: 2 },
    { name: 'certificate', decode: decodeCertificate, encode: encodeCertificate, sample: encodeCertificate(grant), type: 3 },
    { name: 'chain', decode: decodeChain, encode: encodeChain, sample: encodeChain([grant, session]), type: 4 }
  )
})

/** Decodes; returns the value, or undefined after asserting the only failure is MalformedRecordError. */
function tryDecode (codec: Codec, bytes: Uint8Array, label: string): unknown {
  try {
    return codec.decode(bytes)
  } catch (err) {
    if (!(err instanceof MalformedRecordError)) throw new Error(`${codec.name} ${label}: threw ${String(err)}`, { cause: err })
    return undefined
  }
}

describe('codecs', () => {
  it('round-trip their samples', () => {
    for (const c of codecs) expect(c.encode(c.decode(c.sample)), c.name).toEqual(c.sample)
  })

  it('reject every truncation and any trailing byte', () => {
    for (const c of codecs) {
      for (let n = 0; n < c.sample.length; n++) {
        expect(() => c.decode(c.sample.subarray(0, n)), `${c.name} cut at ${n}`).toThrow(MalformedRecordError)
      }
      const longer = new Uint8Array(c.sample.length + 1)
      longer.set(c.sample)
      expect(() => c.decode(longer), `${c.name} + 1 byte`).toThrow(MalformedRecordError)
    }
  })

  it('reject non-byte input', () => {
    for (const c of codecs) {
      for (const bad of [undefined, null, 'abc', [1, 4, 0], {}]) expect(() => c.decode(bad as any), c.name).toThrow(MalformedRecordError)
    }
  })

  it('random noise, with and without a valid header, only ever throws MalformedRecordError', () => {
    const rand = seededBytes(0xce11)
    for (const c of codecs) {
      for (let i = 0; i < 3000; i++) {
        const len = rand(2)
        const bytes = rand(((len[0] << 8) | len[1]) % (c.sample.length + 64))
        if (i % 2 === 0 && bytes.length >= 2) { bytes[0] = 1; bytes[1] = c.type }
        const value = tryDecode(c, bytes, `noise #${i}`)
        if (value !== undefined && !bytesEqual(c.encode(value), bytes)) throw new Error(`${c.name} noise #${i} decoded non-canonically`)
      }
    }
  })

  it('mutated samples either decode canonically or throw MalformedRecordError', () => {
    const rand = seededBytes(0xbeef)
    for (const c of codecs) {
      for (let i = 0; i < 3000; i++) {
        const bytes = c.sample.slice()
        const r = rand(6)
        for (let k = 0; k < 1 + (r[0] % 3); k++) bytes[((r[1 + k] << 8) | r[4]) % bytes.length] = r[5 - k]
        const value = tryDecode(c, bytes, `mutation #${i}`)
        if (value !== undefined && !bytesEqual(c.encode(value), bytes)) throw new Error(`${c.name} mutation #${i} decoded non-canonically`)
      }
    }
  })

  it('reject specific malformed fields', () => {
    const release = codecs[0].sample
    const cert = codecs[2].sample
    const chain = codecs[3].sample
    const at = (b: Uint8Array, i: number, v: number): Uint8Array => { const c = b.slice(); c[i] = v; return c }
    expect(() => decodeRelease(at(release, 0, 2))).toThrow(/format version/)
    expect(() => decodeRelease(at(release, 1, 2))).toThrow(/record type/)
    expect(() => decodeDesiredVersion(release)).toThrow(/record type/)
    expect(() => decodeCertificate(release)).toThrow(/record type/)
    // release: cell "billing" is at bytes 3..9; make it invalid UTF-8 and a control character.
    expect(() => decodeRelease(at(release, 3, 0xff))).toThrow(/UTF-8/)
    expect(() => decodeRelease(at(release, 3, 0x07))).toThrow(/control/)
    // seq: 8 bytes after cell(1+7), version(1+5), digest(32) → offset 2+8+6+32 = 48.
    const seqAt = 48
    const zeroSeq = release.slice(); zeroSeq.fill(0, seqAt, seqAt + 8)
    expect(() => decodeRelease(zeroSeq)).toThrow(/seq/)
    expect(() => decodeRelease(at(release, seqAt, 0x00 + 0x20))).toThrow(/safe integer/)
    // certificate: kind at 2, role mask after issuer(32) and subject(1+len).
    expect(() => decodeCertificate(at(cert, 2, 9))).toThrow(/kind/)
    const maskAt = 3 + 32 + 1 + cert[35]
    expect(() => decodeCertificate(at(cert, maskAt, 0))).toThrow(/role mask/)
    expect(() => decodeCertificate(at(cert, maskAt, 8))).toThrow(/role mask/)
    const swapped = cert.slice(); swapped.set(cert.subarray(maskAt + 1 + 8, maskAt + 1 + 16), maskAt + 1); swapped.set(cert.subarray(maskAt + 1, maskAt + 9), maskAt + 9)
    expect(() => decodeCertificate(swapped)).toThrow(/notAfterMs/)
    const cellsAt = maskAt + 17
    expect(cert[cellsAt]).toBe(2)
    expect(() => decodeCertificate(at(cert, cellsAt, 9))).toThrow(/scope cells/)
    // "billing" then "ledger": make the first "zilling" so the list is no longer sorted.
    expect(() => decodeCertificate(at(cert, cellsAt + 2, 'z'.charCodeAt(0)))).toThrow(/sorted/)
    expect(() => decodeChain(at(chain, 2, 5))).toThrow(/links exceed/)
    expect(() => decodeChain(new Uint8Array(MAX_CHAIN_BYTES + 1))).toThrow(/exceeds/)
  })

  it('refuse to encode what they could not decode', () => {
    expect(() => encodeChain([grant, session, session, session, session])).toThrow(MalformedRecordError)
    expect(() => encodeCertificate({ ...grant, roles: ['caller', 'host'] })).toThrow(MalformedRecordError)
    expect(() => encodeCertificate({ ...grant, cells: ['b', 'a'] })).toThrow(MalformedRecordError)
    expect(() => encodeCertificate({ ...grant, notAfterMs: grant.notBeforeMs })).toThrow(MalformedRecordError)
    expect(() => encodeCertificate({ ...grant, signature: new Uint8Array(63) })).toThrow(MalformedRecordError)
    expect(() => encodeCertificate({ ...grant, cells: Array.from({ length: 9 }, (_, i) => `c${i}`) })).toThrow(MalformedRecordError)
  })
})
