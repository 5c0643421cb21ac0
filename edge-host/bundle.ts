// Node-side tooling for running the edge locally: bundle the Worker with wrangler itself
// (`wrangler deploy --dry-run --outdir`) into a directory of its own, beside a wrangler.toml that
// serves that bundle unbundled. `wrangler dev` on the sources would watch every file the bundle
// imports and restart the Worker (dropping its libp2p node) whenever anything in core/ is saved.
import { execFile } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

export const projectRoot = resolve(import.meta.dirname, '..')
export const nodeBin = join(projectRoot, 'node_modules', '.bin', 'node')
export const wranglerBin = join(projectRoot, 'node_modules', 'wrangler', 'bin', 'wrangler.js')
export const EDGE_CONFIG = join(projectRoot, 'edge-host', 'wrangler.toml')
/** wrangler's environment: no metrics upload (offline), no colours or prompts. */
export const WRANGLER_ENV = { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1', NO_COLOR: '1' }

/** Bundles the Worker into `outDir` and writes a wrangler.toml beside it; returns that config's path. */
export async function bundleEdge (outDir: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  await mkdir(outDir, { recursive: true })
  await promisify(execFile)(nodeBin, [wranglerBin, 'deploy', '--dry-run', '--outdir', outDir, '-c', EDGE_CONFIG], { cwd: projectRoot, env: WRANGLER_ENV, timeout: 120_000, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
  const source = await readFile(EDGE_CONFIG, 'utf8')
  const config = source.replace(/^main = ".*"$/m, 'main = "worker.js"\nno_bundle = true')
  if (config === source) throw new Error(`${EDGE_CONFIG} has no main = line to point at the bundle`)
  const path = join(outDir, 'wrangler.toml')
  await writeFile(path, config)
  return path
}
