// Running zfs/zpool: execFile-style (no shell), bounded output, AbortSignal honoured, and the
// failure turned into a named error (StorageCommandError with zfs's message; ZfsUnavailableError
// when the binary is missing or the zfs-fuse daemon does not answer; StorageTimeoutError when the
// command is still running at its deadline, 2 min unless told: a stuck daemon or pool must not hang
// the node's storage work for ever).
import { spawn } from 'node:child_process'
import { logger } from '@libp2p/logger'
import type { ChildProcess } from 'node:child_process'
import { StorageCommandError, StorageTimeoutError, ZfsUnavailableError } from './errors.ts'

const log = logger('cell:storage:zfs')
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024
const MAX_STDERR_BYTES = 16 * 1024

export interface RunOptions {
  signal?: AbortSignal
  /** Bytes fed to stdin (most commands take none). */
  input?: Uint8Array
  /** Kill the command and fail with StorageTimeoutError when it runs longer (default 120 s). */
  timeoutMs?: number
}

export const COMMAND_TIMEOUT_MS = 120_000

/** True when zfs's message says the daemon is not there (zfs-fuse answers over a unix socket). */
export function daemonDown (stderr: string): boolean {
  return /connect|daemon|zfs-fuse|socket/i.test(stderr) && !/dataset|pool '/i.test(stderr)
}

function describe (bin: string, args: readonly string[]): string {
  return `${bin} ${args.join(' ')}`.slice(0, 300)
}

/** Collect a child's stderr, bounded. */
export function collectStderr (child: ChildProcess): () => string {
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (s: string) => { if (stderr.length < MAX_STDERR_BYTES) stderr += s.slice(0, MAX_STDERR_BYTES - stderr.length) })
  return () => stderr
}

/** Wait for a spawned child to exit; reject with a named error on a non-zero exit or spawn failure. */
export function exited (child: ChildProcess, bin: string, args: readonly string[], stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new ZfsUnavailableError(`${bin} is not installed (apt-get install zfs-fuse)`, { cause: err }))
      else if (err.name === 'AbortError') reject(err)
      else reject(new StorageCommandError(describe(bin, args), err.message, { cause: err }))
    })
    child.once('close', (code, sig) => {
      if (code === 0) { resolve(); return }
      const text = stderr()
      if (daemonDown(text)) reject(new ZfsUnavailableError(`zfs-fuse does not answer (${text.trim().slice(0, 200)}); start it with \`zfs-fuse\``))
      else reject(new StorageCommandError(describe(bin, args), text || (sig !== null ? `killed by ${sig}` : `exit ${String(code)}`)))
    })
  })
}

/** Run `bin args` and return its stdout (at most 4 MiB). */
export async function run (bin: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  options.signal?.throwIfAborted()
  const child = spawn(bin, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], signal: options.signal })
  const stderr = collectStderr(child)
  let stdout = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (s: string) => {
    stdout += s
    if (stdout.length > MAX_OUTPUT_BYTES) child.kill('SIGKILL')
  })
  if (options.input !== undefined) child.stdin?.end(options.input)
  const timeoutMs = options.timeoutMs ?? COMMAND_TIMEOUT_MS
  let timer: ReturnType<typeof setTimeout> | undefined
  // Fails at the deadline whether or not the killed child exits: one waiting on a hung FUSE request
  // may not die until the daemon answers.
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new StorageTimeoutError(describe(bin, args), timeoutMs))
    }, timeoutMs)
  })
  const done = exited(child, bin, args, stderr)
  done.catch(() => {})
  try {
    await Promise.race([done, deadline])
  } finally {
    clearTimeout(timer)
  }
  if (stdout.length > MAX_OUTPUT_BYTES) throw new StorageCommandError(describe(bin, args), `more than ${MAX_OUTPUT_BYTES} bytes of output`)
  return stdout
}

/**
 * zfs-fuse refuses to rename or destroy a dataset for a moment after it was used ("dataset is
 * busy") while FUSE releases it. Retry such a call a bounded number of times with a growing
 * delay: a retry of an external system's transient refusal, not a wait for an event we could see.
 */
export async function retryBusy<T> (fn: () => Promise<T>, signal?: AbortSignal, attempts = 12): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn()
    } catch (err) {
      if (!(err instanceof StorageCommandError) || !/busy/i.test(err.stderr) || i >= attempts - 1) throw err
      log('%s: busy, attempt %d of %d', err.command, i + 1, attempts)
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, Math.min(50 * 2 ** i, 1000))
        signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason) }, { once: true })
      })
    }
  }
}
