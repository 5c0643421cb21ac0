// TLS certificates for the WebTransport listener. Browsers dial it with `serverCertificateHashes`,
// which Chromium accepts only for ECDSA certificates valid for less than 14 days, so the node makes
// its own (P-256, 10 days) and rotates them: it always holds the certificate it serves and the next
// one, and advertises both hashes, so an address a browser got before a rotation still dials after
// it. The pair is kept in the data directory (mode 0600) so a restarted node keeps its addresses.
import { webcrypto } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
// @peculiar/x509 resolves its dependencies through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { sha256 } from 'multiformats/hashes/sha2'
import { base64url } from 'multiformats/bases/base64'
import { CellError, type RetryRule } from '../../core/errors.ts'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

export const DEFAULT_CERT_LIFETIME_MS = 10 * 24 * 3600_000
/** Chromium refuses `serverCertificateHashes` certificates valid for 14 days or more. */
export const MAX_CERT_LIFETIME_MS = 14 * 24 * 3600_000 - 60_000
/** notBefore is set this far in the past (at most a tenth of the lifetime) so a browser whose clock is a little behind accepts it. */
const BACKDATE_MS = 60_000
/** Shortest lifetime accepted (tests rotate every few seconds). */
const MIN_LIFETIME_MS = 10_000

export interface WebTransportCertificate {
  /** PEM of the certificate and of its PKCS#8 private key (the sidecar serves them). */
  cert: string
  key: string
  /** Multihash (sha2-256) of the DER certificate, base64url multibase: the `/certhash/` value. */
  hash: string
  notBeforeMs: number
  notAfterMs: number
}

export class CertificateLifetimeError extends CellError {
  static override readonly errorName = 'CertificateLifetimeError'
  static override readonly retry: RetryRule = 'never'
}

/** A certificate valid from a little before `fromMs` for `lifetimeMs`. */
export async function generateCertificate (fromMs: number, lifetimeMs: number = DEFAULT_CERT_LIFETIME_MS): Promise<WebTransportCertificate> {
  if (!(Number.isInteger(lifetimeMs) && lifetimeMs >= MIN_LIFETIME_MS && lifetimeMs <= MAX_CERT_LIFETIME_MS)) throw new CertificateLifetimeError(`a WebTransport certificate must be valid for 10 s to 14 days, not ${lifetimeMs} ms`)
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as CryptoKeyPair
  const notBeforeMs = Math.floor((fromMs - Math.min(BACKDATE_MS, lifetimeMs / 10)) / 1000) * 1000
  const notAfterMs = notBeforeMs + lifetimeMs
  const serial = new Uint8Array(webcrypto.getRandomValues(new Uint8Array(16)))
  serial[0] &= 0x7f
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(serial, b => b.toString(16).padStart(2, '0')).join(''),
    name: 'CN=cell-webtransport',
    notBefore: new Date(notBeforeMs),
    notAfter: new Date(notAfterMs),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true)]
  })
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  return { cert: cert.toString('pem'), key: toPem(pkcs8, 'PRIVATE KEY'), hash: await certhashOf(new Uint8Array(cert.rawData)), notBeforeMs, notAfterMs }
}

/** The `/certhash/` value of a DER certificate. */
export async function certhashOf (der: Uint8Array): Promise<string> {
  return base64url.encode((await sha256.digest(der)).bytes)
}

function toPem (der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}

export interface CertificatePair {
  /** The certificate the listener serves now. */
  current: WebTransportCertificate
  /** The one it serves after the next rotation; its hash is advertised already. */
  next: WebTransportCertificate
  /**
   * The hash of the certificate served before the last rotation (not served any more). An address
   * taken before that rotation names it with `current`, and the browser checks every hash it dialed
   * against the ones the node reports in Noise, so the node reports this one too until the next
   * rotation. Kept across restarts with the pair.
   */
  retiredHash?: string
}

export interface RotationPolicy {
  lifetimeMs: number
  /** Switch to the next certificate when the current one has less than this left. */
  renewBeforeMs: number
}

export function defaultRotation (lifetimeMs: number = DEFAULT_CERT_LIFETIME_MS): RotationPolicy {
  return { lifetimeMs, renewBeforeMs: Math.floor(lifetimeMs * 0.4) }
}

/**
 * `CELL_WEBTRANSPORT_CERT_MS`: a shorter certificate lifetime (tests watch rotations happen); unset,
 * the default. A value out of range fails at listen with CertificateLifetimeError.
 */
export function rotationFromEnv (env: NodeJS.ProcessEnv = process.env): RotationPolicy | undefined {
  const text = env.CELL_WEBTRANSPORT_CERT_MS
  return text === undefined || text === '' ? undefined : defaultRotation(Number(text))
}

/** When the pair must rotate (pure: from the current certificate and the policy). */
export function rotationDueMs (pair: CertificatePair, policy: RotationPolicy): number {
  return pair.current.notAfterMs - policy.renewBeforeMs
}

/** The certificate that follows `c`: valid from the time `c` is due to give way. */
async function successorOf (c: WebTransportCertificate, policy: RotationPolicy): Promise<WebTransportCertificate> {
  return await generateCertificate(c.notAfterMs - policy.renewBeforeMs, policy.lifetimeMs)
}

/**
 * Brings a pair up to date at `nowMs`: a missing, expired, too-long-lived or inconsistent pair is
 * made anew; a current certificate past its renewal time gives way to the next (valid from then),
 * and a fresh next is made. Returns the same object when nothing changed.
 */
export async function advancePair (pair: CertificatePair | undefined, nowMs: number, policy: RotationPolicy): Promise<CertificatePair> {
  const sane = (c: WebTransportCertificate): boolean => c.notAfterMs - c.notBeforeMs <= MAX_CERT_LIFETIME_MS && c.notAfterMs - c.notBeforeMs === policy.lifetimeMs
  const fresh = async (): Promise<CertificatePair> => {
    const current = await generateCertificate(nowMs, policy.lifetimeMs)
    return { current, next: await successorOf(current, policy) }
  }
  if (pair === undefined || !sane(pair.current) || !sane(pair.next) || pair.current.notBeforeMs > nowMs) return await fresh()
  if (nowMs < rotationDueMs(pair, policy)) return pair
  // The next one takes over; if the node slept through its time too, start again.
  if (pair.next.notBeforeMs > nowMs || nowMs >= pair.next.notAfterMs - policy.renewBeforeMs) return await fresh()
  return { current: pair.next, next: await successorOf(pair.next, policy), retiredHash: pair.current.hash }
}

/** The hashes the node reports in its Noise handshake: the two it advertises and the retired one. */
export function reportedHashes (pair: CertificatePair): string[] {
  const hashes = [pair.current.hash, pair.next.hash]
  if (pair.retiredHash !== undefined && !hashes.includes(pair.retiredHash)) hashes.push(pair.retiredHash)
  return hashes
}

const FILE = 'webtransport-certs.json'

export async function loadPair (dir: string): Promise<CertificatePair | undefined> {
  let text: string
  try { text = await readFile(join(dir, FILE), 'utf8') } catch { return undefined }
  try {
    const v = JSON.parse(text) as CertificatePair
    const ok = (c: WebTransportCertificate | undefined): boolean => c !== undefined && typeof c.cert === 'string' && typeof c.key === 'string' && typeof c.hash === 'string' && Number.isFinite(c.notBeforeMs) && Number.isFinite(c.notAfterMs)
    if (!ok(v.current) || !ok(v.next)) return undefined
    return typeof v.retiredHash === 'string' && /^u[A-Za-z0-9_-]{1,100}$/.test(v.retiredHash) ? { current: v.current, next: v.next, retiredHash: v.retiredHash } : { current: v.current, next: v.next }
  } catch {
    return undefined
  }
}

export async function savePair (dir: string, pair: CertificatePair): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const tmp = join(dir, `${FILE}.tmp`)
  await writeFile(tmp, JSON.stringify(pair), { mode: 0o600 })
  await rename(tmp, join(dir, FILE))
}
