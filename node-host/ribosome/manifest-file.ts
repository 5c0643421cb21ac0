// Reading a cell directory's Cell.toml from disk: bounded before it is read, and a named error when
// it is missing. Validation itself is core/manifest's (pure) parser.
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { MAX_MANIFEST_BYTES, ManifestTooLargeError } from '../../core/manifest/index.ts'
import { CellError } from '../../core/errors.ts'

/** The directory has no Cell.toml (or it is not a regular file). */
export class ManifestNotFoundError extends CellError { static override readonly errorName = 'ManifestNotFoundError' }

/** The text of `<dir>/Cell.toml` exactly as written (the artifact packs it verbatim), and its path. */
export async function readManifestSource (dir: string, options: { signal?: AbortSignal } = {}): Promise<{ file: string, source: string }> {
  const file = join(dir, 'Cell.toml')
  let handle
  try {
    handle = await open(file, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ManifestNotFoundError(`no Cell.toml in ${dir}`, { cause: err })
    throw err
  }
  try {
    const st = await handle.stat()
    if (!st.isFile()) throw new ManifestNotFoundError(`${file} is not a regular file`)
    // Refuse before reading: parseManifest would reject it anyway, after holding it all in memory.
    if (st.size > MAX_MANIFEST_BYTES) {
      throw new ManifestTooLargeError(`manifest is ${st.size} bytes, more than ${MAX_MANIFEST_BYTES}`, { file, line: 1, key: '' })
    }
    return { file, source: await handle.readFile({ encoding: 'utf8', signal: options.signal }) }
  } finally {
    await handle.close()
  }
}
