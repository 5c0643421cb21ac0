// Signed retire records (`cell retire`): "cell X runs nowhere", signed by the cell's authority under
// the same per-cell sequence as its releases and desired-version records, so a later publish or
// rollback (a higher seq) brings the cell back and a replayed older retire record cannot stop it
// again. Domain-separated from releases: a retire signature never verifies as anything else.
import { Reader, Writer, toHex } from './bytes.ts'
import { parseAuthorityId, rawSign, rawVerify, type AuthorityKey, type SignalOptions } from './authority.ts'
import { BadSignatureError, MalformedRecordError, UnknownAuthorityError } from './errors.ts'
import { MAX_CELL_NAME_BYTES, MAX_REASON_BYTES, RECORD_FORMAT_VERSION, type VerifyRecordOptions } from './release.ts'

/** Record type byte (releases are 1, desired-version records 2). */
export const TYPE_RETIRE = 3
const RETIRE_DOMAIN = 'cell-retire-v1'
const SIGNATURE_BYTES = 64
export const MAX_RETIRE_BYTES = 2 + 1 + MAX_CELL_NAME_BYTES + 8 + 8 + 32 + 1 + MAX_REASON_BYTES + SIGNATURE_BYTES

export interface RetireInput {
  cell: string
  /** Above every release and desired record of the cell (and the clock), so it takes effect. */
  seq: number
  createdMs: number
  /** Why (e.g. "retired by operator"); at most 255 bytes. */
  reason: string
}

export interface Retire extends RetireInput {
  authority: string
}

export interface SignedRetire {
  record: Retire
  signature: Uint8Array
}

export function encodeRetireBody (r: Retire): Uint8Array {
  if (!Number.isSafeInteger(r.seq) || r.seq < 1) throw new MalformedRecordError('seq must be an integer >= 1')
  return new Writer().u8(RECORD_FORMAT_VERSION).u8(TYPE_RETIRE)
    .string8(r.cell, 1, MAX_CELL_NAME_BYTES, 'cell')
    .u64(r.seq, 'seq')
    .u64(r.createdMs, 'createdMs')
    .fixed(parseAuthorityId(r.authority), 32, 'authority')
    .string8(r.reason, 0, MAX_REASON_BYTES, 'reason')
    .finish()
}

export function encodeRetire (signed: SignedRetire): Uint8Array {
  const body = encodeRetireBody(signed.record)
  return new Writer().fixed(body, body.length, 'body').fixed(signed.signature, SIGNATURE_BYTES, 'signature').finish()
}

export function decodeRetire (bytes: Uint8Array): SignedRetire {
  if (!(bytes instanceof Uint8Array)) throw new MalformedRecordError('retire record is not bytes')
  if (bytes.length > MAX_RETIRE_BYTES) throw new MalformedRecordError(`retire record exceeds ${MAX_RETIRE_BYTES} bytes`)
  const r = new Reader(bytes, 'retire record')
  const format = r.u8()
  if (format !== RECORD_FORMAT_VERSION) r.fail(`unsupported format version ${format}`)
  const type = r.u8()
  if (type !== TYPE_RETIRE) r.fail(`record type ${type}, expected ${TYPE_RETIRE}`)
  const cell = r.string8(1, MAX_CELL_NAME_BYTES, 'cell')
  const seq = r.u64('seq')
  if (seq < 1) r.fail('seq must be >= 1')
  const createdMs = r.u64('createdMs')
  const authority = toHex(r.take(32))
  const reason = r.string8(0, MAX_REASON_BYTES, 'reason')
  const signature = r.copy(SIGNATURE_BYTES)
  r.end()
  return { record: { cell, seq, createdMs, authority, reason }, signature }
}

export async function signRetire (input: RetireInput, key: AuthorityKey, options: SignalOptions = {}): Promise<SignedRetire> {
  const record: Retire = { cell: input.cell, seq: input.seq, createdMs: input.createdMs, reason: input.reason, authority: key.id }
  return { record, signature: await rawSign(key, RETIRE_DOMAIN, encodeRetireBody(record), options) }
}

/** Checks trust and signature; returns a copy of the record. Throws a named error otherwise. */
export async function verifyRetire (signed: SignedRetire, options: VerifyRecordOptions = {}): Promise<Retire> {
  const r = signed.record
  if (options.trusted != null && !options.trusted.has(r.authority)) {
    throw new UnknownAuthorityError(`retire record of ${r.cell} is signed by untrusted authority ${r.authority}`)
  }
  if (!(signed.signature instanceof Uint8Array) || !await rawVerify(parseAuthorityId(r.authority), RETIRE_DOMAIN, encodeRetireBody(r), signed.signature, options)) {
    throw new BadSignatureError(`retire record of ${r.cell} signature does not verify`)
  }
  return { ...r }
}

/** Encoded bytes in, vouched fields out: the fleet view's retire verifier port. */
export async function verifySignedRetire (bytes: Uint8Array, options: VerifyRecordOptions = {}): Promise<Retire> {
  return await verifyRetire(decodeRetire(bytes), options)
}
