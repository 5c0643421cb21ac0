// Runs the edge (edge-host/wrangler.toml) under the real `wrangler dev` (workerd) on a free
// loopback port for a test or a benchmark: secrets and vars through an env file in a temp dir,
// Durable Object storage in that dir, readiness by polling /healthz with a deadline, and a stop
// that ends wrangler and its workerd (its own process group) whatever state it is in.
// The Worker is bundled first (edge-host/bundle.ts) into the temp dir and served from there.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { bundleEdge, nodeBin, projectRoot, wranglerBin, WRANGLER_ENV } from '../../edge-host/bundle.ts'

export interface EdgeProc {
  url: string
  child: ChildProcess
  output: () => string
  stop: () => Promise<void>
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => { resolve(port) })
    })
  })
}

/** Bundles the Worker into `<dir>/build`; returns the wrangler.toml that serves it. */
export async function buildEdge (dir: string): Promise<string> {
  return await bundleEdge(join(dir, 'build'))
}

/** Start `wrangler dev` with these vars and secrets (written to `<dir>/edge.env`); resolves once it serves /healthz. */
export async function startEdge (dir: string, vars: Record<string, string>, options: { readyMs?: number, config?: string } = {}): Promise<EdgeProc> {
  await mkdir(dir, { recursive: true })
  const config = options.config ?? await buildEdge(dir)
  const envFile = join(dir, 'edge.env')
  await writeFile(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 })
  const port = await freePort()
  const child = spawn(nodeBin, [wranglerBin, 'dev', '-c', config, '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(await freePort()),
    '--env-file', envFile, '--persist-to', join(dir, 'state'), '--show-interactive-dev-session=false', '--log-level', 'warn'], {
    cwd: projectRoot,
    env: WRANGLER_ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  let out = ''
  const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-64 * 1024) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const killGroup = (signal: NodeJS.Signals): void => { try { process.kill(-child.pid!, signal) } catch {} }
  const stop = async (): Promise<void> => {
    if (child.exitCode == null && child.signalCode == null) {
      killGroup('SIGTERM')
      const timer = setTimeout(() => { killGroup('SIGKILL') }, 5_000)
      await exited
      clearTimeout(timer)
    }
    // wrangler can exit on SIGTERM before its workerd does; nothing of the group may outlive the test.
    killGroup('SIGKILL')
  }
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + (options.readyMs ?? 60_000)
  try {
    for (;;) {
      if (child.exitCode != null) throw new Error(`wrangler dev exited (${child.exitCode}): ${out.slice(-3000)}`)
      const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(r => r.status === 200, () => false)
      if (ok) break
      if (Date.now() > deadline) throw new Error(`wrangler dev did not serve /healthz within ${options.readyMs ?? 60_000} ms: ${out.slice(-3000)}`)
      // Polling interval; the deadline above decides when to give up.
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { url, child, output: () => out, stop }
}

/** Poll `GET <url>/healthz` until `test` holds, or fail at the deadline with the last answer. */
export async function waitHealth<T> (url: string, test: (h: Record<string, unknown>) => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    last = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(async r => await r.json(), (err: unknown) => String(err))
    const v = typeof last === 'object' && last !== null ? test(last as Record<string, unknown>) : undefined
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last /healthz: ${JSON.stringify(last)}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}
