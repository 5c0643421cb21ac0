// Helpers for TOML syntax errors: smol-toml reports a line and column but not the key, and the
// seed's own examples write durations bare (`health_grace = 10s`), which is not TOML. These look
// at the offending line only; the source failed to parse, so they cannot rely on structure.

const HEADER = /^\s*\[\[?\s*([^\]#]*?)\s*\]\]?\s*(?:#.*)?$/
const KEY = /^\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)\s*=/
const BROKEN_HEADER = /^\s*\[\[?\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)/
const BARE_UNIT_VALUE = /^\s*([A-Za-z0-9_-]+)\s*=\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*(?:#.*)?$/
const DURATION_UNITS = new Set(['ms', 's', 'm', 'h', 'd'])

function normaliseKey (raw: string): string {
  return raw.split(/\s*\.\s*(?=(?:[^"']|"[^"]*"|'[^']*')*$)/).map(s => s.trim()).join('.')
}

/** Best guess of the dotted key written on `line` (1-based), or of its table; '' if none. */
export function syntaxKey (source: string, line: number): string {
  const lines = source.split('\n')
  let table = ''
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) {
    const header = HEADER.exec(lines[i])
    if (header !== null) table = normaliseKey(header[1])
  }
  const text = lines[line - 1] ?? ''
  const header = HEADER.exec(text)
  if (header !== null) return normaliseKey(header[1])
  const broken = BROKEN_HEADER.exec(text)
  if (broken !== null) return normaliseKey(broken[1])
  const key = KEY.exec(text)
  if (key === null) return table
  const written = normaliseKey(key[1])
  return table === '' ? written : `${table}.${written}`
}

/** A one-line value opened after `=` and not closed on its line: `name = "billing` (basic: `\` escapes) or `name = 'billing` (literal: no escapes). */
const OPEN_BASIC_STRING = /^\s*[^=#"']+=\s*"(?!"")(?:\\.|[^"\\])*$/
const OPEN_LITERAL_STRING = /^\s*[^=#"']+=\s*'(?!'')[^']*$/

/**
 * A fix to suggest for the failing `line`: a bare duration or size (`health_grace = 10s`), or a
 * string that is not closed on its line (`max_replicas = "3`), which smol-toml reports as a
 * control character (the newline) in the string.
 */
export function syntaxHint (source: string, line: number): string | undefined {
  const text = source.split('\n')[line - 1] ?? ''
  const line1 = text.replace(/\r$/, '')
  const quote = OPEN_BASIC_STRING.test(line1) ? '"' : OPEN_LITERAL_STRING.test(line1) ? "'" : undefined
  if (quote !== undefined) return `the string opened with ${quote} is not closed on this line (a one-line string ends with the quote it began with; use ${quote.repeat(3)} for several lines)`
  const match = BARE_UNIT_VALUE.exec(text)
  if (match === null) return undefined
  const [, key, amount, unit] = match
  const kind = DURATION_UNITS.has(unit) ? 'durations' : /^[kKMGTP]i?B$|^B$/.test(unit) ? 'sizes' : 'values with units'
  return `write ${kind} as strings: ${key} = "${amount}${unit}"`
}
