import { CellError } from '../../core/errors.ts'

/** esbuild rejected the cell's sources; `messages` holds esbuild's formatted diagnostics. */
export class BuildError extends CellError {
  static override readonly errorName = 'BuildError'
  readonly messages: string[]
  constructor (message: string, messages: string[], options?: { cause?: unknown }) {
    super(message, options)
    this.messages = messages
  }
}

/** The bundled artifact is larger than the allowed maximum. */
export class ArtifactTooLargeError extends CellError {
  static override readonly errorName = 'ArtifactTooLargeError'
  readonly sizeBytes: number
  readonly maxBytes: number
  constructor (sizeBytes: number, maxBytes: number) {
    super(`artifact is ${sizeBytes} bytes, the limit is ${maxBytes}`)
    this.sizeBytes = sizeBytes
    this.maxBytes = maxBytes
  }
}

/** Bytes read from the artifact store do not hash to the digest they were stored under. */
export class CorruptArtifactError extends CellError {
  static override readonly errorName = 'CorruptArtifactError'
  readonly expected: string
  readonly actual: string
  constructor (expected: string, actual: string) {
    super(`artifact digest mismatch: expected ${expected}, got ${actual}`)
    this.expected = expected
    this.actual = actual
  }
}

/** A digest string is not 64 lowercase hex characters (an artifact store path, `cell rollback --digest`). */
export class InvalidDigestError extends CellError { static override readonly errorName = 'InvalidDigestError' }
