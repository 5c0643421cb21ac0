// Chain encoding and the trust decision a synapse handshake makes: given the chain bytes a peer
// presented and the peer id Noise authenticated, is this peer holding `requiredRole` under an
// authority we trust? Cheap structural, trust, time and role checks run before any signature so
// junk from unknown peers costs almost nothing.
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { Reader, Writer, toHex } from './bytes.ts'
import { systemClock, type Clock } from '../ports.ts'
import type { SignalOptions } from './authority.ts'
import {
  decodeCertificate, encodeCertificate, verifyCertificateSignature, MAX_CERTIFICATE_BYTES,
  type Certificate, type Role
} from './certificate.ts'
import { RECORD_FORMAT_VERSION } from './release.ts'
import {
  BadSignatureError, CertificateExpiredError, CertificateNotYetValidError, MalformedRecordError,
  TruncatedChainError, TrustError, UnknownAuthorityError, WrongCellScopeError, WrongRoleError, WrongSubjectError
} from './errors.ts'

const log = logger('cell:identity')

const TYPE_CHAIN = 4
export const MAX_CHAIN_LINKS = 4
export const MAX_CHAIN_BYTES = 4096
export const DEFAULT_CLOCK_SKEW_MS = 30_000

export function encodeChain (links: readonly Certificate[]): Uint8Array {
  if (links.length > MAX_CHAIN_LINKS) throw new MalformedRecordError(`a chain has at most ${MAX_CHAIN_LINKS} links`)
  const w = new Writer().u8(RECORD_FORMAT_VERSION).u8(TYPE_CHAIN).u8(links.length)
  for (const link of links) w.bytes16(encodeCertificate(link), MAX_CERTIFICATE_BYTES, 'link')
  const out = w.finish()
  if (out.length > MAX_CHAIN_BYTES) throw new MalformedRecordError(`chain of ${out.length} bytes exceeds ${MAX_CHAIN_BYTES}`)
  return out
}

/** Decodes the links; an empty chain decodes (verifyChain then reports it as truncated). */
export function decodeChain (bytes: Uint8Array): Certificate[] {
  if (bytes?.length > MAX_CHAIN_BYTES) throw new MalformedRecordError(`chain exceeds ${MAX_CHAIN_BYTES} bytes`)
  const r = new Reader(bytes, 'chain')
  const format = r.u8()
  if (format !== RECORD_FORMAT_VERSION) r.fail(`unsupported format version ${format}`)
  const type = r.u8()
  if (type !== TYPE_CHAIN) r.fail(`record type ${type}, expected ${TYPE_CHAIN}`)
  const count = r.u8()
  if (count > MAX_CHAIN_LINKS) r.fail(`${count} links exceed ${MAX_CHAIN_LINKS}`)
  const links: Certificate[] = []
  for (let i = 0; i < count; i++) links.push(decodeCertificate(r.bytes16(MAX_CERTIFICATE_BYTES, 'link')))
  r.end()
  return links
}

export interface VerifyChainOptions extends SignalOptions {
  /** The peer id string the Noise channel authenticated. */
  remotePeerId: string
  /** Authority ids (hex) accepted as chain roots. */
  trusted: ReadonlySet<string>
  requiredRole: Role
  /** When given, every scoped link must include this cell. */
  cell?: string
  nowMs: number
  /** Tolerated clock difference between peers; default 30 s. */
  skewMs?: number
}

export interface VerifiedChain {
  /** Authority id at the root. */
  authority: string
  /** Roles of the leaf (always a subset of every link above it). */
  roles: Role[]
  /** Leaf subject: equals the authenticated remote peer id. */
  subject: string
  /** Earliest expiry along the chain: when the caller must re-verify. */
  notAfterMs: number
  /** Effective scope (intersection of scoped links); undefined when unscoped. */
  cells?: string[]
}

function issuerKeyOf (peerId: string, index: number): string {
  let raw: Uint8Array | undefined
  try {
    const id = peerIdFromString(peerId)
    raw = id.type === 'Ed25519' ? id.publicKey.raw : undefined
  } catch (err) {
    throw new TruncatedChainError(`link ${index - 1} subject "${peerId}" is not a peer id`, { cause: err })
  }
  if (raw == null) throw new TruncatedChainError(`link ${index - 1} subject ${peerId} is not an ed25519 peer id and cannot issue`)
  return toHex(raw)
}

/** Verifies already-decoded links; see verifyChain. */
export async function verifyCertificates (links: readonly Certificate[], options: VerifyChainOptions): Promise<VerifiedChain> {
  options.signal?.throwIfAborted()
  const skewMs = options.skewMs ?? DEFAULT_CLOCK_SKEW_MS
  const now = options.nowMs
  if (links.length === 0) throw new TruncatedChainError('empty chain')
  if (links.length > MAX_CHAIN_LINKS) throw new MalformedRecordError(`a chain has at most ${MAX_CHAIN_LINKS} links`)
  let scope: string[] | undefined
  let notAfterMs = Infinity
  for (let i = 0; i < links.length; i++) {
    const link = links[i]
    if (i === 0) {
      if (link.kind !== 'grant') throw new TruncatedChainError('chain does not start with an authority grant')
      if (!options.trusted.has(link.issuer)) throw new UnknownAuthorityError(`authority ${link.issuer} is not trusted`)
    } else {
      const prev = links[i - 1]
      if (link.kind !== 'session') throw new TruncatedChainError(`link ${i} is a ${link.kind}, expected a session`)
      if (link.issuer !== issuerKeyOf(prev.subject, i)) throw new TruncatedChainError(`link ${i} is not issued by ${prev.subject}`)
      const extra = link.roles.filter(r => !prev.roles.includes(r))
      if (extra.length > 0) throw new WrongRoleError(`link ${i} claims role(s) ${extra.join(', ')} beyond its issuer's`)
    }
    if (now - skewMs >= link.notAfterMs) throw new CertificateExpiredError(`link ${i} (${link.kind} for ${link.subject}) expired at ${link.notAfterMs}`)
    if (now + skewMs < link.notBeforeMs) throw new CertificateNotYetValidError(`link ${i} (${link.kind} for ${link.subject}) is valid from ${link.notBeforeMs}`)
    if (!link.roles.includes(options.requiredRole)) throw new WrongRoleError(`link ${i} lacks role ${options.requiredRole}`)
    if (link.cells.length > 0) {
      if (options.cell != null && !link.cells.includes(options.cell)) throw new WrongCellScopeError(`link ${i} does not cover cell ${options.cell}`)
      scope = scope == null ? [...link.cells] : scope.filter(c => link.cells.includes(c))
    }
    notAfterMs = Math.min(notAfterMs, link.notAfterMs)
  }
  const leaf = links[links.length - 1]
  if (leaf.subject !== options.remotePeerId) throw new WrongSubjectError(`chain is for ${leaf.subject}, peer is ${options.remotePeerId}`)
  const valid = await Promise.all(links.map(async link => await verifyCertificateSignature(link, options)))
  const bad = valid.indexOf(false)
  if (bad !== -1) throw new BadSignatureError(`link ${bad} (${links[bad].kind} for ${links[bad].subject}) has a bad signature`)
  return { authority: links[0].issuer, roles: [...leaf.roles], subject: leaf.subject, notAfterMs, ...(scope != null ? { cells: scope } : {}) }
}

/** Decodes and verifies a presented chain; throws a TrustError subclass or MalformedRecordError. */
export async function verifyChain (chainBytes: Uint8Array, options: VerifyChainOptions): Promise<VerifiedChain> {
  return await verifyCertificates(decodeChain(chainBytes), options)
}

export interface TrustCheck extends SignalOptions {
  remotePeerId: string
  requiredRole: Role
  cell?: string
}

export type TrustVerifier = (chainBytes: Uint8Array, check: TrustCheck) => Promise<VerifiedChain>

export interface VerifierInit {
  clock?: Clock
  skewMs?: number
  /** Called with every rejection (a TrustError or MalformedRecordError) so hosts can count it. */
  onReject?: (err: TrustError | MalformedRecordError, check: TrustCheck) => void
}

/**
 * A verifier bound to a trust set (read on every call, so callers may add authorities live) and
 * a clock. Rejections are logged and reported to `onReject`; aborts pass through untouched.
 */
export function makeVerifier (trusted: ReadonlySet<string>, init: VerifierInit = {}): TrustVerifier {
  const clock = init.clock ?? systemClock
  return async (chainBytes, check) => {
    try {
      return await verifyChain(chainBytes, { ...check, trusted, nowMs: clock.now(), skewMs: init.skewMs })
    } catch (err) {
      if (err instanceof MalformedRecordError || err instanceof TrustError) {
        log('rejected chain from %s: %s', check.remotePeerId, err.message)
        init.onReject?.(err, check)
      }
      throw err
    }
  }
}
