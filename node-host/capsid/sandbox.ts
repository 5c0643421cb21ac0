// How a replica process is launched: the argv for bubblewrap or for Node's permission model.
// Pure functions of the paths they are given (plus one readdir of `/`), so they are unit-testable.
import { accessSync, constants, readdirSync, lstatSync, readlinkSync, realpathSync, existsSync } from 'node:fs'
import { delimiter, join, dirname } from 'node:path'
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { SandboxUnavailableError } from './errors.ts'

export type SandboxMode = 'auto' | 'bwrap' | 'process'

/** Fixed paths inside the bwrap sandbox; the cell sees the same layout on every host. */
export const IN_SANDBOX = {
  data: '/cell/data',
  artifact: '/cell/app/cell.mjs',
  runner: '/cell/app/runner.mjs',
  node: '/cell/bin/node',
  run: '/cell/run'
} as const

export const MIN_NODE_MAJOR = 24

/** Absolute real path of a Node ≥ 24 binary: this process's, else the `node` devDependency's. */
export function resolveNodeBinary (): string {
  const major = Number(process.versions.node.split('.')[0])
  if (major >= MIN_NODE_MAJOR) return realpathSync(process.execPath)
  try {
    const pkg = createRequire(import.meta.url).resolve('node/package.json')
    const bin = join(dirname(pkg), 'bin', 'node')
    accessSync(bin, constants.X_OK)
    const version = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim()
    if (Number(version.replace(/^v/, '').split('.')[0]) >= MIN_NODE_MAJOR) return realpathSync(bin)
  } catch {}
  throw new SandboxUnavailableError(`no Node >= ${MIN_NODE_MAJOR} binary found (this process is ${process.version})`)
}

/** Path of the bwrap executable, or undefined when it is not installed. */
export function findBwrap (): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/bin', '/usr/local/bin'])) {
    if (dir === '') continue
    const candidate = join(dir, 'bwrap')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

const probed = new Map<string, string | undefined>()

/**
 * Whether bwrap can actually build a sandbox here (it needs user namespaces when not root).
 * Returns undefined when it works, else the reason. Cached per binary for the process lifetime.
 */
export function probeBwrap (bwrap: string): string | undefined {
  if (probed.has(bwrap)) return probed.get(bwrap)
  let reason: string | undefined
  try {
    execFileSync(bwrap, ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-all', '--cap-drop', 'ALL', '--die-with-parent', '--', '/bin/true'],
      { timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] })
  } catch (err: any) {
    reason = String(err?.stderr ?? err?.message ?? err).trim().slice(0, 500)
  }
  probed.set(bwrap, reason)
  return reason
}

export function resolveSandbox (mode: SandboxMode): { mode: 'bwrap' | 'process', bwrap?: string } {
  if (mode === 'process') return { mode }
  const bwrap = findBwrap()
  const problem = bwrap === undefined ? 'bubblewrap (bwrap) is not installed' : probeBwrap(bwrap)
  if (problem === undefined) return { mode: 'bwrap', bwrap }
  if (mode === 'bwrap') throw new SandboxUnavailableError(`bwrap cannot sandbox here: ${problem}`)
  return { mode: 'process' }
}

export interface LaunchPaths {
  node: string
  runner: string
  artifact: string
  dataDir: string
  /** Directory holding the host's Unix socket (per instance, contains nothing else). */
  socketDir: string
  socketName: string
  /** Extra flags for Node itself (e.g. --max-old-space-size). */
  nodeFlags?: string[]
}

// Top-level entries replaced rather than bound: fresh /proc and /dev, a private /tmp, and an empty
// /run so the replica cannot reach host daemons through their Unix sockets (dbus, docker, ...):
// a network namespace does not stop path-based Unix sockets.
const REPLACED = new Set(['proc', 'dev', 'tmp', 'run', 'cell'])

/**
 * bwrap argv. `--ro-bind / /` cannot be used as such because a read-only root leaves nowhere to
 * create /cell; instead every top-level entry of / is bound read-only onto bwrap's tmpfs root, the
 * /cell mount points are added, and that root is then remounted read-only. The effect is the same:
 * the whole host tree read-only, writable only /cell/data and the private /tmp.
 */
export function bwrapArgs (paths: LaunchPaths, rootEntries = listRoot()): string[] {
  const args: string[] = []
  for (const { name, link } of rootEntries) {
    if (REPLACED.has(name)) continue
    if (link !== undefined) args.push('--symlink', link, `/${name}`)
    else args.push('--ro-bind', `/${name}`, `/${name}`)
  }
  args.push(
    '--dev', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/tmp',
    '--tmpfs', '/run',
    '--remount-ro', '/run',
    '--dir', '/cell',
    '--bind', paths.dataDir, IN_SANDBOX.data,
    '--ro-bind', paths.artifact, IN_SANDBOX.artifact,
    '--ro-bind', paths.runner, IN_SANDBOX.runner,
    '--ro-bind', paths.node, IN_SANDBOX.node,
    '--ro-bind', paths.socketDir, IN_SANDBOX.run,
    '--remount-ro', '/',
    // Every namespace, including the network: the replica sees only its own loopback.
    '--unshare-all',
    '--die-with-parent',
    '--new-session',
    // bwrap run by root keeps all capabilities unless told otherwise; a replica needs none.
    '--cap-drop', 'ALL',
    '--chdir', IN_SANDBOX.data,
    '--',
    IN_SANDBOX.node, ...(paths.nodeFlags ?? []), IN_SANDBOX.runner
  )
  return args
}

export function listRoot (): Array<{ name: string, link?: string }> {
  return readdirSync('/').map(name => {
    const st = lstatSync(`/${name}`)
    return st.isSymbolicLink() ? { name, link: readlinkSync(`/${name}`) } : { name }
  })
}

/**
 * Node permission-model argv for hosts without bubblewrap. It restricts the fs API (reads of the
 * runner, artifact and data dir; writes of the data dir only), child processes, workers, native
 * addons, WASI and the inspector. It does NOT restrict the network: Node 24 has no --allow-net,
 * so a replica in process mode can open TCP/UDP sockets. Nor does it limit memory beyond the
 * heap flag, or hide the environment beyond what the capsid passes.
 */
export function processArgs (paths: LaunchPaths): string[] {
  return [
    '--permission',
    `--allow-fs-read=${paths.runner}`,
    `--allow-fs-read=${paths.artifact}`,
    `--allow-fs-read=${paths.dataDir}`,
    `--allow-fs-write=${paths.dataDir}`,
    ...(paths.nodeFlags ?? []),
    paths.runner
  ]
}

export function runnerPath (): string {
  const path = join(import.meta.dirname, 'runner.mjs')
  if (!existsSync(path)) throw new SandboxUnavailableError(`capsid runner missing at ${path}`)
  return path
}
