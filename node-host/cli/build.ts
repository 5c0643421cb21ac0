// `cell build`: validate Cell.toml, bundle the cell's `main` and pack it with the Cell.toml text
// (core/manifest/packaged.ts) into one reproducible artifact, and print `<sha256>  <path>` (the
// sha256sum format, so `sha256sum -c` checks it). The packed bytes are exactly what `cell publish`
// signs, so the digest printed here is the one the fleet reports for the release.
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { MAX_MANIFEST_BYTES, ManifestTooLargeError, parseManifest } from '../../core/manifest/index.ts'
import type { Manifest } from '../../core/manifest/index.ts'
import { packArtifact } from '../../core/manifest/packaged.ts'
import { CellError } from '../../core/errors.ts'
import { BuildError, buildCell, writeArtifact } from '../ribosome/index.ts'
import { parseCommand } from './usage.ts'

/** The directory has no Cell.toml (or it is not a regular file). */
export class ManifestNotFoundError extends CellError {}

const HELP = `usage: cell build [DIR] [--out DIR]

Validates DIR/Cell.toml (default DIR is .), bundles its main module, packs it with the Cell.toml
into one artifact and prints "<sha256>  <path>": the digest \`cell publish\` signs for these
sources. The cell's name and version go to stderr.

options:
  --out DIR    where to write the artifact, named <sha256>.mjs (default DIR/.cell/artifacts)
  -h, --help   show this help`

const OPTIONS = {
  out: { type: 'string' }
} as const

/**
 * Reads and validates `<dir>/Cell.toml`; errors name the file as the user wrote the path. Returns
 * the source text too, because the artifact packs the text exactly as written.
 */
export async function readManifest (dir: string, options: { signal?: AbortSignal } = {}): Promise<{ manifest: Manifest, source: string }> {
  const file = join(dir, 'Cell.toml')
  let handle
  try {
    handle = await open(file, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ManifestNotFoundError(`no Cell.toml in ${dir}`, { cause: err })
    throw err
  }
  let source: string
  try {
    const st = await handle.stat()
    if (!st.isFile()) throw new ManifestNotFoundError(`${file} is not a regular file`)
    // Refuse before reading: parseManifest would reject it anyway, after holding it all in memory.
    if (st.size > MAX_MANIFEST_BYTES) {
      throw new ManifestTooLargeError(`manifest is ${st.size} bytes, more than ${MAX_MANIFEST_BYTES}`, { file, line: 1, key: '' })
    }
    source = await handle.readFile({ encoding: 'utf8', signal: options.signal })
  } finally {
    await handle.close()
  }
  return { manifest: parseManifest(source, { file }), source }
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 1 })
  if (typeof parsed === 'number') return parsed
  const dir = parsed.positionals[0] ?? '.'
  const { manifest, source } = await readManifest(dir)
  let built
  try {
    built = await buildCell(dir, { main: manifest.main })
  } catch (err) {
    // main.ts prints only the first line; esbuild's full diagnostics are what the author needs.
    if (err instanceof BuildError && err.messages.length > 0) process.stderr.write(err.messages.join('\n') + '\n')
    throw err
  }
  const packed = packArtifact(source, built.artifact)
  // Named <sha256>.mjs like every ArtifactStore entry, so --out can be a node's artifact store.
  const { path, digest } = await writeArtifact(parsed.values.out ?? join(dir, '.cell', 'artifacts'), packed)
  process.stderr.write(`built ${manifest.name} ${manifest.version} from ${built.entry} (${built.artifact.byteLength} bytes of code, ${packed.byteLength} packed with Cell.toml)\n`)
  process.stdout.write(`${digest}  ${path}\n`)
  return 0
}
