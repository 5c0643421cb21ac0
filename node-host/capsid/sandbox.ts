// How a replica process is launched: the argv for bubblewrap or for Node's permission model.
// bwrapArgs and processArgs are pure functions of what they are given, so they are unit-testable.
import { accessSync, constants, realpathSync, existsSync } from 'node:fs'
import { delimiter, join, dirname } from 'node:path'
import { createRequire } from 'node:module'
import { execFileSync } from 'node:child_process'
import { SandboxUnavailableError } from './errors.ts'

/** auto = bwrap, failing (never falling back) when it does not work here; process = the operator's explicit choice. */
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

/** Path of an executable on PATH or in the usual system dirs, or undefined. */
export function findExecutable (name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/bin', '/usr/local/bin'])) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/** Path of the bwrap executable, or undefined when it is not installed. */
export function findBwrap (): string | undefined {
  return findExecutable('bwrap')
}

/**
 * Whether this process is root: then bwrap runs without a user namespace (a namespace would map
 * the replica onto host uid 0, owner of every system file) and the runner drops to a replica uid.
 */
export function isPrivileged (): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

const probed = new Map<string, string | undefined>()

/**
 * Whether bwrap can actually build a strict sandbox here: the namespaces, capability set and
 * size-limited /tmp that bwrapArgs asks for, plus `prlimit` for the rlimits. Returns undefined
 * when it works, else the reason. Cached per binary for the process lifetime.
 */
export function probeBwrap (bwrap: string): string | undefined {
  if (probed.has(bwrap)) return probed.get(bwrap)
  let reason: string | undefined
  if (findExecutable('prlimit') === undefined) {
    reason = 'prlimit (util-linux) is not installed; it sets the replica rlimits'
  } else {
    try {
      execFileSync(bwrap, ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--perms', '01777', '--size', '1048576', '--tmpfs', '/tmp',
        ...namespaceArgs(isPrivileged()), '--die-with-parent', '--', '/bin/true'],
      { timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] })
    } catch (err: any) {
      reason = String(err?.stderr ?? err?.message ?? err).trim().slice(0, 500)
    }
  }
  probed.set(bwrap, reason)
  return reason
}

/** How strong a capsid is; advertised in the node record as a role (see sandboxRole). */
export type SandboxLevel = 'strict' | 'process'

/** `find` locates bwrap (tests pass one that finds nothing). */
export function resolveSandbox (mode: SandboxMode, find: () => string | undefined = findBwrap): { mode: 'bwrap' | 'process', bwrap?: string } {
  if (mode === 'process') return { mode }
  const bwrap = find()
  const problem = bwrap === undefined ? 'bubblewrap (bwrap) is not installed' : probeBwrap(bwrap)
  if (problem === undefined) return { mode: 'bwrap', bwrap }
  // Never fall back to the weaker sandbox on our own: that is the operator's call, made explicitly.
  throw new SandboxUnavailableError(`cannot build a strict (bubblewrap) sandbox here: ${problem}. ` +
    'Install bubblewrap (apt-get install bubblewrap), or pass --sandbox process to run cells under Node\'s permission model, ' +
    'which does not confine the network (cells can reach services on 127.0.0.1) nor memory beyond the heap')
}

/** The sandbox level a node in `mode` runs replicas at; throws SandboxUnavailableError as resolveSandbox does. */
export function sandboxLevel (mode: SandboxMode, find: () => string | undefined = findBwrap): SandboxLevel {
  return resolveSandbox(mode, find).mode === 'bwrap' ? 'strict' : 'process'
}

/** Role token for the node record (roles match /^[a-z][a-z0-9-]*$/). */
export function sandboxRole (level: SandboxLevel): 'sandbox-strict' | 'sandbox-process' {
  return level === 'strict' ? 'sandbox-strict' : 'sandbox-process'
}

/** The sandbox level a node record's roles advertise; 'process' when it advertises none (older nodes). */
export function levelOfRoles (roles: readonly string[]): SandboxLevel {
  return roles.includes('sandbox-strict') ? 'strict' : 'process'
}

/** Whether a node at `node` level may run a cell that requires `required`. */
export function satisfiesSandbox (node: SandboxLevel, required: SandboxLevel): boolean {
  return node === 'strict' || required === 'process'
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

export interface BwrapOptions {
  /** Shared libraries the Node binary loads (runtimeLibraries), bound read-only at their paths. */
  libraries: string[]
  /** Size cap of the private /tmp tmpfs. */
  tmpBytes: number
  /** Root runs bwrap without a user namespace and keeps CAP_SETUID/SETGID for the runner to drop to a replica uid. */
  privileged: boolean
}

/**
 * Namespaces. Unprivileged, every namespace including the user one (bwrap needs it). As root, no
 * user namespace: with one, the replica's uid would map to host uid 0 and own every root-owned file
 * it can see; without one the runner switches to a real, unused host uid, which then also makes
 * RLIMIT_NPROC bite. The network namespace leaves the replica only its own loopback.
 */
function namespaceArgs (privileged: boolean): string[] {
  return privileged
    ? ['--unshare-ipc', '--unshare-pid', '--unshare-net', '--unshare-uts', '--unshare-cgroup-try',
        '--cap-drop', 'ALL', '--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID']
    : ['--unshare-all', '--unshare-user', '--disable-userns', '--cap-drop', 'ALL']
}

/**
 * bwrap argv. The root is an empty tmpfs (made read-only at the end) holding only what the runner
 * needs: the Node binary and its shared libraries, the runner, the artifact, the replica's own
 * volume at /cell/data, the socket dir at /cell/run, fresh /proc and a minimal /dev, and a
 * size-capped private /tmp. Nothing else of the host: no /etc, /home, /root, /var, /run, host
 * /tmp, no node data dir (keys, other volumes, the release store).
 */
export function bwrapArgs (paths: LaunchPaths, options: BwrapOptions): string[] {
  const args: string[] = ['--tmpfs', '/']
  // Directories bwrap would otherwise create with the caller's umask (0700 under umask 077), which
  // the replica's uid could not traverse.
  const dirs = new Set<string>(['/cell', '/cell/app', '/cell/bin'])
  for (const lib of options.libraries) {
    for (let d = dirname(lib); d !== '/' && d !== '.'; d = dirname(d)) dirs.add(d)
  }
  for (const d of [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b))) args.push('--perms', '0755', '--dir', d)
  for (const lib of options.libraries) args.push('--ro-bind', lib, lib)
  args.push(
    '--dev', '/dev',
    '--proc', '/proc',
    // 1777: the replica's uid is not the tmpfs owner.
    '--perms', '01777', '--size', String(options.tmpBytes), '--tmpfs', '/tmp',
    '--bind', paths.dataDir, IN_SANDBOX.data,
    '--ro-bind', paths.artifact, IN_SANDBOX.artifact,
    '--ro-bind', paths.runner, IN_SANDBOX.runner,
    '--ro-bind', paths.node, IN_SANDBOX.node,
    '--ro-bind', paths.socketDir, IN_SANDBOX.run,
    '--remount-ro', '/',
    ...namespaceArgs(options.privileged),
    '--die-with-parent',
    '--new-session',
    // As root with only CAP_SETUID/SETGID bwrap cannot enter the replica-owned 0700 volume; the runner does after dropping root.
    '--chdir', options.privileged ? '/cell' : IN_SANDBOX.data,
    '--',
    IN_SANDBOX.node, ...(paths.nodeFlags ?? []), IN_SANDBOX.runner
  )
  return args
}

const libraries = new Map<string, string[]>()

/**
 * The shared libraries (and the dynamic loader) `node` loads, as `ldd` lists them: the only host
 * files besides the capsid's own the sandbox gets. A statically linked binary needs none.
 */
export function runtimeLibraries (node: string): string[] {
  const cached = libraries.get(node)
  if (cached !== undefined) return cached
  let out: string
  try {
    out = execFileSync('ldd', [node], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err: any) {
    if (/not a dynamic executable/.test(String(err?.stdout ?? '') + String(err?.stderr ?? ''))) out = ''
    else throw new SandboxUnavailableError(`cannot list the libraries of ${node} with ldd: ${String(err?.stderr ?? err?.message ?? err).trim().slice(0, 300)}`, { cause: err })
  }
  const libs = new Set<string>()
  for (const line of out.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line)
    if (m !== null && existsSync(m[1])) libs.add(m[1])
  }
  const list = [...libs]
  libraries.set(node, list)
  return list
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
