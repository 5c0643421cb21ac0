// Failures of the on-disk key files. Distinct classes so the CLI can say exactly what to fix.
import { CellError } from '../../core/errors.ts'

/** The key file already exists and `force` was not given; an authority key is never silently replaced. */
export class KeyFileExistsError extends CellError { static override readonly errorName = 'KeyFileExistsError' }
/** The key file is readable or writable by group or others (must be 0600 or stricter). */
export class KeyFilePermissionError extends CellError { static override readonly errorName = 'KeyFilePermissionError' }
/** The key file is not a regular file, is too large, or does not hold a key of the expected kind. */
export class MalformedKeyFileError extends CellError { static override readonly errorName = 'MalformedKeyFileError' }
/** No key file at the path. */
export class KeyFileNotFoundError extends CellError { static override readonly errorName = 'KeyFileNotFoundError' }
