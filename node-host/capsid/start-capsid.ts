// Launching a replica: prepare the per-instance socket directory, spawn the runner in bwrap or
// under Node's permission model, and wait for the runner to connect and prove (with a random
// token passed in its environment) that it is the process we started.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdir, rm, realpath, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { Capsid } from './capsid.ts'
import type { CapsidInit } from './capsid.ts'
import { CapsidStartError } from './errors.ts'
import { resolveSandbox, resolveNodeBinary, runnerPath, bwrapArgs, processArgs, IN_SANDBOX } from './sandbox.ts'
import type { LaunchPaths } from './sandbox.ts'

const log = logger('cell:capsid')

const INSTANCE_ID = /^[A-Za-z0-9._-]{1,64}$/
const MAX_SOCKET_PATH_BYTES = 100
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
const MAX_ENV_VALUE_CHARS = 32 * 1024

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

export async function startCapsid (init: CapsidInit, options: { signal?: AbortSignal } = {}): Promise<Capsid> {
  const { signal } = options
  signal?.throwIfAborted()
  if (!INSTANCE_ID.test(init.instanceId)) throw new CapsidStartError(`instance id ${JSON.stringify(init.instanceId)} must match ${INSTANCE_ID}`)
  const sandbox = resolveSandbox(init.sandbox ?? 'auto')
  const node = resolveNodeBinary()
  const runner = runnerPath()
  await mkdir(init.dataDir, { recursive: true })
  const dataDir = await realpath(init.dataDir)
  let artifact = await realpath(init.artifactPath)
  await mkdir(init.runDir, { recursive: true })
  const instDir = join(await realpath(init.runDir), init.instanceId)
  const socketName = 'capsid.sock'
  const socketPath = join(instDir, socketName)
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) throw new CapsidStartError(`socket path ${socketPath} is too long for a Unix socket; use a shorter runDir`)
  await rm(instDir, { recursive: true, force: true })
  await mkdir(instDir, { recursive: true, mode: 0o700 })

  const server = createServer()
  try {
    // Node decides ESM by extension; the store names artifacts *.mjs, anything else gets copied.
    if (sandbox.mode === 'process' && !artifact.endsWith('.mjs')) {
      const copy = join(instDir, 'cell.mjs')
      await copyFile(artifact, copy)
      artifact = copy
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => { server.off('error', reject); resolve() })
    })
  } catch (err) {
    server.close()
    await rm(instDir, { recursive: true, force: true })
    throw new CapsidStartError(`cannot prepare capsid for ${init.cell}: ${(err as Error).message}`, [], { cause: err })
  }

  if (signal?.aborted === true) {
    server.close()
    await rm(instDir, { recursive: true, force: true })
    signal.throwIfAborted()
  }
  const token = randomBytes(16).toString('hex')
  const nodeFlags = init.maxHeapMb !== undefined ? [`--max-old-space-size=${Math.max(16, Math.floor(init.maxHeapMb))}`] : []
  const paths: LaunchPaths = { node, runner, artifact, dataDir, socketDir: instDir, socketName, nodeFlags }
  const inside = sandbox.mode === 'bwrap'
  const env: Record<string, string> = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    ...safeEnv(init.env),
    CELL_NAME: init.cell,
    CELL_INSTANCE_ID: init.instanceId,
    CELL_DATA_DIR: inside ? IN_SANDBOX.data : dataDir,
    CELL_CAPSID_SOCKET: inside ? `${IN_SANDBOX.run}/${socketName}` : socketPath,
    CELL_CAPSID_ARTIFACT: inside ? IN_SANDBOX.artifact : artifact,
    CELL_CAPSID_TOKEN: token
  }
  const [command, args] = inside
    ? [sandbox.bwrap as string, bwrapArgs(paths)]
    : [node, processArgs(paths)]
  log('starting %s/%s in %s: %s %s', init.cell, init.instanceId, sandbox.mode, command, args.join(' '))
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: inside ? '/' : dataDir })
  const capsid = new Capsid(init, sandbox.mode, child, server, instDir, token)
  const spawnFailed = new Promise<never>((_resolve, reject) => {
    child.once('error', (err) => { reject(new CapsidStartError(`cannot spawn ${command}: ${err.message}`, [], { cause: err })) })
  })
  spawnFailed.catch(() => {})
  await Promise.race([capsid.waitReady(init.startTimeoutMs ?? 10_000, signal), spawnFailed])
  return capsid
}
