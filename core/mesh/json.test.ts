import { describe, expect, it } from 'vitest'
import { decodeJson, encodeJson } from './json.ts'
import { PayloadEncodingError } from './errors.ts'

describe('encodeJson / decodeJson', () => {
  it('encodes exactly as TextEncoder does: ASCII, multi-byte, astral, lone surrogates and long texts', () => {
    const utf8 = new TextEncoder()
    for (const value of [{ amount: 100, currency: 'EUR' }, 'é€😀', '\ud800x', 'x'.repeat(600) + 'é', 'y'.repeat(2_000), null, [1, 2, 3], '\u007f\u0080']) {
      expect(encodeJson(value)).toEqual(utf8.encode(JSON.stringify(value)))
      expect(decodeJson(encodeJson(value))).toEqual(JSON.parse(JSON.stringify(value)))
    }
    expect(new TextDecoder().decode(encodeJson(undefined))).toBe('null')
  })

  it('refuses what JSON cannot carry, by name', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => encodeJson(cyclic)).toThrow(PayloadEncodingError)
    expect(() => decodeJson(new Uint8Array([0x7b]))).toThrow(PayloadEncodingError)
  })
})
