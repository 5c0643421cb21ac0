import { CellError } from '../errors.ts'

// Every failure to read a Cell.toml is a ManifestError naming the file, the 1-based line where the
// offending key is written and the full dotted key path, so an author can jump straight to it.
// Callers match on the subclass; the message is for humans and always contains file, line and key.

export interface ManifestErrorInit {
  file: string
  /** 1-based line of the key; for a missing key, the line of its enclosing table (1 if none). */
  line: number
  /** Full dotted key path, e.g. `cell.biology.min_replicas`; '' when no key is involved. */
  key: string
  cause?: unknown
}

export class ManifestError extends CellError {
  static override readonly errorName: string = 'ManifestError'
  readonly file: string
  readonly line: number
  readonly key: string

  constructor (detail: string, init: ManifestErrorInit) {
    const where = `${init.file}:${init.line}`
    super(init.key === '' ? `${where}: ${detail}` : `${where}: ${init.key}: ${detail}`, { cause: init.cause })
    this.file = init.file
    this.line = init.line
    this.key = init.key
  }
}

/** The source is not valid TOML. `column` is 1-based, as reported by smol-toml. */
export class ManifestSyntaxError extends ManifestError {
  static override readonly errorName = 'ManifestSyntaxError'
  readonly column: number

  constructor (detail: string, init: ManifestErrorInit & { column: number }) {
    super(detail, init)
    this.column = init.column
  }
}

/** A key holds a value of the wrong TOML type (e.g. a string where an integer belongs). */
export class ManifestTypeError extends ManifestError { static override readonly errorName = 'ManifestTypeError' }

/** A well-typed value lies outside its allowed range (or min_replicas > max_replicas). */
export class ManifestRangeError extends ManifestError { static override readonly errorName = 'ManifestRangeError' }

/** A key that the schema does not know; `suggestion` is the nearest valid key, if any is close. */
export class ManifestUnknownKeyError extends ManifestError {
  static override readonly errorName = 'ManifestUnknownKeyError'
  readonly suggestion: string | undefined

  constructor (detail: string, init: ManifestErrorInit & { suggestion?: string }) {
    super(detail, init)
    this.suggestion = init.suggestion
  }
}

/** A string value is malformed: duration, size, hex key, cell name, version, path or address. */
export class ManifestValueError extends ManifestError { static override readonly errorName = 'ManifestValueError' }

/** A required key (cell.name, cell.authority.ed25519, cell.storage.claim) is absent. */
export class ManifestMissingKeyError extends ManifestError { static override readonly errorName = 'ManifestMissingKeyError' }

/** The source exceeds MAX_MANIFEST_BYTES, or an array exceeds MAX_ARRAY_LENGTH. */
export class ManifestTooLargeError extends ManifestError { static override readonly errorName = 'ManifestTooLargeError' }
