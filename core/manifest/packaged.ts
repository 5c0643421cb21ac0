// A published artifact packs the cell's Cell.toml with its bundled code, so the release's sha256
// (which the authority signs) covers the policy — replication, trust, canary weight — as well as the
// code. Layout: "CELLPKG1" | u32 BE manifest length | manifest UTF-8 | code.
import { CellError } from '../errors.ts'
import { MAX_MANIFEST_BYTES } from './schema.ts'

const MAGIC = new TextEncoder().encode('CELLPKG1')
const HEADER_BYTES = MAGIC.byteLength + 4

export class MalformedArtifactError extends CellError { static override readonly errorName = 'MalformedArtifactError' }

export interface PackagedArtifact {
  manifest: string
  code: Uint8Array
}

export function packArtifact (manifest: string, code: Uint8Array): Uint8Array {
  const m = new TextEncoder().encode(manifest)
  if (m.byteLength > MAX_MANIFEST_BYTES) throw new MalformedArtifactError(`manifest is ${m.byteLength} bytes, limit ${MAX_MANIFEST_BYTES}`)
  const out = new Uint8Array(HEADER_BYTES + m.byteLength + code.byteLength)
  out.set(MAGIC, 0)
  new DataView(out.buffer).setUint32(MAGIC.byteLength, m.byteLength)
  out.set(m, HEADER_BYTES)
  out.set(code, HEADER_BYTES + m.byteLength)
  return out
}

export function unpackArtifact (bytes: Uint8Array): PackagedArtifact {
  if (bytes.byteLength < HEADER_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) throw new MalformedArtifactError('not a packaged cell artifact (bad magic)')
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(MAGIC.byteLength)
  if (length > MAX_MANIFEST_BYTES || HEADER_BYTES + length > bytes.byteLength) throw new MalformedArtifactError(`manifest length ${length} does not fit the artifact`)
  let manifest: string
  try {
    manifest = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEADER_BYTES, HEADER_BYTES + length))
  } catch (err) {
    throw new MalformedArtifactError('manifest is not UTF-8', { cause: err })
  }
  return { manifest, code: bytes.subarray(HEADER_BYTES + length) }
}
