// Starts and watches the Deno WebTransport sidecar: a Unix socket in a private directory (0700)
// that the sidecar connects to, the process itself, a restart with backoff when it dies, and a stop
// with the node. The sidecar learns its certificate and limits from the first frame on the socket;
// it reads no file and holds no identity key. If the sidecar's socket closes (it crashed, or sent
// frames that break the protocol) the process is killed and started again on the same UDP port.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '@libp2p/interface'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { NodeBridge, newBridgeCounters, type BridgeCounters, type BridgeLimits, type BridgeSession } from './bridge.ts'
import type { SidecarConfig } from './bridge-frames.ts'
import type { RunDir } from '../run-dir.ts'

export class SidecarUnavailableError extends CellError {
  static override readonly errorName = 'SidecarUnavailableError'
  static override readonly retry: RetryRule = 'never'
}

const SIDECAR_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'sidecar.deno.ts')
const BACKOFF_MS = [500, 1000, 2000, 5000, 10_000, 30_000]
/** A sidecar that stayed up this long has its backoff reset. */
const STABLE_MS = 60_000
const STOP_GRACE_MS = 3000

/**
 * The Deno binary the sidecar runs on: `CELL_DENO` if set (`none` disables the listener), else the
 * one npm installed with the `deno` package (`@deno/<platform>`), else undefined.
 */
export function denoBinary (env: NodeJS.ProcessEnv = process.env): string | undefined {
  const override = env.CELL_DENO
  if (override === 'none') return undefined
  if (override !== undefined && override !== '') return existsSync(override) ? override : undefined
  const require = createRequire(import.meta.url)
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64'
  const names = process.platform === 'linux' ? [`@deno/linux-${arch}-glibc`] : process.platform === 'darwin' ? [`@deno/darwin-${arch}`] : []
  for (const name of names) {
    try {
      const bin = join(dirname(require.resolve(`${name}/package.json`)), 'deno')
      if (existsSync(bin)) return bin
    } catch { /* not installed */ }
  }
  return undefined
}

export interface SidecarInit {
  deno: string
  host: string
  port: number
  limits: BridgeLimits
  /** The certificate to serve, asked again at each (re)start. */
  certificate: () => { cert: string, key: string }
  onSession: (session: BridgeSession) => void
  /** Each time a sidecar (the first or a restarted one) listens. */
  onListening?: (port: number) => void
  log: Logger
  /** How long the first start may take (Deno compiles the script). */
  startTimeoutMs?: number
  /** Opens the directory for the bridge socket and Deno's cache, removed at stop (default: a fresh temporary one). */
  workDir?: () => Promise<RunDir>
}

export class SidecarSupervisor {
  private server: Server | undefined
  private workDir: RunDir | undefined
  private child: ChildProcess | undefined
  private bridge: NodeBridge | undefined
  private stopping = false
  private attempt = 0
  private restartTimer: ReturnType<typeof setTimeout> | undefined
  private port: number
  private listeningWaiters: Array<(port: number) => void> = []
  /** Times the sidecar was started (1 after a clean start; more after crashes). */
  starts = 0
  private lastStderr = ''

  private readonly init: SidecarInit

  /** The bridge socket's and Deno cache's directory (set by start). */
  private get dir (): string { return this.workDir?.path ?? '' }

  constructor (init: SidecarInit) {
    this.init = init
    this.port = init.port
  }

  /**
   * Starts the sidecar; resolves with the UDP port once it listens. If it does not within the start
   * timeout, throws SidecarUnavailableError but keeps trying (restarts with backoff; `onListening`
   * says when one listens) until `stop`.
   */
  async start (options: { signal?: AbortSignal } = {}): Promise<number> {
    this.workDir = this.init.workDir !== undefined ? await this.init.workDir() : await temporaryDir()
    const sock = join(this.dir, 'bridge.sock')
    this.server = createServer((socket) => { this.onConnection(socket) })
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject)
      this.server!.listen(sock, () => { this.server!.off('error', reject); resolve() })
    })
    this.spawn()
    const timeoutMs = this.init.startTimeoutMs ?? 15_000
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      return await new Promise<number>((resolve, reject) => {
        this.listeningWaiters.push(resolve)
        timer = setTimeout(() => { reject(new SidecarUnavailableError(`the WebTransport sidecar did not listen within ${timeoutMs} ms${this.lastStderr !== '' ? `: ${this.lastStderr}` : ''}`)) }, timeoutMs)
        options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
      })
    } finally {
      clearTimeout(timer)
    }
  }

  /** Serve another certificate from now on (rotation); live sessions keep theirs. */
  serveCertificate (cert: string, key: string): void {
    this.bridge?.serveCertificate(cert, key)
  }

  /** Kept across sidecar restarts. */
  readonly counters: BridgeCounters = newBridgeCounters()

  /** The sidecar's process id, while one runs. */
  get pid (): number | undefined { return this.child?.pid }

  async stop (): Promise<void> {
    this.stopping = true
    clearTimeout(this.restartTimer)
    this.bridge?.close()
    const child = this.child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
      child.kill('SIGTERM')
      const timer = setTimeout(() => { child.kill('SIGKILL') }, STOP_GRACE_MS)
      await exited
      clearTimeout(timer)
    }
    this.child = undefined
    await new Promise<void>((resolve) => { if (this.server === undefined) resolve(); else this.server.close(() => { resolve() }) })
    this.server = undefined
    await this.workDir?.remove()
  }

  private spawn (): void {
    if (this.stopping) return
    this.starts++
    const sock = join(this.dir, 'bridge.sock')
    const startedMs = Date.now()
    const child = spawn(this.init.deno, [
      'run', '--quiet', '--no-prompt', '--no-config', '--no-lock', '--no-npm', '--no-remote', '--unstable-net',
      // Net access to its listen address and its bridge socket only (Deno counts a Unix socket as net).
      `--allow-net=${this.init.host.includes(':') ? `[${this.init.host}]` : this.init.host},unix:${sock}`, `--allow-read=${sock}`, `--allow-write=${sock}`,
      SIDECAR_SCRIPT, sock, ...(this.init.log.enabled ? ['debug'] : [])
    ], {
      // Its own process group: a terminal's Ctrl-C (SIGINT to the node's group) reaches the node only,
      // which keeps browsers' sessions through the drain and stops the sidecar last (`stop`). It
      // never outlives the node: it exits when the bridge socket closes, a SIGKILLed node's too.
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DENO_DIR: join(this.dir, 'deno'), NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' }
    })
    this.child = child
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000)
      if (this.init.log.enabled) for (const line of d.toString().split('\n')) if (line !== '') this.init.log('sidecar: %s', line)
    })
    child.once('error', (err) => { this.init.log.error('webtransport sidecar did not start: %s', err.message) })
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = undefined
      this.bridge?.close()
      if (this.stopping) return
      if (Date.now() - startedMs > STABLE_MS) this.attempt = 0
      const delayMs = BACKOFF_MS[Math.min(this.attempt++, BACKOFF_MS.length - 1)]
      this.lastStderr = stderr.trim().split('\n').slice(-3).join(' | ')
      this.init.log.error('webtransport sidecar exited (%s); restarting in %d ms%s', signal ?? `code ${code}`, delayMs, this.lastStderr !== '' ? `: ${this.lastStderr}` : '')
      this.restartTimer = setTimeout(() => { this.spawn() }, delayMs)
      this.restartTimer.unref()
    })
  }

  private onConnection (socket: Socket): void {
    if (this.bridge !== undefined || this.stopping) { socket.destroy(); return }
    const child = this.child
    const bridge = new NodeBridge(socket, this.init.limits, {
      onListening: (port) => {
        this.port = port
        for (const w of this.listeningWaiters.splice(0)) w(port)
        this.init.onListening?.(port)
      },
      onSession: (session) => { this.init.onSession(session) },
      onClose: () => {
        if (this.bridge === bridge) this.bridge = undefined
        // A bridge that broke while its sidecar runs: that sidecar is not trusted any more.
        if (!this.stopping && child !== undefined && child === this.child) child.kill('SIGKILL')
      }
    }, this.init.log, this.counters)
    this.bridge = bridge
    const config: SidecarConfig = { host: this.init.host, port: this.port, ...this.init.certificate(), ...this.init.limits }
    bridge.configure(config)
  }
}

async function temporaryDir (): Promise<RunDir> {
  const path = await mkdtemp(join(tmpdir(), 'cell-wt-'))
  return { path, remove: async () => { await rm(path, { recursive: true, force: true }) } }
}
