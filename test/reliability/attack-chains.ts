// Credential chains an attacker could present in a synapse handshake (issue 14 point 3), built
// with real keys and signatures: forged, expired, truncated, wrong-role, wrong-subject, replayed,
// unknown-authority (and out-of-scope), each in several variants picked by a seeded PRNG, plus
// valid chains in every legitimate shape. Each attack names the refusal it expects.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import {
  encodeCertificate, encodeCertificateBody, ROLES, type Certificate, type Role
} from '../../core/identity/certificate.ts'
import { rawSign, authorityIdOf, authorityFromPrivateKey, type AuthorityKey } from '../../core/identity/authority.ts'
import {
  BadSignatureError, CertificateExpiredError, CertificateNotYetValidError, MalformedRecordError, TruncatedChainError,
  UnknownAuthorityError, WrongCellScopeError, WrongRoleError, WrongSubjectError, encodeChain, generateAuthority, issueGrant, issueSession,
  DEFAULT_CLOCK_SKEW_MS, MAX_CHAIN_LINKS
} from '../../core/identity/index.ts'
import { Writer } from '../../core/identity/bytes.ts'
import { RECORD_FORMAT_VERSION } from '../../core/identity/release.ts'

export const ATTACK_KINDS = ['forged', 'expired', 'truncated', 'wrong-role', 'wrong-subject', 'replayed', 'unknown-authority', 'wrong-scope'] as const
export type AttackKind = typeof ATTACK_KINDS[number]

type ErrorClass = abstract new (...args: never[]) => Error

export interface Presenter { key: Ed25519PrivateKey, peerId: string }

export interface AttackWorld {
  /** Authorities the verifying node trusts. */
  trusted: AuthorityKey[]
  /** A real authority nobody here trusts. */
  stranger: AuthorityKey
  /** Honest peers whose chains an attacker captured on the wire. */
  honest: Array<{ presenter: Presenter, chain: Uint8Array, grant: Certificate }>
  cell: string
  nowMs: number
}

export interface Attack { kind: AttackKind, variant: string, chain: Uint8Array, expect: ErrorClass[] }

const MIN = 60_000
const HOUR = 3_600_000
const DOMAIN = { grant: 'cell-grant-v1', session: 'cell-session-v1' } as const

export async function presenter (): Promise<Presenter> {
  const key = await generateKeyPair('Ed25519')
  return { key, peerId: peerIdFromPrivateKey(key).toString() }
}

/** Signs any certificate body with any key: how an attacker makes certificates the issuers never signed. */
async function signAs (key: AuthorityKey | Ed25519PrivateKey, body: Omit<Certificate, 'signature'>): Promise<Certificate> {
  return { ...body, signature: await rawSign(key, DOMAIN[body.kind], encodeCertificateBody(body)) }
}

function flip (bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice()
  out[at % out.length] ^= 1 << (at % 8)
  return out
}

/** A chain's wire form without encodeChain's checks (for more links than allowed, raw bytes). */
function rawChain (links: Certificate[]): Uint8Array {
  const w = new Writer().u8(RECORD_FORMAT_VERSION).u8(4).u8(links.length)
  for (const l of links) w.bytes16(encodeCertificate(l), 4096, 'link')
  return w.finish()
}

export async function attackWorld (nowMs: number, honestPeers = 8): Promise<AttackWorld> {
  const trusted = [await generateAuthority(), await generateAuthority()]
  const stranger = await generateAuthority()
  const honest: AttackWorld['honest'] = []
  for (let i = 0; i < honestPeers; i++) {
    const p = await presenter()
    const grant = await issueGrant(trusted[i % 2], { subject: p.peerId, roles: ['host', 'caller', 'operator'], notBeforeMs: nowMs - HOUR, notAfterMs: nowMs + 24 * HOUR })
    const session = await issueSession(p.key, grant, { subject: p.peerId, roles: ['host', 'caller', 'operator'], notBeforeMs: nowMs - MIN, notAfterMs: nowMs + 10 * MIN })
    honest.push({ presenter: p, chain: encodeChain([grant, session]), grant })
  }
  return { trusted, stranger, honest, cell: 'billing', nowMs }
}

/** Roles in canonical order (certificates require it). */
const canon = (roles: Role[]): Role[] => ROLES.filter(r => roles.includes(r))
/** The two roles other than `role`. */
const others = (role: Role): [Role, Role] => ROLES.filter(r => r !== role) as [Role, Role]

/** A valid chain for `p` holding `role` (default caller) in one of the legitimate shapes (one or two links, scoped or not, any trusted authority). */
export async function validChain (w: AttackWorld, p: Presenter, rnd: () => number, role: Role = 'caller'): Promise<Uint8Array> {
  const now = w.nowMs
  const authority = w.trusted[Math.floor(rnd() * w.trusted.length)]
  const [o1, o2] = others(role)
  const roles: Role[] = [[role], canon([role, o1]), canon([role, o2]), [...ROLES]][Math.floor(rnd() * 4)]
  const cells = rnd() < 0.3 ? [w.cell, 'ledger'] : undefined
  // Windows near their edges too: just started, about to end, within the tolerated skew.
  const grant = await issueGrant(authority, {
    subject: p.peerId, roles, cells, notBeforeMs: now - Math.floor(rnd() * 2 * HOUR) + (rnd() < 0.1 ? DEFAULT_CLOCK_SKEW_MS - 1_000 : 0), notAfterMs: now + 1_000 + Math.floor(rnd() * 30 * 24 * HOUR)
  })
  if (rnd() < 0.25) return encodeChain([grant])
  const sessionRoles = roles.filter(r => r === role || rnd() < 0.5)
  const session = await issueSession(p.key, grant, {
    subject: p.peerId, roles: sessionRoles, notBeforeMs: now - Math.floor(rnd() * 5 * MIN), notAfterMs: now + 1_000 + Math.floor(rnd() * 10 * MIN)
  })
  return encodeChain([grant, session])
}

/** One attack of `kind` presented by `p` to a verifier requiring `role` (default caller; p holds no valid grant unless a variant says so). */
export async function attack (kind: AttackKind, w: AttackWorld, p: Presenter, rnd: () => number, role: Role = 'caller'): Promise<Attack> {
  const now = w.nowMs
  const [o1, o2] = others(role)
  const A = w.trusted[Math.floor(rnd() * w.trusted.length)]
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  const grantFor = async (subject: string, over: Partial<Omit<Certificate, 'signature'>> = {}, by: AuthorityKey = A): Promise<Certificate> =>
    await signAs(by, { kind: 'grant', issuer: by.id, subject, roles: [role], notBeforeMs: now - HOUR, notAfterMs: now + 24 * HOUR, cells: [], ...over })
  const sessionFor = async (grant: Certificate, key: Ed25519PrivateKey, subject: string, over: Partial<Omit<Certificate, 'signature'>> = {}): Promise<Certificate> =>
    await signAs(key, { kind: 'session', issuer: authorityIdOf(key.publicKey), subject, roles: grant.roles, notBeforeMs: now - MIN, notAfterMs: now + 10 * MIN, cells: grant.cells, ...over })
  const skew = DEFAULT_CLOCK_SKEW_MS
  const late = skew + 1 + Math.floor(rnd() * 30 * 24 * HOUR)
  const a = (variant: string, chain: Uint8Array, ...expect: ErrorClass[]): Attack => ({ kind, variant, chain, expect })

  switch (kind) {
    case 'forged': {
      const v = pick(['grant-signature-flipped', 'session-signature-flipped', 'grant-by-attacker-key', 'grant-subject-rewritten', 'grant-extended', 'grant-roles-raised', 'session-for-stolen-grant'])
      if (v === 'grant-signature-flipped') {
        const g = await grantFor(p.peerId)
        return a(v, encodeChain([{ ...g, signature: flip(g.signature, Math.floor(rnd() * 512)) }]), BadSignatureError)
      }
      if (v === 'session-signature-flipped') {
        const g = await grantFor(p.peerId)
        const s = await sessionFor(g, p.key, p.peerId)
        return a(v, encodeChain([g, { ...s, signature: flip(s.signature, Math.floor(rnd() * 512)) }]), BadSignatureError)
      }
      if (v === 'grant-by-attacker-key') {
        // Claims a trusted authority as issuer, signed with the attacker's own key.
        const g = await signAs(p.key, { kind: 'grant', issuer: A.id, subject: p.peerId, roles: canon([role, o2]), notBeforeMs: now - HOUR, notAfterMs: now + HOUR, cells: [] })
        return a(v, encodeChain([g]), BadSignatureError)
      }
      if (v === 'grant-subject-rewritten') {
        // An honest peer's real grant with the subject changed to the attacker.
        const h = pick(w.honest)
        return a(v, encodeChain([{ ...h.grant, subject: p.peerId }]), BadSignatureError)
      }
      if (v === 'grant-extended') {
        const g = await grantFor(p.peerId, { notBeforeMs: now - late - HOUR, notAfterMs: now - late })
        return a(v, encodeChain([{ ...g, notAfterMs: now + 365 * 24 * HOUR }]), BadSignatureError)
      }
      if (v === 'grant-roles-raised') {
        const g = await grantFor(p.peerId, { roles: [role] })
        return a(v, encodeChain([{ ...g, roles: canon([role, o2]) }]), BadSignatureError)
      }
      // A session "issued" by an honest peer (its key as issuer), signed by the attacker.
      const h = pick(w.honest)
      const s = await signAs(p.key, { kind: 'session', issuer: authorityIdOf(h.presenter.key.publicKey), subject: p.peerId, roles: [role], notBeforeMs: now - MIN, notAfterMs: now + MIN, cells: [] })
      return a(v, encodeChain([h.grant, s]), BadSignatureError)
    }
    case 'expired': {
      const v = pick(['grant-expired', 'session-expired', 'grant-not-yet-valid', 'session-not-yet-valid'])
      if (v === 'grant-expired') {
        const g = await grantFor(p.peerId, { notBeforeMs: now - late - HOUR, notAfterMs: now - late })
        return a(v, encodeChain(rnd() < 0.5 ? [g] : [g, await sessionFor(g, p.key, p.peerId)]), CertificateExpiredError)
      }
      if (v === 'session-expired') {
        const g = await grantFor(p.peerId)
        return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId, { notBeforeMs: now - late - MIN, notAfterMs: now - late })]), CertificateExpiredError)
      }
      if (v === 'grant-not-yet-valid') {
        const g = await grantFor(p.peerId, { notBeforeMs: now + late, notAfterMs: now + late + HOUR })
        return a(v, encodeChain([g]), CertificateNotYetValidError)
      }
      const g = await grantFor(p.peerId)
      return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId, { notBeforeMs: now + late, notAfterMs: now + late + MIN })]), CertificateNotYetValidError)
    }
    case 'truncated': {
      const v = pick(['bytes-cut', 'bytes-appended', 'session-only', 'no-links', 'link-not-from-grantee', 'too-many-links', 'grant-after-session'])
      const g = await grantFor(p.peerId)
      const s = await sessionFor(g, p.key, p.peerId)
      const full = encodeChain([g, s])
      if (v === 'bytes-cut') return a(v, full.subarray(0, Math.floor(rnd() * full.length)), MalformedRecordError)
      if (v === 'bytes-appended') return a(v, Uint8Array.from([...full, ...new Uint8Array(1 + Math.floor(rnd() * 16))]), MalformedRecordError)
      if (v === 'session-only') return a(v, encodeChain([s]), TruncatedChainError)
      if (v === 'no-links') return a(v, encodeChain([]), TruncatedChainError)
      if (v === 'link-not-from-grantee') {
        // A session whose issuer is some other key: the chain skips the link that would connect them.
        const other = await presenter()
        return a(v, encodeChain([g, await sessionFor(g, other.key, p.peerId)]), TruncatedChainError)
      }
      if (v === 'too-many-links') return a(v, rawChain(Array.from({ length: MAX_CHAIN_LINKS + 1 }, (_, i) => i === 0 ? g : s)), MalformedRecordError)
      return a(v, encodeChain([s, g]), TruncatedChainError)
    }
    case 'wrong-role': {
      const v = pick([`grant-${o1}-only`, `grant-${o2}-only`, 'session-raises-role', `session-${o1}-only`])
      if (v === `grant-${o1}-only` || v === `grant-${o2}-only`) {
        const g = await grantFor(p.peerId, { roles: v === `grant-${o1}-only` ? [o1] : [o2] })
        return a(v, encodeChain(rnd() < 0.5 ? [g] : [g, await sessionFor(g, p.key, p.peerId)]), WrongRoleError)
      }
      if (v === 'session-raises-role') {
        const g = await grantFor(p.peerId, { roles: [o1] })
        return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId, { roles: canon([o1, role]) })]), WrongRoleError)
      }
      const g = await grantFor(p.peerId, { roles: canon([o1, role]) })
      return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId, { roles: [o1] })]), WrongRoleError)
    }
    case 'wrong-subject': {
      const v = pick(['grant-for-other-peer', 'session-for-other-peer', 'subject-not-a-peer-id'])
      const other = await presenter()
      if (v === 'grant-for-other-peer') return a(v, encodeChain([await grantFor(other.peerId)]), WrongSubjectError)
      if (v === 'session-for-other-peer') {
        const g = await grantFor(p.peerId)
        return a(v, encodeChain([g, await sessionFor(g, p.key, other.peerId)]), WrongSubjectError)
      }
      const g = await grantFor(`not-a-peer-${Math.floor(rnd() * 1e9)}`)
      return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId)]), TruncatedChainError)
    }
    case 'replayed': {
      const v = pick(['honest-chain-replayed', 'own-old-chain-replayed'])
      if (v === 'honest-chain-replayed') return a(v, pick(w.honest).chain, WrongSubjectError)
      // The attacker's own chain from when it was still granted, replayed after it ended.
      const g = await grantFor(p.peerId, { notBeforeMs: now - late - 2 * HOUR, notAfterMs: now - late })
      return a(v, encodeChain([g, await sessionFor(g, p.key, p.peerId, { notBeforeMs: now - late - HOUR, notAfterMs: now - late })]), CertificateExpiredError)
    }
    case 'unknown-authority': {
      const v = pick(['stranger-grant', 'fresh-authority-grant', 'self-granted'])
      if (v === 'stranger-grant') {
        const g = await grantFor(p.peerId, {}, w.stranger)
        return a(v, encodeChain(rnd() < 0.5 ? [g] : [g, await sessionFor(g, p.key, p.peerId)]), UnknownAuthorityError)
      }
      if (v === 'fresh-authority-grant') return a(v, encodeChain([await grantFor(p.peerId, {}, await generateAuthority())]), UnknownAuthorityError)
      // The peer's own key acting as an authority.
      return a(v, encodeChain([await grantFor(p.peerId, {}, authorityFromPrivateKey(p.key))]), UnknownAuthorityError)
    }
    case 'wrong-scope': {
      const g = await grantFor(p.peerId, { cells: ['ledger'] })
      return a('grant-scoped-to-other-cell', encodeChain(rnd() < 0.5 ? [g] : [g, await sessionFor(g, p.key, p.peerId)]), WrongCellScopeError)
    }
  }
}
