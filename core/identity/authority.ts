// Authority keys: the ed25519 key pair of a cell's author. The public key, as 64 lowercase hex
// characters, is the authority id written in Cell.toml (`[cell.authority] ed25519 = "..."`).
// Keys come from @libp2p/crypto so the same code signs in Node (node:crypto) and in browsers
// (WebCrypto Ed25519, falling back to noble).
import { generateKeyPair, generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey, Ed25519PublicKey } from '@libp2p/interface'
import { fromHex, toHex, concatBytes, utf8 } from './bytes.ts'
import { MalformedRecordError } from './errors.ts'

export interface AuthorityKey {
  /** 64 lowercase hex characters of the ed25519 public key. */
  readonly id: string
  readonly publicKey: Uint8Array
  readonly privateKey: Ed25519PrivateKey
}

export interface SignalOptions {
  signal?: AbortSignal
}

const SERIAL_PREFIX = 'cell-authority-v1:'
const SEED_BYTES = 32
const BASE64URL_RE = /^[A-Za-z0-9_-]{43}$/

/** Domains the record modules sign under; generic signing refuses them so it is never an oracle. */
export const RESERVED_DOMAINS = new Set(['cell-release-v1', 'cell-desired-v1', 'cell-grant-v1', 'cell-session-v1'])

/** Signing input = UTF-8 domain, a NUL, then the record body: no two domains share a prefix. */
export function domainSeparated (domain: string, body: Uint8Array): Uint8Array {
  if (domain.length === 0 || domain.includes('\0')) throw new MalformedRecordError('domain must be non-empty and NUL-free')
  return concatBytes([utf8(domain), Uint8Array.of(0), body])
}

export async function generateAuthority (options: SignalOptions = {}): Promise<AuthorityKey> {
  options.signal?.throwIfAborted()
  const privateKey = await generateKeyPair('Ed25519')
  options.signal?.throwIfAborted()
  return authorityFromPrivateKey(privateKey)
}

export function authorityFromPrivateKey (privateKey: Ed25519PrivateKey): AuthorityKey {
  if (privateKey?.type !== 'Ed25519') throw new MalformedRecordError('an authority key must be ed25519')
  const publicKey = new Uint8Array(privateKey.publicKey.raw)
  return { id: toHex(publicKey), publicKey, privateKey }
}

/** The authority id (hex) of a raw 32-byte public key or a libp2p Ed25519 public key. */
export function authorityIdOf (publicKey: Uint8Array | Ed25519PublicKey): string {
  const raw = publicKey instanceof Uint8Array ? publicKey : publicKey.raw
  if (raw.length !== 32) throw new MalformedRecordError('an ed25519 public key is 32 bytes')
  return toHex(raw)
}

/** Parses an authority id as written in Cell.toml; returns the raw 32-byte public key. */
export function parseAuthorityId (hex: string): Uint8Array {
  return fromHex(hex, 32, 'authority id')
}

export function isAuthorityId (hex: unknown): hex is string {
  return typeof hex === 'string' && /^[0-9a-f]{64}$/.test(hex)
}

/** `cell-authority-v1:<base64url of the 32-byte seed>` — one line, no padding. */
export function serializeAuthorityKey (key: AuthorityKey): string {
  return SERIAL_PREFIX + toBase64Url(key.privateKey.raw.subarray(0, SEED_BYTES))
}

export async function deserializeAuthorityKey (text: string, options: SignalOptions = {}): Promise<AuthorityKey> {
  options.signal?.throwIfAborted()
  const trimmed = typeof text === 'string' ? text.trim() : ''
  if (!trimmed.startsWith(SERIAL_PREFIX)) throw new MalformedRecordError(`authority key must start with "${SERIAL_PREFIX}"`)
  const encoded = trimmed.slice(SERIAL_PREFIX.length)
  if (!BASE64URL_RE.test(encoded)) throw new MalformedRecordError('authority key seed must be 43 base64url characters')
  const seed = fromBase64Url(encoded)
  // 43 chars carry 258 bits; the last two must be zero or two texts would map to one seed.
  if (toBase64Url(seed) !== encoded) throw new MalformedRecordError('authority key seed is not canonical base64url')
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  options.signal?.throwIfAborted()
  return authorityFromPrivateKey(privateKey)
}

/** Signs `data` under an application domain (never one of the record domains). */
export async function signBytes (key: AuthorityKey | Ed25519PrivateKey, domain: string, data: Uint8Array, options: SignalOptions = {}): Promise<Uint8Array> {
  if (RESERVED_DOMAINS.has(domain)) throw new MalformedRecordError(`domain "${domain}" is reserved for records`)
  return await rawSign(key, domain, data, options)
}

export async function verifyBytes (authority: string | Uint8Array, domain: string, data: Uint8Array, signature: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
  if (RESERVED_DOMAINS.has(domain)) throw new MalformedRecordError(`domain "${domain}" is reserved for records`)
  return await rawVerify(typeof authority === 'string' ? parseAuthorityId(authority) : authority, domain, data, signature, options)
}

/** @internal — record modules sign through here with their reserved domain. */
export async function rawSign (key: AuthorityKey | Ed25519PrivateKey, domain: string, body: Uint8Array, options: SignalOptions = {}): Promise<Uint8Array> {
  options.signal?.throwIfAborted()
  const privateKey = 'privateKey' in key ? key.privateKey : key
  const sig = await privateKey.sign(domainSeparated(domain, body), options)
  options.signal?.throwIfAborted()
  // Node's signer returns its Uint8Array subclass (whose slice() is a view); hand out a plain one.
  return new Uint8Array(sig)
}

/** @internal — false (never a throw) for any bad key or signature shape. */
export async function rawVerify (publicKey: Uint8Array, domain: string, body: Uint8Array, signature: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
  options.signal?.throwIfAborted()
  if (publicKey.length !== 32 || signature.length !== 64) return false
  let ok: boolean
  try {
    ok = await publicKeyFromRaw(publicKey).verify(domainSeparated(domain, body), signature, options)
  } catch (err) {
    // A point that is not on the curve is a bad signature, not a crash; aborts still propagate.
    if (options.signal?.aborted === true) throw err
    return false
  }
  options.signal?.throwIfAborted()
  return ok
}

function toBase64Url (bytes: Uint8Array): string {
  let bin = ''
  for (const b of bytes) bin += String.fromCharCode(b)
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

function fromBase64Url (text: string): Uint8Array {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - text.length % 4) % 4))
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}
