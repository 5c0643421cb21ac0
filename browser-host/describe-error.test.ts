import { describe, it, expect } from 'vitest'
import { describeError, errorName } from './describe-error.ts'
import { backoffMs } from '../core/mesh/backoff.ts'
import { NoGrantError, UnknownAuthorityError } from '../core/identity/index.ts'
import { RemoteError } from '../core/synapse/errors.ts'

describe('describeError', () => {
  it('gives words naming the class, and the remote name for unknown errors', () => {
    expect(describeError(new NoGrantError('x'))).toMatch(/grant.*\(NoGrantError\)$/)
    expect(describeError(new UnknownAuthorityError('x'))).toMatch(/does not trust.*\(UnknownAuthorityError\)$/)
    expect(errorName(new RemoteError('MysteryError', 'boom'))).toBe('MysteryError')
    expect(describeError(new RemoteError('MysteryError', 'boom'))).toBe('The call failed: boom (MysteryError)')
  })
})

describe('backoffMs', () => {
  it('grows with the attempt, is capped, and stays within [min, ceiling]', () => {
    const hi = { next: () => 0.999999, bytes: (n: number) => new Uint8Array(n) }
    const lo = { next: () => 0, bytes: (n: number) => new Uint8Array(n) }
    const limits = { minMs: 100, maxMs: 1000 }
    expect(backoffMs(1, limits, hi)).toBe(100)
    expect(backoffMs(3, limits, hi)).toBe(400)
    expect(backoffMs(20, limits, hi)).toBe(1000)
    expect(backoffMs(20, limits, lo)).toBe(100)
  })
})
