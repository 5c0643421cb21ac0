import { describe, it, expect } from 'vitest'
import { packArtifact, unpackArtifact, MalformedArtifactError } from './packaged.ts'

describe('packaged artifact', () => {
  it('round-trips manifest and code', () => {
    const code = new TextEncoder().encode('export default {}')
    const out = unpackArtifact(packArtifact('[cell]\nname = "x"\n', code))
    expect(out.manifest).toBe('[cell]\nname = "x"\n')
    expect(new TextDecoder().decode(out.code)).toBe('export default {}')
  })
  it('rejects bad magic, truncation and bad UTF-8 with MalformedArtifactError', () => {
    const good = packArtifact('[cell]', new Uint8Array([1, 2, 3]))
    expect(() => unpackArtifact(new Uint8Array(3))).toThrow(MalformedArtifactError)
    expect(() => unpackArtifact(good.subarray(0, 13))).toThrow(MalformedArtifactError)
    const bad = good.slice(); bad[0] = 0
    expect(() => unpackArtifact(bad)).toThrow(MalformedArtifactError)
    const utf = packArtifact('ab', new Uint8Array()); utf[12] = 0xff
    expect(() => unpackArtifact(utf)).toThrow(MalformedArtifactError)
  })
})
