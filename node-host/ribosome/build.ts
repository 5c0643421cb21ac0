// The ribosome's bundler: one cell directory in, one self-contained ESM artifact out, hashed.
// The artifact must be byte-for-byte reproducible so a release digest names exactly one build:
// no absolute paths (esbuild runs with the cell dir as working dir, so its module comments are
// relative), no timestamps, no source maps.
import { createHash } from 'node:crypto'
import { resolve, relative, isAbsolute } from 'node:path'
import * as esbuild from 'esbuild'
import { logger } from '@libp2p/logger'
import { BuildError, ArtifactTooLargeError } from './errors.ts'

const log = logger('cell:ribosome')

export const DEFAULT_MAX_ARTIFACT_BYTES = 16 * 1024 * 1024
/** Diagnostics kept in a BuildError; esbuild can emit thousands for a broken tree. */
const MAX_MESSAGES = 50

export interface BuildOptions {
  signal?: AbortSignal
  /** Entry module relative to `dir` (the manifest's `main`); default `cell.ts`. */
  main?: string
  maxBytes?: number
}

export interface BuildResult {
  artifact: Uint8Array
  /** sha256 of `artifact`, lowercase hex. */
  digest: string
  /** The entry module, relative to the cell dir, with forward slashes. */
  entry: string
}

// Bundled CommonJS dependencies call `require` for Node built-ins; ESM output has none, so
// give the bundle one. Static text, so it does not disturb determinism.
const REQUIRE_BANNER = "import { createRequire as __cellCreateRequire } from 'node:module';\n" +
  'const require = __cellCreateRequire(import.meta.url);'

export function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export async function buildCell (dir: string, options: BuildOptions = {}): Promise<BuildResult> {
  const { signal } = options
  signal?.throwIfAborted()
  const cellDir = resolve(dir)
  const main = options.main ?? 'cell.ts'
  const entryPath = resolve(cellDir, main)
  const entry = relative(cellDir, entryPath).split('\\').join('/')
  if (isAbsolute(main) || entry.startsWith('../')) {
    throw new BuildError(`entry "${main}" is outside the cell directory`, [])
  }
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_ARTIFACT_BYTES

  const ctx = await esbuild.context({
    absWorkingDir: cellDir,
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    write: false,
    outfile: 'cell.mjs',
    sourcemap: false,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'silent',
    banner: { js: REQUIRE_BANNER },
    // Only to read the entry's exports (below); the artifact's bytes are the same with or without it.
    metafile: true
  })
  const onAbort = (): void => { void ctx.cancel() }
  signal?.addEventListener('abort', onAbort, { once: true })
  let result: esbuild.BuildResult
  try {
    result = await ctx.rebuild()
  } catch (err: any) {
    signal?.throwIfAborted()
    const errors: esbuild.Message[] = Array.isArray(err?.errors) ? err.errors : []
    const messages = errors.length > 0
      ? await esbuild.formatMessages(errors.slice(0, MAX_MESSAGES), { kind: 'error', color: false })
      : [String(err?.message ?? err)]
    throw new BuildError(`build of ${entry} failed: ${messages[0]?.split('\n')[0] ?? 'unknown error'}`, messages, { cause: err })
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await ctx.dispose()
  }
  signal?.throwIfAborted()
  const file = result.outputFiles?.find(f => f.path.endsWith('.mjs'))
  if (file == null) throw new BuildError(`build of ${entry} produced no output`, [])
  // A replica loads the entry's default export as the cell: without one, every replica would crash
  // at start on every node, and the release halt after three crashes. Say it here instead.
  const exports = Object.values(result.metafile?.outputs ?? {}).find(o => o.entryPoint !== undefined)?.exports
  if (exports !== undefined && !exports.includes('default')) {
    throw new BuildError(`${entry} has no default export: a cell's entry exports its handlers as \`export default defineCell({ … })\`${exports.length > 0 ? ` (it exports ${exports.slice(0, 5).join(', ')}${exports.length > 5 ? ', …' : ''})` : ''}`, [])
  }
  const artifact = file.contents
  if (artifact.byteLength > maxBytes) throw new ArtifactTooLargeError(artifact.byteLength, maxBytes)
  const digest = sha256Hex(artifact)
  log('built %s (%d bytes) sha256:%s', entry, artifact.byteLength, digest)
  return { artifact, digest, entry }
}
