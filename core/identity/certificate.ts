// Certificates of the trust chain: an authority signs a host *grant* (a node's peer id, roles,
// days), the granted node signs *session* certs (a peer id, a subset of the roles, minutes).
// The issuer's public key is carried in each certificate so a verifier can check it equals the
// authority (grant) or the key inside the previous link's peer id (session) before any signature.
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { Reader, Writer, fromHex, toHex } from './bytes.ts'
import { authorityIdOf, rawSign, rawVerify, type AuthorityKey, type SignalOptions } from './authority.ts'
import { RECORD_FORMAT_VERSION, MAX_CELL_NAME_BYTES } from './release.ts'
import {
  CertificateExpiredError, MalformedRecordError, WrongCellScopeError, WrongRoleError, WrongSubjectError
} from './errors.ts'

export type Role = 'host' | 'caller' | 'operator'
/** Canonical order; bit i of the encoded role mask is ROLES[i]. */
export const ROLES: readonly Role[] = ['host', 'caller', 'operator']
export type CertificateKind = 'grant' | 'session'

export interface Certificate {
  kind: CertificateKind
  /** Hex ed25519 public key of the signer: an authority id for grants, the granted node's key for sessions. */
  issuer: string
  /** libp2p peer id string of the holder. */
  subject: string
  /** Canonical order, no duplicates, at least one. */
  roles: Role[]
  notBeforeMs: number
  notAfterMs: number
  /** Cells the certificate is limited to, sorted and unique; empty means every cell. */
  cells: string[]
  signature: Uint8Array
}

export interface CertificateFields {
  subject: string
  roles: Role[]
  notBeforeMs: number
  notAfterMs: number
  cells?: string[]
}

const TYPE_CERTIFICATE = 3
const KIND_CODES: Record<CertificateKind, number> = { grant: 1, session: 2 }
const DOMAINS: Record<CertificateKind, string> = { grant: 'cell-grant-v1', session: 'cell-session-v1' }
export const MAX_SUBJECT_BYTES = 128
export const MAX_SCOPE_CELLS = 8
const SIGNATURE_BYTES = 64
export const MAX_CERTIFICATE_BYTES = 3 + 32 + 1 + MAX_SUBJECT_BYTES + 1 + 16 + 1 + MAX_SCOPE_CELLS * (1 + MAX_CELL_NAME_BYTES) + SIGNATURE_BYTES

export function normaliseRoles (roles: readonly string[]): Role[] {
  if (!Array.isArray(roles)) throw new MalformedRecordError('roles must be an array')
  for (const r of roles) if (!ROLES.includes(r as Role)) throw new MalformedRecordError(`unknown role "${String(r)}"`)
  const out = ROLES.filter(r => roles.includes(r))
  if (out.length === 0) throw new MalformedRecordError('a certificate needs at least one role')
  return out
}

function normaliseCells (cells: readonly string[] | undefined): string[] {
  if (cells == null) return []
  if (!Array.isArray(cells)) throw new MalformedRecordError('cells must be an array')
  return [...new Set(cells)].sort()
}

function roleMask (roles: readonly Role[]): number {
  let mask = 0
  for (const r of roles) mask |= 1 << ROLES.indexOf(r)
  return mask
}

function checkCanonical (cert: Omit<Certificate, 'signature'>): void {
  if (normaliseRoles(cert.roles).join() !== cert.roles.join()) throw new MalformedRecordError('roles must be unique and in canonical order')
  if (!Array.isArray(cert.cells) || cert.cells.length > MAX_SCOPE_CELLS) throw new MalformedRecordError(`at most ${MAX_SCOPE_CELLS} cells in scope`)
  for (let i = 1; i < cert.cells.length; i++) {
    if (!(cert.cells[i - 1] < cert.cells[i])) throw new MalformedRecordError('scope cells must be sorted and unique')
  }
  if (!(cert.notAfterMs > cert.notBeforeMs)) throw new MalformedRecordError('notAfterMs must be after notBeforeMs')
}

/** The signed bytes of a certificate: everything but the signature. */
export function encodeCertificateBody (cert: Omit<Certificate, 'signature'>): Uint8Array {
  const kind = KIND_CODES[cert.kind]
  if (kind == null) throw new MalformedRecordError(`unknown certificate kind "${String(cert.kind)}"`)
  checkCanonical(cert)
  const w = new Writer().u8(RECORD_FORMAT_VERSION).u8(TYPE_CERTIFICATE).u8(kind)
    .fixed(fromHex(cert.issuer, 32, 'issuer'), 32, 'issuer')
    .string8(cert.subject, 1, MAX_SUBJECT_BYTES, 'subject')
    .u8(roleMask(cert.roles))
    .u64(cert.notBeforeMs, 'notBeforeMs')
    .u64(cert.notAfterMs, 'notAfterMs')
    .u8(cert.cells.length)
  for (const c of cert.cells) w.string8(c, 1, MAX_CELL_NAME_BYTES, 'cell')
  return w.finish()
}

export function encodeCertificate (cert: Certificate): Uint8Array {
  const body = encodeCertificateBody(cert)
  return new Writer().fixed(body, body.length, 'body').fixed(cert.signature, SIGNATURE_BYTES, 'signature').finish()
}

export function decodeCertificate (bytes: Uint8Array): Certificate {
  if (bytes?.length > MAX_CERTIFICATE_BYTES) throw new MalformedRecordError(`certificate exceeds ${MAX_CERTIFICATE_BYTES} bytes`)
  const r = new Reader(bytes, 'certificate')
  const format = r.u8()
  if (format !== RECORD_FORMAT_VERSION) r.fail(`unsupported format version ${format}`)
  const type = r.u8()
  if (type !== TYPE_CERTIFICATE) r.fail(`record type ${type}, expected ${TYPE_CERTIFICATE}`)
  const kindCode = r.u8()
  const kind: CertificateKind | undefined = kindCode === 1 ? 'grant' : kindCode === 2 ? 'session' : undefined
  if (kind == null) return r.fail(`unknown certificate kind ${kindCode}`)
  const issuer = toHex(r.take(32))
  const subject = r.string8(1, MAX_SUBJECT_BYTES, 'subject')
  const mask = r.u8()
  if (mask === 0 || mask >= 1 << ROLES.length) r.fail(`invalid role mask ${mask}`)
  const roles = ROLES.filter((_, i) => (mask & (1 << i)) !== 0)
  const notBeforeMs = r.u64('notBeforeMs')
  const notAfterMs = r.u64('notAfterMs')
  if (!(notAfterMs > notBeforeMs)) r.fail('notAfterMs must be after notBeforeMs')
  const count = r.u8()
  if (count > MAX_SCOPE_CELLS) r.fail(`${count} scope cells exceed ${MAX_SCOPE_CELLS}`)
  const cells: string[] = []
  for (let i = 0; i < count; i++) {
    const c = r.string8(1, MAX_CELL_NAME_BYTES, 'cell')
    if (i > 0 && !(cells[i - 1] < c)) r.fail('scope cells must be sorted and unique')
    cells.push(c)
  }
  const signature = r.copy(SIGNATURE_BYTES)
  r.end()
  return { kind, issuer, subject, roles, notBeforeMs, notAfterMs, cells, signature }
}

export async function verifyCertificateSignature (cert: Certificate, options: SignalOptions = {}): Promise<boolean> {
  return await rawVerify(fromHex(cert.issuer, 32, 'issuer'), DOMAINS[cert.kind], encodeCertificateBody(cert), cert.signature, options)
}

function canonicalPeerId (subject: string): string {
  try {
    return peerIdFromString(subject).toString()
  } catch (err) {
    throw new MalformedRecordError(`subject "${String(subject)}" is not a peer id`, { cause: err })
  }
}

async function sign (key: AuthorityKey | Ed25519PrivateKey, body: Omit<Certificate, 'signature'>, options: SignalOptions): Promise<Certificate> {
  const signature = await rawSign(key, DOMAINS[body.kind], encodeCertificateBody(body), options)
  return { ...body, signature }
}

/** An authority grants a node (its peer id) roles for a window of typically days. */
export async function issueGrant (authority: AuthorityKey, fields: CertificateFields, options: SignalOptions = {}): Promise<Certificate> {
  return await sign(authority, {
    kind: 'grant',
    issuer: authority.id,
    subject: canonicalPeerId(fields.subject),
    roles: normaliseRoles(fields.roles),
    notBeforeMs: fields.notBeforeMs,
    notAfterMs: fields.notAfterMs,
    cells: normaliseCells(fields.cells)
  }, options)
}

/**
 * The grant's subject signs a short session cert with its libp2p key. Roles must be a subset of
 * the grant's, scope a subset of its scope (inherited when omitted), and the window is clamped to
 * end with the grant because a session cannot outlive the grant it hangs from.
 */
export async function issueSession (hostKey: Ed25519PrivateKey, grant: Certificate, fields: CertificateFields, options: SignalOptions = {}): Promise<Certificate> {
  if (hostKey?.type !== 'Ed25519') throw new WrongSubjectError('a session issuer key must be ed25519')
  const hostPeer = peerIdFromPrivateKey(hostKey).toString()
  if (hostPeer !== grant.subject) throw new WrongSubjectError(`key of ${hostPeer} cannot issue under a grant for ${grant.subject}`)
  const roles = normaliseRoles(fields.roles)
  const extra = roles.filter(r => !grant.roles.includes(r))
  if (extra.length > 0) throw new WrongRoleError(`grant does not carry role(s) ${extra.join(', ')}`)
  let cells = normaliseCells(fields.cells)
  if (grant.cells.length > 0) {
    if (cells.length === 0) cells = [...grant.cells]
    const outside = cells.filter(c => !grant.cells.includes(c))
    if (outside.length > 0) throw new WrongCellScopeError(`grant does not cover cell(s) ${outside.join(', ')}`)
  }
  const notAfterMs = Math.min(fields.notAfterMs, grant.notAfterMs)
  if (!(notAfterMs > fields.notBeforeMs)) throw new CertificateExpiredError('the grant ends before the session would start')
  return await sign(hostKey, {
    kind: 'session',
    issuer: authorityIdOf(hostKey.publicKey),
    subject: canonicalPeerId(fields.subject),
    roles,
    notBeforeMs: fields.notBeforeMs,
    notAfterMs,
    cells
  }, options)
}
