// Grant tokens: the one-line text form of a host/caller/operator grant that `cell grant` prints
// and `cell up --grant`, the browser page and the dashboard paste back in. It is
// `cell-grant-v1:` + unpadded base64url of the certificate encoding, so it survives shells,
// URLs and copy-paste. Decoding checks shape only; whether the issuer is trusted and the
// signature holds is the trust layer's decision (verifyChain / verifyCertificateSignature).
// Plain base64url code, no Buffer: this module is loaded by browsers too.
import { MAX_CERTIFICATE_BYTES, decodeCertificate, encodeCertificate, type Certificate } from './certificate.ts'
import { MalformedRecordError } from './errors.ts'

/** The text is not a grant token: wrong prefix, bad base64url, or not a grant certificate. */
export class MalformedGrantTokenError extends MalformedRecordError { static override readonly errorName = 'MalformedGrantTokenError' }

export const GRANT_TOKEN_PREFIX = 'cell-grant-v1:'
/** Longest well-formed token; longer input is refused before any decoding. */
export const MAX_GRANT_TOKEN_LENGTH = GRANT_TOKEN_PREFIX.length + Math.ceil(MAX_CERTIFICATE_BYTES * 4 / 3)

const BASE64URL_RE = /^[A-Za-z0-9_-]+$/
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const VALUES = new Map([...ALPHABET].map((c, i) => [c, i]))

export function encodeGrantToken (cert: Certificate): string {
  if (cert?.kind !== 'grant') throw new MalformedGrantTokenError(`a grant token holds a grant, not a ${String(cert?.kind)} certificate`)
  return GRANT_TOKEN_PREFIX + toBase64Url(encodeCertificate(cert))
}

/** Parses a token (surrounding whitespace ignored). Does not check the signature or the issuer. */
export function decodeGrantToken (text: string): Certificate {
  if (typeof text !== 'string') throw new MalformedGrantTokenError('a grant token is a string')
  const trimmed = text.trim()
  if (trimmed.length > MAX_GRANT_TOKEN_LENGTH) throw new MalformedGrantTokenError(`grant token exceeds ${MAX_GRANT_TOKEN_LENGTH} characters`)
  if (!trimmed.startsWith(GRANT_TOKEN_PREFIX)) throw new MalformedGrantTokenError(`a grant token starts with "${GRANT_TOKEN_PREFIX}"`)
  const bytes = fromBase64Url(trimmed.slice(GRANT_TOKEN_PREFIX.length))
  let cert: Certificate
  try {
    cert = decodeCertificate(bytes)
  } catch (err) {
    throw new MalformedGrantTokenError(`grant token does not hold a certificate: ${(err as Error).message}`, { cause: err })
  }
  if (cert.kind !== 'grant') throw new MalformedGrantTokenError(`grant token holds a ${cert.kind} certificate, not a grant`)
  return cert
}

function toBase64Url (bytes: Uint8Array): string {
  let out = ''
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0)
    const chars = Math.min(4, Math.ceil((bytes.length - i) * 4 / 3))
    for (let j = 0; j < chars; j++) out += ALPHABET[(n >> (18 - 6 * j)) & 63]
  }
  return out
}

/** Strict: only the base64url alphabet, no padding, and unused trailing bits must be zero. */
function fromBase64Url (text: string): Uint8Array {
  if (text.length === 0 || !BASE64URL_RE.test(text) || text.length % 4 === 1) {
    throw new MalformedGrantTokenError('grant token body is not unpadded base64url')
  }
  const out = new Uint8Array(Math.floor(text.length * 3 / 4))
  let acc = 0
  let bits = 0
  let o = 0
  for (const c of text) {
    acc = (acc << 6) | (VALUES.get(c) as number)
    bits += 6
    if (bits >= 8) {
      bits -= 8
      out[o++] = (acc >> bits) & 0xff
      acc &= (1 << bits) - 1
    }
  }
  // Leftover bits are padding; non-zero ones would let two texts decode to the same certificate.
  if (acc !== 0) throw new MalformedGrantTokenError('grant token body is not canonical base64url')
  return out
}
