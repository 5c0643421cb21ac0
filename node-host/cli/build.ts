// `cell build`: validate Cell.toml, bundle the cell's `main` and pack it with the Cell.toml text
// (core/manifest/packaged.ts) into one reproducible artifact, and print `<sha256>  <path>` (the
// sha256sum format, so `sha256sum -c` checks it). The packed bytes are exactly what `cell publish`
// signs, so the digest printed here is the one the fleet reports for the release.
import { join } from 'node:path'
import { BuildError, writeArtifact } from '../ribosome/index.ts'
import { packageCell } from '../publisher.ts'
import { parseCommand } from './usage.ts'
import { manifestNotices } from '../../core/manifest/index.ts'

export { ManifestNotFoundError } from '../ribosome/index.ts'

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

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 1 })
  if (typeof parsed === 'number') return parsed
  const dir = parsed.positionals[0] ?? '.'
  let pkg
  try {
    pkg = await packageCell(dir)
  } catch (err) {
    // main.ts prints only the first line; esbuild's full diagnostics are what the author needs.
    if (err instanceof BuildError && err.messages.length > 0) process.stderr.write(err.messages.join('\n') + '\n')
    throw err
  }
  // Named <sha256>.mjs like every ArtifactStore entry, so --out can be a node's artifact store.
  const { path, digest } = await writeArtifact(parsed.values.out ?? join(dir, '.cell', 'artifacts'), pkg.artifact)
  for (const notice of manifestNotices(pkg.manifest)) process.stderr.write(`warning: ${notice}\n`)
  process.stderr.write(`built ${pkg.manifest.name} ${pkg.manifest.version} from ${pkg.entry} (${pkg.codeBytes} bytes of code, ${pkg.artifact.byteLength} packed with Cell.toml)\n`)
  process.stdout.write(`${digest}  ${path}\n`)
  return 0
}
