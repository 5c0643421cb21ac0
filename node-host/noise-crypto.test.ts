import { describe, it, expect } from 'vitest'
import { randomBytes } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { nodeNoiseCrypto } from './noise-crypto.ts'

// A copy: the WebAssembly implementation (small messages) answers in memory its next call reuses.
const join = (x: { subarray: () => Uint8Array }): Uint8Array => Uint8Array.from(x.subarray())

describe('nodeNoiseCrypto', () => {
  it('interoperates with Noise\'s default crypto both ways, small and large, arrays and lists', async () => {
    const { Uint8ArrayList } = await import('uint8arraylist')
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const ad = randomBytes(8)
    for (const size of [0, 100, 1199, 1200, 4000, 65519]) {
      const pt = randomBytes(size)
      const ours = join(nodeNoiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k))
      expect(ours).toEqual(join(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, ad, k)))
      expect(join(defaultCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k))).toEqual(new Uint8Array(pt))
      expect(join(nodeNoiseCrypto.chaCha20Poly1305Decrypt(ours, nonce, ad, k))).toEqual(new Uint8Array(pt))
      // As yamux hands it over: a list of pieces.
      const list = new Uint8ArrayList(pt.subarray(0, size >> 1), pt.subarray(size >> 1))
      expect(join(nodeNoiseCrypto.chaCha20Poly1305Encrypt(list, nonce, ad, k))).toEqual(ours)
      expect(join(nodeNoiseCrypto.chaCha20Poly1305Decrypt(new Uint8ArrayList(ours.subarray(0, 7), ours.subarray(7)), nonce, ad, k))).toEqual(new Uint8Array(pt))
    }
  })

  it('refuses a forged tag, and a key changed in place is used as it is now', () => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const pt = randomBytes(3000)
    const sealed = Uint8Array.from(join(nodeNoiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k)))
    sealed[sealed.length - 1] ^= 1
    expect(() => nodeNoiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k)).toThrow()
    const before = join(nodeNoiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k))
    k[0] ^= 0xff
    const after = join(nodeNoiseCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k))
    expect(after).not.toEqual(before)
    expect(after).toEqual(join(defaultCrypto.chaCha20Poly1305Encrypt(pt, nonce, new Uint8Array(0), k)))
  })
})
