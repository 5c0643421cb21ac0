import { beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { generateAuthority, type AuthorityKey } from './authority.ts'
import { decodeCertificate, encodeCertificate, issueGrant, issueSession, type Certificate } from './certificate.ts'
import { decodeChain, encodeChain, makeVerifier, verifyCertificates, verifyChain, type VerifyChainOptions } from './chain.ts'
import {
  BadSignatureError, CertificateExpiredError, CertificateNotYetValidError, MalformedRecordError, TruncatedChainError,
  TrustError, UnknownAuthorityError, WrongCellScopeError, WrongRoleError, WrongSubjectError
} from './errors.ts'
import { CellError } from '../errors.ts'
import { FakeClock } from './testing.ts'

const NOW = 1_800_000_000_000
const DAY = 86_400_000
const MIN = 60_000

let authority: AuthorityKey
let other: AuthorityKey
let hostKey: Ed25519PrivateKey
let host: string
let replicaKey: Ed25519PrivateKey
let replica: string
let grant: Certificate
let session: Certificate

function opts (over: Partial<VerifyChainOptions> = {}): VerifyChainOptions {
  return { remotePeerId: replica, trusted: new Set([authority.id]), requiredRole: 'caller', nowMs: NOW, ...over }
}

async function rejects (chain: Uint8Array | Certificate[], options: VerifyChainOptions, type: new (...a: any[]) => Error): Promise<void> {
  const p = chain instanceof Uint8Array ? verifyChain(chain, options) : verifyCertificates(chain, options)
  const err = await p.then(() => undefined, e => e)
  expect(err).toBeInstanceOf(type)
  expect(err).toBeInstanceOf(CellError)
}

beforeAll(async () => {
  authority = await generateAuthority()
  other = await generateAuthority()
  hostKey = await generateKeyPair('Ed25519')
  host = peerIdFromPrivateKey(hostKey).toString()
  replicaKey = await generateKeyPair('Ed25519')
  replica = peerIdFromPrivateKey(replicaKey).toString()
  grant = await issueGrant(authority, { subject: host, roles: ['host', 'caller'], notBeforeMs: NOW - DAY, notAfterMs: NOW + 30 * DAY })
  session = await issueSession(hostKey, grant, { subject: replica, roles: ['caller'], notBeforeMs: NOW - MIN, notAfterMs: NOW + 10 * MIN })
})

describe('certificate chains: valid paths', () => {
  it('verifies [grant, session] and reports authority, leaf roles, subject and earliest expiry', async () => {
    const result = await verifyChain(encodeChain([grant, session]), opts())
    expect(result).toEqual({ authority: authority.id, roles: ['caller'], subject: replica, notAfterMs: NOW + 10 * MIN })
  })

  it('verifies a bare [grant] whose subject is the peer itself', async () => {
    const tab = await generateKeyPair('Ed25519')
    const tabId = peerIdFromPrivateKey(tab).toString()
    const direct = await issueGrant(authority, { subject: tabId, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + DAY })
    expect(await verifyChain(encodeChain([direct]), opts({ remotePeerId: tabId }))).toMatchObject({ subject: tabId, roles: ['caller'] })
  })

  it('tolerates clock skew up to skewMs on both ends of the window', async () => {
    const chain = encodeChain([grant, session])
    await verifyChain(chain, opts({ nowMs: NOW + 10 * MIN + 29_000 }))
    await verifyChain(chain, opts({ nowMs: NOW - MIN - 29_000 }))
    await rejects(chain, opts({ nowMs: NOW + 10 * MIN + 29_000, skewMs: 0 }), CertificateExpiredError)
  })

  it('certificates round-trip through their byte encoding', () => {
    expect(decodeCertificate(encodeCertificate(session))).toEqual(session)
    expect(decodeChain(encodeChain([grant, session]))).toEqual([grant, session])
    expect(decodeChain(encodeChain([]))).toEqual([])
  })

  it('checks cell scope and returns the effective scope', async () => {
    const scoped = await issueGrant(authority, { subject: host, roles: ['host', 'caller'], notBeforeMs: NOW, notAfterMs: NOW + DAY, cells: ['ledger', 'billing', 'billing'] })
    expect(scoped.cells).toEqual(['billing', 'ledger'])
    const s = await issueSession(hostKey, scoped, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN, cells: ['billing'] })
    const chain = encodeChain([scoped, s])
    expect((await verifyChain(chain, opts({ cell: 'billing' }))).cells).toEqual(['billing'])
    await rejects(chain, opts({ cell: 'ledger' }), WrongCellScopeError)
    const inherited = await issueSession(hostKey, scoped, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN })
    expect(inherited.cells).toEqual(['billing', 'ledger'])
    await expect(issueSession(hostKey, scoped, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN, cells: ['search'] }))
      .rejects.toThrow(WrongCellScopeError)
  })

  it('clamps a session to end with its grant', async () => {
    const s = await issueSession(hostKey, grant, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + 365 * DAY })
    expect(s.notAfterMs).toBe(grant.notAfterMs)
  })

  it('verifies a chain well under 5 ms', async () => {
    const chain = encodeChain([grant, session])
    const o = opts()
    await verifyChain(chain, o)
    const n = 200
    const t0 = performance.now()
    for (let i = 0; i < n; i++) await verifyChain(chain, o)
    const perChainMs = (performance.now() - t0) / n
    expect(perChainMs).toBeLessThan(5)
  })
})

describe('certificate chains: each failure has its own error', () => {
  it('UnknownAuthorityError when the root is not trusted', async () => {
    await rejects(encodeChain([grant, session]), opts({ trusted: new Set([other.id]) }), UnknownAuthorityError)
  })

  it('BadSignatureError when any field or signature of any link is altered', async () => {
    const longer = { ...grant, notAfterMs: grant.notAfterMs + DAY }
    await rejects([longer, session], opts(), BadSignatureError)
    const more = { ...session, roles: ['host', 'caller'] as Certificate['roles'] }
    await rejects([grant, more], opts({ requiredRole: 'host' }), BadSignatureError)
    const sig = session.signature.slice()
    sig[10] ^= 1
    await rejects([grant, { ...session, signature: sig }], opts(), BadSignatureError)
    // A grant claiming a trusted issuer but signed by another authority.
    const forged = { ...(await issueGrant(other, { subject: host, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + DAY })), issuer: authority.id }
    await rejects([forged, await issueSession(hostKey, forged, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN })], opts(), BadSignatureError)
  })

  it('CertificateExpiredError past notAfterMs (plus skew) of any link', async () => {
    const chain = encodeChain([grant, session])
    await rejects(chain, opts({ nowMs: NOW + 10 * MIN + 30_000 }), CertificateExpiredError)
    await rejects(chain, opts({ nowMs: NOW + 31 * DAY }), CertificateExpiredError)
  })

  it('CertificateNotYetValidError before notBeforeMs (minus skew)', async () => {
    const future = await issueSession(hostKey, grant, { subject: replica, roles: ['caller'], notBeforeMs: NOW + MIN, notAfterMs: NOW + 2 * MIN })
    await rejects(encodeChain([grant, future]), opts(), CertificateNotYetValidError)
  })

  it('WrongSubjectError when the leaf is not the authenticated peer', async () => {
    await rejects(encodeChain([grant, session]), opts({ remotePeerId: host }), WrongSubjectError)
    // A bare grant presented by someone other than its subject.
    await rejects(encodeChain([grant]), opts({ remotePeerId: replica }), WrongSubjectError)
  })

  it('WrongSubjectError when a key other than the grant subject tries to issue a session', async () => {
    await expect(issueSession(replicaKey, grant, { subject: replica, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN }))
      .rejects.toThrow(WrongSubjectError)
  })

  it('TruncatedChainError for an empty chain, a missing grant, or an issuer that is not the previous subject', async () => {
    await rejects(encodeChain([]), opts(), TruncatedChainError)
    await rejects(encodeChain([session]), opts(), TruncatedChainError)
    await rejects(encodeChain([grant, grant]), opts({ remotePeerId: host }), TruncatedChainError)
    // The replica (not the host) signs a session for itself under the host's grant.
    const rogue = { ...session, issuer: Array.from(replicaKey.publicKey.raw, b => b.toString(16).padStart(2, '0')).join('') }
    await rejects([grant, rogue], opts(), TruncatedChainError)
    // A two-session chain whose second link is not issued by the first session's subject.
    await rejects([grant, session, session], opts(), TruncatedChainError)
  })

  it('WrongRoleError when any link lacks the required role, or a session exceeds its grant', async () => {
    await rejects(encodeChain([grant, session]), opts({ requiredRole: 'operator' }), WrongRoleError)
    await rejects(encodeChain([grant, session]), opts({ requiredRole: 'host' }), WrongRoleError)
    await expect(issueSession(hostKey, grant, { subject: replica, roles: ['operator'], notBeforeMs: NOW, notAfterMs: NOW + MIN }))
      .rejects.toThrow(WrongRoleError)
  })

  it('MalformedRecordError for bytes that are not a chain', async () => {
    const good = encodeChain([grant, session])
    await rejects(good.subarray(0, good.length - 1), opts(), MalformedRecordError)
    await rejects(new Uint8Array(5000), opts(), MalformedRecordError)
    await rejects(new Uint8Array([1, 4, 5]), opts(), MalformedRecordError)
  })

  it('all trust failures share the TrustError base', async () => {
    const err = await verifyChain(encodeChain([grant, session]), opts({ trusted: new Set() })).catch(e => e)
    expect(err).toBeInstanceOf(TrustError)
    expect(err.name).toBe('UnknownAuthorityError')
  })
})

describe('makeVerifier', () => {
  it('uses the injected clock, reads the trust set live and reports rejections', async () => {
    const clock = new FakeClock(NOW)
    const trusted = new Set<string>()
    const rejected: string[] = []
    const verify = makeVerifier(trusted, { clock, onReject: (err) => rejected.push(err.name) })
    const chain = encodeChain([grant, session])
    const check = { remotePeerId: replica, requiredRole: 'caller' as const }
    await expect(verify(chain, check)).rejects.toThrow(UnknownAuthorityError)
    trusted.add(authority.id)
    expect((await verify(chain, check)).authority).toBe(authority.id)
    clock.advance(11 * MIN)
    await expect(verify(chain, check)).rejects.toThrow(CertificateExpiredError)
    await expect(verify(new Uint8Array([0]), check)).rejects.toThrow(MalformedRecordError)
    expect(rejected).toEqual(['UnknownAuthorityError', 'CertificateExpiredError', 'MalformedRecordError'])
  })

  it('passes aborts through without counting them', async () => {
    const rejected: string[] = []
    const verify = makeVerifier(new Set([authority.id]), { clock: new FakeClock(NOW), onReject: (err) => rejected.push(err.name) })
    await expect(verify(encodeChain([grant, session]), { remotePeerId: replica, requiredRole: 'caller', signal: AbortSignal.abort() })).rejects.toThrow()
    expect(rejected).toEqual([])
  })
})
