// HELLO's payload (core/synapse/handshake.ts): the optional release field a caller names, what an
// older HELLO without it decodes to, and hostile release fields refused by name.
import { describe, expect, it } from 'vitest'
import { encodeFields, MalformedFrameError } from '../wire/index.ts'
import { decodeHello, encodeHello, SYNAPSE_VERSION } from './handshake.ts'

const credentials = new Uint8Array([1, 2, 3])

describe('HELLO', () => {
  it('carries the release the caller chose, and none when it named none', () => {
    const digest = 'c0'.repeat(32)
    expect(decodeHello(encodeHello({ version: SYNAPSE_VERSION, cell: 'billing', credentials, maxFrameBytes: 1024, release: digest })))
      .toEqual({ version: SYNAPSE_VERSION, cell: 'billing', credentials, maxFrameBytes: 1024, release: digest })
    const plain = decodeHello(encodeHello({ version: SYNAPSE_VERSION, cell: 'billing', credentials, maxFrameBytes: 1024 }))
    expect(plain).toEqual({ version: SYNAPSE_VERSION, cell: 'billing', credentials, maxFrameBytes: 1024 })
    expect('release' in plain).toBe(false)
  })

  it('decodes an older HELLO (no frame limit, no release) and an empty release as none', () => {
    expect(decodeHello(encodeFields([SYNAPSE_VERSION, 'billing', credentials]))).toEqual({ version: SYNAPSE_VERSION, cell: 'billing', credentials, maxFrameBytes: 0 })
    expect('release' in decodeHello(encodeFields([SYNAPSE_VERSION, 'billing', credentials, 0, '']))).toBe(false)
  })

  it('refuses a release field over 128 bytes, one that overruns the payload, and one that is not UTF-8', () => {
    expect(() => decodeHello(encodeFields([SYNAPSE_VERSION, 'billing', credentials, 0, 'a'.repeat(129)]))).toThrow(MalformedFrameError)
    const overrun = encodeFields([SYNAPSE_VERSION, 'billing', credentials, 0, 'a'.repeat(64)])
    expect(() => decodeHello(overrun.subarray(0, overrun.length - 1))).toThrow(MalformedFrameError)
    expect(() => decodeHello(encodeFields([SYNAPSE_VERSION, 'billing', credentials, 0, new Uint8Array([0xff, 0xfe])]))).toThrow(/not valid UTF-8/)
  })
})
