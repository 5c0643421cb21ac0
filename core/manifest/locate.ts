// smol-toml returns values but not where their keys were written, and every manifest error must
// name a line. This scanner walks a source that smol-toml has already accepted and records, for
// each key path, the 1-based line where it is defined: table headers, dotted keys, quoted keys,
// inline tables, array elements and multi-line strings are followed; comments are skipped.
// It never throws: on anything unexpected it steps forward, and callers fall back to the nearest
// located ancestor.

/** A key path: table and key names; numbers are array indices. */
export type KeyPath = ReadonlyArray<string | number>

interface Entry {
  line: number
  /** Written out (a header or `key =`), as opposed to implied by a longer dotted key. */
  explicit: boolean
}

export class KeyLocations {
  readonly #lines = new Map<string, Entry>()

  /** Line where `path` is defined, or undefined if the scanner did not see it. */
  lineOf (path: KeyPath): number | undefined {
    return this.#lines.get(encodePath(path))?.line
  }

  /** Line of `path`, else of its nearest located ancestor, else 1. */
  nearestLine (path: KeyPath): number {
    for (let n = path.length; n > 0; n--) {
      const line = this.lineOf(path.slice(0, n))
      if (line !== undefined) return line
    }
    return 1
  }

  /** @internal */
  record (path: KeyPath, line: number): void {
    // Intermediate tables implied by a dotted key or header are located where first implied,
    // but an explicit definition (e.g. a later `[cell]` header) takes over.
    for (let n = 1; n < path.length; n++) {
      const key = encodePath(path.slice(0, n))
      if (!this.#lines.has(key)) this.#lines.set(key, { line, explicit: false })
    }
    const key = encodePath(path)
    const entry = this.#lines.get(key)
    if (entry === undefined || !entry.explicit) this.#lines.set(key, { line, explicit: true })
  }
}

function encodePath (path: KeyPath): string {
  return path.map(s => typeof s === 'number' ? `\u0001${s}` : s).join('\u0000')
}

const BARE_KEY = /^[A-Za-z0-9_-]+$/

/** `cell.biology.min_replicas`, `cell.seeds.bootstrap[2]`, `cell."odd key"`. */
export function formatKeyPath (path: KeyPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += (out === '' ? '' : '.') + (BARE_KEY.test(seg) ? seg : JSON.stringify(seg))
  }
  return out
}

export function locateKeys (source: string): KeyLocations {
  const locations = new KeyLocations()
  new Scanner(source, locations).document()
  return locations
}

const BARE_KEY_CHARS = /[A-Za-z0-9_-]+/y
const ESCAPES: Readonly<Record<string, string>> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', e: '\x1b', '"': '"', '\\': '\\' }

class Scanner {
  readonly src: string
  readonly out: KeyLocations
  pos = 0
  line = 1
  readonly arrayTableCounts = new Map<string, number>()

  constructor (src: string, out: KeyLocations) {
    this.src = src
    this.out = out
  }

  document (): void {
    let prefix: KeyPath = []
    while (true) {
      this.skipBlank()
      if (this.pos >= this.src.length) return
      const start = this.pos
      if (this.src[this.pos] === '[') {
        const arrayTable = this.src[this.pos + 1] === '['
        this.pos += arrayTable ? 2 : 1
        const line = this.line
        const segs = this.key()
        while (this.pos < this.src.length && (this.src[this.pos] === ']' || this.isInlineSpace())) this.pos++
        if (arrayTable) {
          const encoded = encodePath(segs)
          const index = this.arrayTableCounts.get(encoded) ?? 0
          this.arrayTableCounts.set(encoded, index + 1)
          this.out.record(segs, line)
          prefix = [...segs, index]
        } else {
          prefix = segs
        }
        this.out.record(prefix, line)
      } else {
        this.keyValue(prefix)
      }
      if (this.pos === start) this.pos++
    }
  }

  keyValue (prefix: KeyPath): void {
    const line = this.line
    const path = [...prefix, ...this.key()]
    this.out.record(path, line)
    this.skipInlineSpace()
    if (this.src[this.pos] === '=') this.pos++
    this.skipInlineSpace()
    this.value(path)
  }

  key (): string[] {
    const segs: string[] = []
    while (this.pos < this.src.length) {
      this.skipInlineSpace()
      const c = this.src[this.pos]
      if (c === '"') segs.push(this.basicString())
      else if (c === "'") segs.push(this.literalString())
      else {
        BARE_KEY_CHARS.lastIndex = this.pos
        const match = BARE_KEY_CHARS.exec(this.src)
        if (match === null) break
        segs.push(match[0])
        this.pos = BARE_KEY_CHARS.lastIndex
      }
      this.skipInlineSpace()
      if (this.src[this.pos] !== '.') break
      this.pos++
    }
    return segs
  }

  value (path: KeyPath): void {
    const src = this.src
    if (src.startsWith('"""', this.pos)) this.multiLineString('"')
    else if (src.startsWith("'''", this.pos)) this.multiLineString("'")
    else if (src[this.pos] === '"') this.basicString()
    else if (src[this.pos] === "'") this.literalString()
    else if (src[this.pos] === '[') this.array(path)
    else if (src[this.pos] === '{') this.inlineTable(path)
    else {
      // Numbers, booleans, dates (which may contain a space): up to a delimiter.
      while (this.pos < src.length && !',]}\n#'.includes(src[this.pos])) this.pos++
    }
  }

  array (path: KeyPath): void {
    this.pos++
    for (let index = 0; ; index++) {
      this.skipBlank()
      if (this.pos >= this.src.length) return
      if (this.src[this.pos] === ']') { this.pos++; return }
      const start = this.pos
      const element = [...path, index]
      this.out.record(element, this.line)
      this.value(element)
      this.skipBlank()
      if (this.src[this.pos] === ',') this.pos++
      else if (this.src[this.pos] === ']') { this.pos++; return }
      else if (this.pos === start) this.pos++
    }
  }

  inlineTable (path: KeyPath): void {
    this.pos++
    while (true) {
      this.skipBlank()
      if (this.pos >= this.src.length) return
      if (this.src[this.pos] === '}') { this.pos++; return }
      const start = this.pos
      this.keyValue(path)
      this.skipBlank()
      if (this.src[this.pos] === ',') this.pos++
      else if (this.src[this.pos] === '}') { this.pos++; return }
      else if (this.pos === start) this.pos++
    }
  }

  basicString (): string {
    let out = ''
    this.pos++
    while (this.pos < this.src.length) {
      const c = this.src[this.pos]
      if (c === '"') { this.pos++; break }
      if (c === '\n') break
      if (c === '\\') {
        const e = this.src[this.pos + 1]
        if (e === 'u' || e === 'U' || e === 'x') {
          const width = e === 'u' ? 4 : e === 'U' ? 8 : 2
          const code = Number.parseInt(this.src.slice(this.pos + 2, this.pos + 2 + width), 16)
          out += Number.isInteger(code) && code <= 0x10ffff ? String.fromCodePoint(code) : ''
          this.pos += 2 + width
        } else {
          out += ESCAPES[e] ?? ''
          this.pos += 2
        }
        continue
      }
      out += c
      this.pos++
    }
    return out
  }

  literalString (): string {
    const end = this.src.indexOf("'", this.pos + 1)
    const newline = this.src.indexOf('\n', this.pos + 1)
    const stop = end === -1 || (newline !== -1 && newline < end) ? (newline === -1 ? this.src.length : newline) : end
    const text = this.src.slice(this.pos + 1, stop)
    this.pos = stop === end ? end + 1 : stop
    return text
  }

  multiLineString (quote: '"' | "'"): void {
    const delimiter = quote.repeat(3)
    this.pos += 3
    while (this.pos < this.src.length) {
      const c = this.src[this.pos]
      if (c === '\n') this.line++
      if (c === '\\' && quote === '"') {
        this.pos++
        if (this.src[this.pos] === '\n') this.line++
        this.pos++
        continue
      }
      if (this.src.startsWith(delimiter, this.pos)) {
        // Up to two quotes may directly precede the closing delimiter and belong to the content.
        let run = 0
        while (this.src[this.pos + run] === quote && run < 5) run++
        this.pos += run
        return
      }
      this.pos++
    }
  }

  isInlineSpace (): boolean {
    const c = this.src[this.pos]
    return c === ' ' || c === '\t'
  }

  skipInlineSpace (): void {
    while (this.pos < this.src.length && this.isInlineSpace()) this.pos++
  }

  /** Spaces, newlines and comments. */
  skipBlank (): void {
    while (this.pos < this.src.length) {
      const c = this.src[this.pos]
      if (c === '\n') { this.line++; this.pos++ } else if (c === ' ' || c === '\t' || c === '\r') this.pos++
      else if (c === '#') {
        while (this.pos < this.src.length && this.src[this.pos] !== '\n') this.pos++
      } else return
    }
  }
}
