// Builds dashboard/dist with Vite when it is missing or older than the sources it is made from,
// so `npm start` and `cell up --dashboard` serve the current page without a separate build step.
import { readdir, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { CellError } from '../../core/errors.ts'

/** Vite failed to build the dashboard (or is not installed: it is a dev dependency). */
export class DashboardBuildError extends CellError { static override readonly errorName = 'DashboardBuildError' }

const repo = resolve(import.meta.dirname, '..', '..')
export const DEFAULT_DASHBOARD_DIR = join(repo, 'dashboard', 'dist')
const SOURCES = ['dashboard/src', 'dashboard/index.html', 'dashboard/vite.config.ts', 'browser-host', 'core'].map(p => join(repo, p))
/** Files looked at when deciding whether dist is outdated (the trees are a few hundred files). */
const MAX_SCANNED = 5000

async function newestMtimeMs (paths: string[]): Promise<number> {
  let newest = 0
  let scanned = 0
  const queue = [...paths]
  while (queue.length > 0 && scanned < MAX_SCANNED) {
    const p = queue.pop()!
    const info = await stat(p).catch(() => undefined)
    if (info === undefined) continue
    scanned++
    if (info.isDirectory()) {
      for (const e of await readdir(p)) if (e !== 'node_modules' && !e.endsWith('.test.ts')) queue.push(join(p, e))
    } else if (info.mtimeMs > newest) newest = info.mtimeMs
  }
  return newest
}

const building = new Map<string, Promise<void>>()

/** Builds into `outDir` (default dashboard/dist) when its index.html is missing or outdated, or when `force`. */
export async function ensureDashboardBuilt (options: { outDir?: string, force?: boolean, signal?: AbortSignal } = {}): Promise<string> {
  options.signal?.throwIfAborted()
  const outDir = resolve(options.outDir ?? DEFAULT_DASHBOARD_DIR)
  const built = await stat(join(outDir, 'index.html')).catch(() => undefined)
  if (options.force !== true && built !== undefined && built.mtimeMs >= await newestMtimeMs(SOURCES)) return outDir
  // One build per directory at a time within this process.
  let pending = building.get(outDir)
  if (pending === undefined) {
    pending = buildDashboard(outDir).finally(() => { building.delete(outDir) })
    building.set(outDir, pending)
  }
  await pending
  options.signal?.throwIfAborted()
  return outDir
}

async function buildDashboard (outDir: string): Promise<void> {
  try {
    const { build } = await import('vite')
    await build({ configFile: join(repo, 'dashboard', 'vite.config.ts'), logLevel: 'error', build: { outDir, emptyOutDir: true } })
  } catch (err) {
    throw new DashboardBuildError(`building the dashboard into ${outDir} failed: ${(err as Error).message}`, { cause: err })
  }
}
