import { describe, expect, it } from 'vitest'
import { compareVersions, InvalidVersionError, isCellName, isVersion, parseVersion } from './version.ts'

describe('cell names', () => {
  it.each(['billing', 'a', 'ledger-2', 'x1', 'a'.repeat(63)])('accepts %j', (name) => {
    expect(isCellName(name)).toBe(true)
  })
  it.each(['', 'Billing', '1billing', '-billing', 'billing-', 'bill_ing', 'bill.ing', 'bill ing', 'a'.repeat(64), 'billïng'])('rejects %j', (name) => {
    expect(isCellName(name)).toBe(false)
  })
})

describe('versions', () => {
  it('parses the parts', () => {
    expect(parseVersion('1.4.0')).toEqual({ major: 1, minor: 4, patch: 0, prerelease: [] })
    expect(parseVersion('2.0.0-rc.1')).toEqual({ major: 2, minor: 0, patch: 0, prerelease: ['rc', 1] })
    expect(parseVersion('0.0.0-0a.--')).toEqual({ major: 0, minor: 0, patch: 0, prerelease: ['0a', '--'] })
  })

  it.each([
    '', '1', '1.0', '1.0.0.0', 'v1.0.0', '01.0.0', '1.01.0', '1.0.01', '1.0.0-', '1.0.0-01', '1.0.0-a..b',
    '1.0.0+build', '1.0.0-rc.1+build', '1.0.0 ', '-1.0.0', '1.0.0-ü', '99999999999999999.0.0', '1.0.0-99999999999999999'
  ])('rejects %j', (text) => {
    expect(isVersion(text)).toBe(false)
    expect(() => parseVersion(text)).toThrow(InvalidVersionError)
  })

  // The precedence chain from semver.org §11, plus numeric (not lexical) comparison of parts.
  const ordered = [
    '0.9.9', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11',
    '1.0.0-rc.1', '1.0.0', '1.0.1', '1.2.0', '1.10.0', '2.0.0', '10.0.0'
  ]

  it('orders by semver precedence', () => {
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        expect(Math.sign(compareVersions(ordered[i], ordered[j])), `${ordered[i]} vs ${ordered[j]}`).toBe(Math.sign(i - j))
      }
    }
  })

  it('sorts a shuffled list', () => {
    const shuffled = [...ordered].reverse()
    shuffled.push(shuffled.shift() as string)
    expect(shuffled.sort(compareVersions)).toEqual(ordered)
  })

  it('throws on invalid input', () => {
    expect(() => compareVersions('1.0', '1.0.0')).toThrow(InvalidVersionError)
    expect(() => compareVersions('1.0.0', 'latest')).toThrow(InvalidVersionError)
  })
})
