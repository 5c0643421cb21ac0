import { describe, expect, it } from 'vitest'
import { InvalidDurationError, InvalidSizeError, parseDuration, parseSize } from './units.ts'

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1d12h', 129_600_000],
    ['2m500ms', 120_500],
    ['1d1h1m1s1ms', 90_061_001],
    ['0010s', 10_000]
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each([
    '', '10', '10 s', ' 10s', '10s ', '-5s', '+5s', '1.5s', '1.5.2s', '10S', '10Sec', '10sec', '10x', 's',
    '1m1h', '1h1h', '1s1d', '10s5', 'ten seconds', '9007199254740992ms', '104249991375d', '0s', '0ms', '0h0m'
  ])('rejects %j', (text) => {
    expect(() => parseDuration(text)).toThrow(InvalidDurationError)
  })

  it('accepts zero only when asked', () => {
    expect(parseDuration('0s', { allowZero: true })).toBe(0)
  })

  it('accepts the largest safe value and rejects one more', () => {
    expect(parseDuration(`${Number.MAX_SAFE_INTEGER}ms`)).toBe(Number.MAX_SAFE_INTEGER)
    expect(() => parseDuration(`${Number.MAX_SAFE_INTEGER}s`)).toThrow(InvalidDurationError)
  })

  it('rejects non-strings and very long input', () => {
    expect(() => parseDuration(10 as unknown as string)).toThrow(InvalidDurationError)
    expect(() => parseDuration('1s'.repeat(40))).toThrow(InvalidDurationError)
  })
})

describe('parseSize', () => {
  it.each([
    ['1B', 1],
    ['4096B', 4096],
    ['1KiB', 1024],
    ['512MiB', 536_870_912],
    ['10GiB', 10_737_418_240],
    ['1TiB', 1_099_511_627_776],
    ['2PiB', 2 * 1024 ** 5],
    ['1kB', 1000],
    ['1KB', 1000],
    ['10MB', 10_000_000],
    ['10GB', 10_000_000_000],
    ['3TB', 3_000_000_000_000],
    ['1PB', 1e15]
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes)
  })

  it.each([
    '', '10', '10 GiB', '-5GiB', '1.5GiB', '1.5.2GiB', '10gib', '10GIB', '10gb', '10Gb', '10kib', '10b', '10 B',
    'GiB', '10GiBs', '10iB', '10EiB', '1GiB512MiB', '0B', '0GiB', '8PiB', '9007199254740992B'
  ])('rejects %j', (text) => {
    expect(() => parseSize(text)).toThrow(InvalidSizeError)
  })

  it('accepts the largest safe value and rejects one more', () => {
    expect(parseSize(`${Number.MAX_SAFE_INTEGER}B`)).toBe(Number.MAX_SAFE_INTEGER)
    expect(parseSize('7PiB')).toBe(7 * 1024 ** 5)
    expect(() => parseSize(`${Number.MAX_SAFE_INTEGER + 1}B`)).toThrow(InvalidSizeError)
  })

  it('accepts zero only when asked', () => {
    expect(parseSize('0B', { allowZero: true })).toBe(0)
  })
})
