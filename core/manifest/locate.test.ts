import { parse } from 'smol-toml'
import { describe, expect, it } from 'vitest'
import { formatKeyPath, locateKeys } from './locate.ts'
import { syntaxHint, syntaxKey } from './syntax-hint.ts'

const source = [
  '# comment with [fake.header] and key = 1', // 1
  '[ cell . "dotted.name" ]', // 2
  'plain = 1 # trailing [x]', // 3
  '"quoted \\" key" = "value with # hash"', // 4
  "'literal' = 'C:\\path'", // 5
  'a.b . c = true', // 6
  'inline = { x = 1, y = { z = [1, 2] } }', // 7
  'list = [', // 8
  '  # a comment inside the array', // 9
  '  { name = "first" },', // 10
  '  "second", [', // 11
  '    3,', // 12
  '  ],', // 13
  ']', // 14
  'text = """', // 15
  'a "quoted" line', // 16
  'ends with two quotes"""""', // 17
  "raw = '''", // 18
  "x''' ", // 19
  'when = 1979-05-27 07:32:00Z', // 20
  'after = 2', // 21
  '[[jobs]]', // 22
  'id = 1', // 23
  '[[jobs]]', // 24
  'id = 2', // 25
  '[cell]', // 26
  'escaped = "\\u00e9"' // 27
].join('\n')

describe('locateKeys', () => {
  it('is given a valid TOML document', () => {
    expect(() => parse(source)).not.toThrow()
  })

  const locations = locateKeys(source)

  it.each([
    [['cell', 'dotted.name'], 2],
    [['cell', 'dotted.name', 'plain'], 3],
    [['cell', 'dotted.name', 'quoted " key'], 4],
    [['cell', 'dotted.name', 'literal'], 5],
    [['cell', 'dotted.name', 'a'], 6],
    [['cell', 'dotted.name', 'a', 'b', 'c'], 6],
    [['cell', 'dotted.name', 'inline', 'y', 'z', 1], 7],
    [['cell', 'dotted.name', 'list'], 8],
    [['cell', 'dotted.name', 'list', 0, 'name'], 10],
    [['cell', 'dotted.name', 'list', 1], 11],
    [['cell', 'dotted.name', 'list', 2, 0], 12],
    [['cell', 'dotted.name', 'text'], 15],
    [['cell', 'dotted.name', 'raw'], 18],
    [['cell', 'dotted.name', 'when'], 20],
    [['cell', 'dotted.name', 'after'], 21],
    [['jobs', 0, 'id'], 23],
    [['jobs', 1, 'id'], 25],
    // `cell` is first implied on line 2, then defined explicitly on line 26.
    [['cell'], 26],
    [['cell', 'escaped'], 27]
  ] as const)('finds %j on line %d', (path, line) => {
    expect(locations.lineOf(path)).toBe(line)
  })

  it('does not invent keys from comments or strings', () => {
    expect(locations.lineOf(['fake'])).toBeUndefined()
    expect(locations.lineOf(['cell', 'dotted.name', 'key'])).toBeUndefined()
    expect(locations.lineOf(['cell', 'dotted.name', 'x'])).toBeUndefined()
  })

  it('falls back to the nearest located ancestor, then to line 1', () => {
    expect(locations.nearestLine(['cell', 'dotted.name', 'inline', 'nope'])).toBe(7)
    expect(locations.nearestLine(['nowhere', 'at', 'all'])).toBe(1)
  })

  it('counts lines the same with CRLF endings', () => {
    const crlf = locateKeys('[cell]\r\nname = "x"\r\n\r\n[cell.biology]\r\nmin_replicas = 1\r\n')
    expect(crlf.lineOf(['cell', 'biology', 'min_replicas'])).toBe(5)
  })

  it('terminates on garbage', () => {
    for (const text of ['[', '"', "'''", '= = =', '[a.', 'a = [ {', 'a = """', '{}}]]', '\\']) {
      expect(locateKeys(text).nearestLine(['a'])).toBeGreaterThanOrEqual(1)
    }
  })
})

describe('formatKeyPath', () => {
  it('quotes what a bare key cannot hold and indexes arrays', () => {
    expect(formatKeyPath(['cell', 'biology', 'min_replicas'])).toBe('cell.biology.min_replicas')
    expect(formatKeyPath(['cell', 'seeds', 'bootstrap', 2])).toBe('cell.seeds.bootstrap[2]')
    expect(formatKeyPath(['cell', 'odd key', 'a.b'])).toBe('cell."odd key"."a.b"')
  })
})

describe('syntax error helpers', () => {
  it('name the key on the failing line within its table', () => {
    const text = '[cell]\nname = "x"\n[ cell . biology ]\nhealth_grace = 10s\n'
    expect(syntaxKey(text, 4)).toBe('cell.biology.health_grace')
    expect(syntaxKey(text, 3)).toBe('cell.biology')
    expect(syntaxKey('[cell.biology\nx = 1', 1)).toBe('cell.biology')
    expect(syntaxKey('???', 1)).toBe('')
  })

  it('suggest quoting bare durations and sizes only', () => {
    expect(syntaxHint('health_grace = 10s', 1)).toBe('write durations as strings: health_grace = "10s"')
    expect(syntaxHint('snapshot_every = 24h # daily', 1)).toBe('write durations as strings: snapshot_every = "24h"')
    expect(syntaxHint('claim = 10GiB', 1)).toBe('write sizes as strings: claim = "10GiB"')
    expect(syntaxHint('name = billing', 1)).toBeUndefined()
    expect(syntaxHint('x = 1', 1)).toBeUndefined()
  })

  it('says when a one-line string is not closed on its line', () => {
    expect(syntaxHint('max_replicas = "3', 1)).toMatch(/string opened with " is not closed on this line/)
    expect(syntaxHint("main = 'cell.ts", 1)).toMatch(/string opened with ' is not closed/)
    expect(syntaxHint('memo = "say \\"hi\\"', 1)).toMatch(/not closed/)
    expect(syntaxHint('name = "billing"', 1)).toBeUndefined()
    expect(syntaxHint('name = "billing" # "quoted', 1)).toBeUndefined()
    expect(syntaxHint('text = """', 1)).toBeUndefined()
    expect(syntaxHint('memo = "say \\"hi\\""', 1)).toBeUndefined()
    // Closed strings that failed for another reason get no such hint: a literal string has no
    // escapes, and an escaped backslash does not escape the closing quote.
    expect(syntaxHint("x = 'C:\\'", 1)).toBeUndefined()
    expect(syntaxHint('x = "C:\\\\" y', 1)).toBeUndefined()
    expect(syntaxHint('x = "a\\\\\\""', 1)).toBeUndefined()
    expect(syntaxHint('a = 1\r\nmax_replicas = "3\r\n', 2)).toMatch(/string opened with " is not closed/)
  })
})
