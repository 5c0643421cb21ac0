// Signed releases and desired-version records. A release binds cell name, version and artifact
// digest to an authority under a per-cell sequence number; a desired-version record (same shape
// plus a reason) tells the fleet which release a cell should run, so `cell rollback` is a new,
// higher-sequence record rather than a replay of an old one.
import { Reader, Writer, fromHex, toHex } from './bytes.ts'
import { parseAuthorityId, rawSign, rawVerify, type AuthorityKey, type SignalOptions } from './authority.ts'
import { BadSignatureError, DigestMismatchError, MalformedRecordError, UnknownAuthorityError } from './errors.ts'

export const RECORD_FORMAT_VERSION = 1
const TYPE_RELEASE = 1
const TYPE_DESIRED = 2
const RELEASE_DOMAIN = 'cell-release-v1'
const DESIRED_DOMAIN = 'cell-desired-v1'

export const MAX_CELL_NAME_BYTES = 128
export const MAX_VERSION_BYTES = 64
export const MAX_REASON_BYTES = 255
const SIGNATURE_BYTES = 64
/** Largest encoded desired-version record (the larger of the two kinds). */
export const MAX_RECORD_BYTES = 2 + 1 + MAX_CELL_NAME_BYTES + 1 + MAX_VERSION_BYTES + 32 + 8 + 8 + 32 + 1 + MAX_REASON_BYTES + SIGNATURE_BYTES

export interface ReleaseInput {
  cell: string
  version: string
  /** sha256 of the artifact, 64 lowercase hex characters. */
  digest: string
  /** Per-cell sequence number, integer >= 1, strictly increasing per authority's publishes. */
  seq: number
  createdMs: number
}

export interface Release extends ReleaseInput {
  /** Authority id (hex public key) that signed the record. */
  authority: string
}

export interface SignedRelease {
  release: Release
  signature: Uint8Array
}

export interface DesiredVersionInput extends ReleaseInput {
  /** Why the fleet should move (e.g. "rollback: error rate 4%"); at most 255 bytes. */
  reason: string
}

export interface DesiredVersion extends DesiredVersionInput {
  authority: string
}

export interface SignedDesiredVersion {
  record: DesiredVersion
  signature: Uint8Array
}

export interface VerifyRecordOptions extends SignalOptions {
  /** Authority ids accepted as signers; when absent only the signature is checked. */
  trusted?: ReadonlySet<string>
}

function writeCommon (w: Writer, type: number, r: Release): void {
  if (!Number.isSafeInteger(r.seq) || r.seq < 1) throw new MalformedRecordError('seq must be an integer >= 1')
  w.u8(RECORD_FORMAT_VERSION).u8(type)
    .string8(r.cell, 1, MAX_CELL_NAME_BYTES, 'cell')
    .string8(r.version, 1, MAX_VERSION_BYTES, 'version')
    .fixed(fromHex(r.digest, 32, 'digest'), 32, 'digest')
    .u64(r.seq, 'seq')
    .u64(r.createdMs, 'createdMs')
    .fixed(parseAuthorityId(r.authority), 32, 'authority')
}

function readCommon (r: Reader, type: number): Release {
  const format = r.u8()
  if (format !== RECORD_FORMAT_VERSION) r.fail(`unsupported format version ${format}`)
  const t = r.u8()
  if (t !== type) r.fail(`record type ${t}, expected ${type}`)
  const cell = r.string8(1, MAX_CELL_NAME_BYTES, 'cell')
  const version = r.string8(1, MAX_VERSION_BYTES, 'version')
  const digest = toHex(r.take(32))
  const seq = r.u64('seq')
  if (seq < 1) r.fail('seq must be >= 1')
  const createdMs = r.u64('createdMs')
  const authority = toHex(r.take(32))
  return { cell, version, digest, seq, createdMs, authority }
}

/** The signed body of a release: everything but the signature. */
export function encodeReleaseBody (release: Release): Uint8Array {
  const w = new Writer()
  writeCommon(w, TYPE_RELEASE, release)
  return w.finish()
}

export function encodeDesiredVersionBody (record: DesiredVersion): Uint8Array {
  const w = new Writer()
  writeCommon(w, TYPE_DESIRED, record)
  w.string8(record.reason, 0, MAX_REASON_BYTES, 'reason')
  return w.finish()
}

export function encodeRelease (signed: SignedRelease): Uint8Array {
  const body = encodeReleaseBody(signed.release)
  return new Writer().fixed(body, body.length, 'body').fixed(signed.signature, SIGNATURE_BYTES, 'signature').finish()
}

export function decodeRelease (bytes: Uint8Array): SignedRelease {
  if (bytes?.length > MAX_RECORD_BYTES) throw new MalformedRecordError(`release exceeds ${MAX_RECORD_BYTES} bytes`)
  const r = new Reader(bytes, 'release')
  const release = readCommon(r, TYPE_RELEASE)
  const signature = r.copy(SIGNATURE_BYTES)
  r.end()
  return { release, signature }
}

export function encodeDesiredVersion (signed: SignedDesiredVersion): Uint8Array {
  const body = encodeDesiredVersionBody(signed.record)
  return new Writer().fixed(body, body.length, 'body').fixed(signed.signature, SIGNATURE_BYTES, 'signature').finish()
}

export function decodeDesiredVersion (bytes: Uint8Array): SignedDesiredVersion {
  if (bytes?.length > MAX_RECORD_BYTES) throw new MalformedRecordError(`desired-version record exceeds ${MAX_RECORD_BYTES} bytes`)
  const r = new Reader(bytes, 'desired-version record')
  const common = readCommon(r, TYPE_DESIRED)
  const reason = r.string8(0, MAX_REASON_BYTES, 'reason')
  const signature = r.copy(SIGNATURE_BYTES)
  r.end()
  return { record: { ...common, reason }, signature }
}

export async function signRelease (input: ReleaseInput, key: AuthorityKey, options: SignalOptions = {}): Promise<SignedRelease> {
  const release: Release = { cell: input.cell, version: input.version, digest: input.digest, seq: input.seq, createdMs: input.createdMs, authority: key.id }
  const signature = await rawSign(key, RELEASE_DOMAIN, encodeReleaseBody(release), options)
  return { release, signature }
}

export async function signDesiredVersion (input: DesiredVersionInput, key: AuthorityKey, options: SignalOptions = {}): Promise<SignedDesiredVersion> {
  const record: DesiredVersion = { cell: input.cell, version: input.version, digest: input.digest, seq: input.seq, reason: input.reason, createdMs: input.createdMs, authority: key.id }
  const signature = await rawSign(key, DESIRED_DOMAIN, encodeDesiredVersionBody(record), options)
  return { record, signature }
}

async function checkSigned (authority: string, domain: string, body: Uint8Array, signature: Uint8Array, what: string, options: VerifyRecordOptions): Promise<void> {
  if (options.trusted != null && !options.trusted.has(authority)) {
    throw new UnknownAuthorityError(`${what} is signed by untrusted authority ${authority}`)
  }
  if (!(signature instanceof Uint8Array) || !await rawVerify(parseAuthorityId(authority), domain, body, signature, options)) {
    throw new BadSignatureError(`${what} signature does not verify`)
  }
}

/** Checks trust and signature; returns a copy of the release. Throws a named error otherwise. */
export async function verifyRelease (signed: SignedRelease, options: VerifyRecordOptions = {}): Promise<Release> {
  const body = encodeReleaseBody(signed.release)
  const r = signed.release
  await checkSigned(r.authority, RELEASE_DOMAIN, body, signed.signature, `release ${r.cell}@${r.version}`, options)
  return { ...r }
}

export async function verifyDesiredVersion (signed: SignedDesiredVersion, options: VerifyRecordOptions = {}): Promise<DesiredVersion> {
  const body = encodeDesiredVersionBody(signed.record)
  const r = signed.record
  await checkSigned(r.authority, DESIRED_DOMAIN, body, signed.signature, `desired version ${r.cell}@${r.version}`, options)
  return { ...r }
}

export async function sha256Hex (bytes: Uint8Array, options: SignalOptions = {}): Promise<string> {
  options.signal?.throwIfAborted()
  const digest = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)
  options.signal?.throwIfAborted()
  return toHex(new Uint8Array(digest))
}

/** A node runs this before a capsid may start an artifact: its bytes must hash to the release's digest. */
export async function checkArtifactDigest (artifact: Uint8Array, release: Release, options: SignalOptions = {}): Promise<void> {
  const actual = await sha256Hex(artifact, options)
  if (actual !== release.digest) {
    throw new DigestMismatchError(`artifact of ${release.cell}@${release.version} hashes to ${actual}, release names ${release.digest}`)
  }
}

export type VerifiedRecord = (Release & { kind: 'release' }) | (DesiredVersion & { kind: 'desired' })

export interface VerifySignedRecordOptions extends VerifyRecordOptions {
  /** Accept only this kind; both when absent. */
  kind?: 'release' | 'desired'
}

/**
 * Verifies an encoded release or desired-version record (the record type byte tells them
 * apart). Matches the fleet's `SignedRecordVerifier` port: opaque bytes in, vouched fields out.
 */
export async function verifySignedRecord (bytes: Uint8Array, options: VerifySignedRecordOptions = {}): Promise<VerifiedRecord> {
  const type = bytes instanceof Uint8Array && bytes.length >= 2 ? bytes[1] : -1
  if (type === TYPE_RELEASE && options.kind !== 'desired') {
    return { kind: 'release', ...await verifyRelease(decodeRelease(bytes), options) }
  }
  if (type === TYPE_DESIRED && options.kind !== 'release') {
    return { kind: 'desired', ...await verifyDesiredVersion(decodeDesiredVersion(bytes), options) }
  }
  throw new MalformedRecordError(`not a ${options.kind ?? 'release or desired-version'} record`)
}
