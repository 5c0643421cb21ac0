// `npm run edge`: the edge routing node under `wrangler dev` (workerd, offline) in front of the local
// fleet `npm start` runs. The demo writes fleet.json in its temp dir (its nodes' WebSocket addresses,
// trusted authority, authority key file); this finds the newest one, keeps an edge key in its own
// state dir (so the edge's peer id survives restarts), signs the edge a caller grant with the demo's
// authority key (as `cell grant caller <edge peer id>` would), bundles the Worker, starts wrangler
// dev, waits until the edge joined the fleet and prints its URL and a curl line. Ctrl-C stops it.
import { spawn } from 'node:child_process'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { issueGrant, encodeGrantToken } from '../core/identity/index.ts'
import { readAuthorityKey } from '../node-host/keys/index.ts'
import { bundleEdge, nodeBin, projectRoot, wranglerBin, WRANGLER_ENV } from './bundle.ts'
import { edgePeerId, newEdgeKey } from './keys.ts'

const HELP = `usage: npm run edge [-- --fleet FILE] [--port 8787] [--state DIR]

Runs the edge routing node (edge-host/) under wrangler dev against the fleet of \`npm start\`.
  --fleet FILE  the demo's fleet.json (default: the newest ${join(tmpdir(), 'cell-demo-*', 'fleet.json')})
  --port PORT   where the edge listens on 127.0.0.1 (default 8787, or CELL_EDGE_PORT)
  --state DIR   the edge's key, Durable Object storage and bundle (default ${join(tmpdir(), 'cell-edge-dev')})`

/** The edge's caller grants from this script are short: the demo's authority is a throwaway. */
const GRANT_MS = 12 * 3_600_000
const JOIN_MS = 60_000

interface DemoFleet { bootstrap: string[], trust: string[], authorityKey: string }

function fail (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

async function newestDemoFleet (): Promise<string | undefined> {
  let best: { path: string, mtimeMs: number } | undefined
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith('cell-demo-')) continue
    const path = join(tmpdir(), name, 'fleet.json')
    const s = await stat(path).catch(() => undefined)
    if (s !== undefined && (best === undefined || s.mtimeMs > best.mtimeMs)) best = { path, mtimeMs: s.mtimeMs }
  }
  return best?.path
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { fleet: { type: 'string' }, port: { type: 'string' }, state: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
  if (values.help === true) { process.stdout.write(HELP + '\n'); return }
  const fleetPath = values.fleet ?? await newestDemoFleet()
  if (fleetPath === undefined) fail(`no running demo fleet found (no ${join(tmpdir(), 'cell-demo-*', 'fleet.json')}): start one with \`npm start\` in another shell first`)
  const fleet = JSON.parse(await readFile(fleetPath, 'utf8')) as DemoFleet
  if (!Array.isArray(fleet.bootstrap) || fleet.bootstrap.length === 0) fail(`${fleetPath} lists no WebSocket address`)
  const port = Number(values.port ?? process.env.CELL_EDGE_PORT ?? 8787)
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port: "${values.port ?? ''}" is not a port number`)

  const state = values.state ?? join(tmpdir(), 'cell-edge-dev')
  await mkdir(state, { recursive: true, mode: 0o700 })
  const keyFile = join(state, 'edge.key')
  let key = (await readFile(keyFile, 'utf8').catch(() => '')).trim()
  if (key === '') {
    key = (await newEdgeKey()).key
    await writeFile(keyFile, key + '\n', { mode: 0o600 })
  }
  const peerId = edgePeerId(key)
  const authority = await readAuthorityKey(fleet.authorityKey)
  const now = Date.now()
  const grant = encodeGrantToken(await issueGrant(authority, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + GRANT_MS }))
  process.stdout.write(`edge peer id ${peerId}, caller grant from the demo's authority (12 h)\nbundling the Worker…\n`)
  const config = await bundleEdge(join(state, 'build'))
  const envFile = join(state, 'edge.env')
  const vars = { EDGE_KEY: key, EDGE_GRANT: grant, BOOTSTRAP: fleet.bootstrap.join(','), TRUST: fleet.trust.join(','), ALLOW_HOSTS: '127.0.0.1' }
  await writeFile(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 })

  const child = spawn(nodeBin, [wranglerBin, 'dev', '-c', config, '--ip', '127.0.0.1', '--port', String(port), '--env-file', envFile,
    '--persist-to', join(state, 'do-storage'), '--show-interactive-dev-session=false', '--log-level', 'warn'], { cwd: projectRoot, env: WRANGLER_ENV, stdio: 'inherit' })
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { child.kill(sig) })
  const exited = new Promise<number>(resolve => { child.once('exit', code => { resolve(code ?? 1) }) })

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + JOIN_MS
  let joined = false
  while (!joined && child.exitCode == null && Date.now() < deadline) {
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then(async r => await r.json() as { joined?: boolean }, () => undefined)
    joined = health?.joined === true
    if (!joined) await new Promise(resolve => setTimeout(resolve, 500))
  }
  if (child.exitCode == null) {
    process.stdout.write(joined ? `\nedge ${url}  (joined the fleet through ${fleet.bootstrap.length} node address(es))\n` : `\nedge ${url}  (not joined yet after ${JOIN_MS / 1000} s: see ${url}/healthz)\n`)
    process.stdout.write(`\n  curl -s -X POST -H 'content-type: application/json' -d '{"amount":12}' ${url}/cells/billing/charge\n`)
    process.stdout.write(`  curl -s ${url}/fleet\n\nPress Ctrl-C to stop the edge.\n`)
  }
  process.exitCode = await exited
}

await main()
