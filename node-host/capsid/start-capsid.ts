// Launching a replica: prepare the per-instance socket directory, spawn the runner in bwrap or
// under Node's permission model, and wait for the runner to connect and prove (with a random
// token passed in its environment) that it is the process we started.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdir, rm, realpath, copyFile, chown, chmod, lchown, readdir } from 'node:fs/promises'
import { join, basename } from 'node:path'
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { Capsid } from './capsid.ts'
import type { CapsidInit } from './capsid.ts'
import { CapsidStartError } from './errors.ts'
import { resolveSandbox, resolveNodeBinary, runnerPath, bwrapArgs, processArgs, runtimeLibraries, isPrivileged, findExecutable, IN_SANDBOX } from './sandbox.ts'
import type { LaunchPaths } from './sandbox.ts'
import { resolveLimits, prlimitArgs, ReplicaCgroups, JOIN_CGROUPS_SCRIPT } from './limits.ts'
import { allocateReplicaUid, releaseReplicaUid } from './replica-uid.ts'

const log = logger('cell:capsid')

const INSTANCE_ID = /^[A-Za-z0-9._-]{1,64}$/
const MAX_SOCKET_PATH_BYTES = 100
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
const MAX_ENV_VALUE_CHARS = 32 * 1024
/** Entries a volume may hold for its ownership to be handed to a replica uid at start. */
const MAX_CHOWN_ENTRIES = 1_000_000

/**
 * The replica's environment may come from a cell's manifest, i.e. from the cell author. Drop what
 * would act outside the sandbox or widen it: LD_* reaches bwrap/node before any confinement, and
 * NODE_OPTIONS can carry --allow-fs-write and friends.
 */
export function safeEnv (env: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) {
    if (!ENV_KEY.test(key) || typeof value !== 'string' || value.length > MAX_ENV_VALUE_CHARS) continue
    if (key.startsWith('LD_') || (key.startsWith('NODE_') && key !== 'NODE_ENV') || key.startsWith('CELL_CAPSID_')) {
      log('dropping environment variable %s for the replica', key)
      continue
    }
    out[key] = value
  }
  return out
}

/** Give `dir` and everything under it to `uid` (symlinks themselves, never their targets). */
async function chownTree (dir: string, uid: number, budget = { left: MAX_CHOWN_ENTRIES }): Promise<void> {
  if (--budget.left < 0) throw new CapsidStartError(`volume ${dir} holds more than ${MAX_CHOWN_ENTRIES} entries to hand to the replica`)
  await lchown(dir, uid, uid)
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await chownTree(path, uid, budget)
    else {
      if (--budget.left < 0) throw new CapsidStartError(`volume ${dir} holds more than ${MAX_CHOWN_ENTRIES} entries to hand to the replica`)
      await lchown(path, uid, uid)
    }
  }
}

export async function startCapsid (init: CapsidInit, options: { signal?: AbortSignal } = {}): Promise<Capsid> {
  const { signal } = options
  signal?.throwIfAborted()
  if (!INSTANCE_ID.test(init.instanceId)) throw new CapsidStartError(`instance id ${JSON.stringify(init.instanceId)} must match ${INSTANCE_ID}`)
  const sandbox = resolveSandbox(init.sandbox ?? 'auto')
  const inside = sandbox.mode === 'bwrap'
  const node = resolveNodeBinary()
  let runner = runnerPath()
  const limits = resolveLimits(init.limits)
  const libraries = inside ? runtimeLibraries(node) : []
  const prlimit = inside ? findExecutable('prlimit') : undefined
  // Root: the replica gets a host uid of its own and owns its volume, its socket dir, nothing else.
  const uid = inside && isPrivileged() ? allocateReplicaUid() : undefined
  let cgroups: ReplicaCgroups | undefined
  const server = createServer()
  let instDir: string | undefined
  const release = async (): Promise<void> => {
    server.close()
    if (instDir !== undefined) await rm(instDir, { recursive: true, force: true })
    await cgroups?.remove()
    if (uid !== undefined) releaseReplicaUid(uid)
  }
  let artifact: string
  let dataDir: string
  const socketName = 'capsid.sock'
  let socketPath: string
  try {
    await mkdir(init.dataDir, { recursive: true })
    dataDir = await realpath(init.dataDir)
    artifact = await realpath(init.artifactPath)
    await mkdir(init.runDir, { recursive: true })
    const dir = join(await realpath(init.runDir), init.instanceId)
    socketPath = join(dir, socketName)
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) throw new CapsidStartError(`socket path ${socketPath} is too long for a Unix socket; use a shorter runDir`)
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true, mode: 0o700 })
    instDir = dir
    // Node decides ESM by extension; the store names artifacts *.mjs, anything else gets copied.
    // A replica with its own uid reads copies it owns: the originals may sit in a 0700 data dir.
    // The copy keeps the store's name (the digest), so the command line still says what runs.
    if ((sandbox.mode === 'process' && !artifact.endsWith('.mjs')) || uid !== undefined) {
      const name = basename(artifact).replace(/\.mjs$/, '')
      const copy = join(instDir, `${name === 'runner' ? 'cell' : name}.mjs`)
      await copyFile(artifact, copy)
      artifact = copy
    }
    if (uid !== undefined) {
      const copy = join(instDir, 'runner.mjs')
      await copyFile(runner, copy)
      runner = copy
      for (const path of [artifact, runner]) { await chown(path, uid, uid); await chmod(path, 0o444) }
      await chownTree(dataDir, uid)
      await chmod(dataDir, 0o700)
    }
    if (inside) cgroups = await ReplicaCgroups.create(`cell-${init.instanceId}-${randomBytes(4).toString('hex')}`, limits)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => { server.off('error', reject); resolve() })
    })
    if (uid !== undefined) {
      await chown(socketPath, uid, uid)
      await chown(instDir, uid, uid)
    }
  } catch (err) {
    await release()
    if (err instanceof CapsidStartError) throw err
    throw new CapsidStartError(`cannot prepare capsid for ${init.cell}: ${(err as Error).message}`, [], { cause: err })
  }

  if (signal?.aborted === true) {
    await release()
    signal.throwIfAborted()
  }
  const token = randomBytes(16).toString('hex')
  const nodeFlags = init.maxHeapMb !== undefined ? [`--max-old-space-size=${Math.max(16, Math.floor(init.maxHeapMb))}`] : []
  const paths: LaunchPaths = { node, runner, artifact, dataDir, socketDir: instDir, socketName, nodeFlags }
  const env: Record<string, string> = {
    PATH: inside ? '/cell/bin' : '/usr/local/bin:/usr/bin:/bin',
    ...safeEnv(init.env),
    CELL_NAME: init.cell,
    CELL_INSTANCE_ID: init.instanceId,
    CELL_DATA_DIR: inside ? IN_SANDBOX.data : dataDir,
    CELL_CAPSID_SOCKET: inside ? `${IN_SANDBOX.run}/${socketName}` : socketPath,
    CELL_CAPSID_ARTIFACT: inside ? IN_SANDBOX.artifact : artifact,
    CELL_CAPSID_TOKEN: token,
    ...(uid !== undefined ? { CELL_CAPSID_UID: String(uid) } : {})
  }
  // Strict: [sh: join the cgroups] prlimit [rlimits] bwrap [namespaces, binds] node runner.
  let argv: string[] = inside
    ? [sandbox.bwrap as string, ...bwrapArgs(paths, { libraries, tmpBytes: limits.tmpBytes, privileged: uid !== undefined })]
    : [node, ...processArgs(paths)]
  if (inside) {
    argv = [...prlimitArgs(prlimit as string, limits, uid !== undefined), ...argv]
    const procs = cgroups?.procsFiles ?? []
    if (procs.length > 0) argv = ['/bin/sh', '-c', JOIN_CGROUPS_SCRIPT, 'cell-capsid-join', ...procs, '--', ...argv]
  }
  const [command, ...args] = argv
  log('starting %s/%s in %s: %s %s', init.cell, init.instanceId, sandbox.mode, command, args.join(' '))
  // Its own process group: a terminal's Ctrl-C (SIGINT to the node's whole group) must reach only the
  // node, which drains its replicas with a grace period; the replicas hear of it through the drain.
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: inside ? '/' : dataDir, detached: true })
  const capsid = new Capsid(init, sandbox.mode, child, server, instDir, token, {
    limits: inside ? limits : undefined,
    exitReason: async () => await cgroups?.exitReason(),
    release: async () => {
      await cgroups?.remove()
      if (uid !== undefined) releaseReplicaUid(uid)
    }
  })
  const spawnFailed = new Promise<never>((_resolve, reject) => {
    child.once('error', (err) => { reject(new CapsidStartError(`cannot spawn ${command}: ${err.message}`, [], { cause: err })) })
  })
  spawnFailed.catch(() => {})
  await Promise.race([capsid.waitReady(init.startTimeoutMs ?? 10_000, signal), spawnFailed])
  return capsid
}
