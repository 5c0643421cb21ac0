// Noise's ChaCha20-Poly1305 for Node with the session key prepared once. The default crypto of
// @chainsafe/libp2p-noise hands Node's createCipheriv the raw key bytes for every message of 1200
// bytes or more, and Node turns them into a key object each time: about 25 µs of a ~33 µs
// encryption of a 4 kB batch here, the largest share of Noise in a node's profile under the full
// call path (issue 15). Here the key object is made once per session key and reused. Messages
// under 1200 bytes keep the default (its WebAssembly implementation is faster for those).
import crypto, { type KeyObject } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

const CHACHA_POLY1305 = 'chacha20-poly1305'
const SMALL_BYTES = 1200

type Input = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]

/** Noise keeps one key array per cipher state; its bytes are copied so a key changed in place is never served stale. */
const keys = new WeakMap<Uint8Array, { bytes: Uint8Array, key: KeyObject }>()

function keyObject (k: Uint8Array): KeyObject {
  const cached = keys.get(k)
  if (cached !== undefined && cached.bytes.byteLength === k.byteLength && cached.bytes.every((b, i) => b === k[i])) return cached.key
  const bytes = Uint8Array.from(k)
  const key = crypto.createSecretKey(bytes)
  keys.set(k, { bytes, key })
  return key
}

// A list (yamux's header and data) is encrypted piece by piece and comes back as a list of the
// pieces and the tag: the transport wrapper (core/mesh/coalesced-writes.ts) joins each Noise message
// into the one buffer the socket writes, so that join is the only copy. A single buffer (Noise's
// handshake messages) comes back as one buffer, as Noise's handshake code expects.
function encrypt (plaintext: Input, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Input {
  if (plaintext.byteLength < SMALL_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
  const cipher = crypto.createCipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: 16 })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  if (plaintext instanceof Uint8Array) {
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()], plaintext.byteLength + 16)
  }
  const out = plaintext.sublist(0, 0)
  for (const buf of plaintext) out.append(cipher.update(buf))
  const final = cipher.final()
  if (final.byteLength > 0) out.append(final)
  out.append(cipher.getAuthTag())
  return out
}

function decrypt (ciphertext: Input, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): Input {
  if (ciphertext.byteLength < SMALL_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  const all = ciphertext instanceof Uint8Array ? ciphertext : ciphertext.subarray()
  const decipher = crypto.createDecipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: 16 })
  const text = all.subarray(0, all.byteLength - 16)
  decipher.setAAD(ad, { plaintextLength: text.byteLength })
  decipher.setAuthTag(all.subarray(all.byteLength - 16))
  const output = decipher.update(text)
  const final = decipher.final()
  return final.byteLength > 0 ? Buffer.concat([output, final], output.byteLength + final.byteLength) : output
}

/** Noise's default crypto with cached key objects for Node's ChaCha20-Poly1305 (MeshInit.noiseCrypto). */
export const nodeNoiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt: encrypt,
  chaCha20Poly1305Decrypt: decrypt
}
