// `cell call <cell> <method> '<json>'`: one call through the mesh; the result as JSON on stdout, or the
// error's name and message on stderr with a non-zero exit.
import { createClient, waitForView } from '../client.ts'
import { awaitReplica } from '../call-readiness.ts'
import { parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'
import { createReadStream } from 'node:fs'
import { isAuthorityId } from '../../core/identity/index.ts'

const HELP = `usage: cell call <cell> <method> ['<json>' | @FILE | -] [--bootstrap ADDR]... [--key KEYFILE] [--timeout SECONDS] [--output text|json]

Calls a method of a cell on a replica the fleet runs and prints the result as JSON. The request is
the JSON argument, or read from FILE (@req.json) or standard input (-), for requests longer than a
command line takes; none sends null.

options:
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP, or bootstrap
                     in $CELL_HOME/node.toml)
  --key KEYFILE      authority key that signs this caller's grant (default $CELL_HOME/authority.key)
  --trust HEX        also trust releases signed by this authority id (repeatable)
  --timeout SECONDS  deadline of the call, including finding a replica (default 30)
  --output FORMAT    text (indented JSON, the default) or json (one line; errors as
                     {"error":{"name","message"}} on stderr)
  -h, --help         show this help

A cell the fleet does not know fails at once with UnknownCellError (once the view has been pulled
from a fleet node), a known cell with no replica starting or running with NoReplicaError saying
what the fleet last knew of it, and a mistyped method with UnknownMethodError naming the nearest
method and listing the cell's methods.`

const OPTIONS = { ...FLEET_OPTIONS, trust: { type: 'string', multiple: true }, timeout: { type: 'string' }, output: { type: 'string' } } as const

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 3 })
  if (typeof parsed === 'number') return parsed
  const [cell, method, arg] = parsed.positionals
  let request: unknown = null
  let json: string | undefined
  try {
    json = await requestText(arg)
  } catch (err) {
    return usageFailure((err as Error).message, HELP)
  }
  try {
    request = json != null ? JSON.parse(json) : null
  } catch (err) {
    return usageFailure(`the request${arg !== undefined && arg !== json ? ` (${arg === '-' ? 'standard input' : arg.slice(1)})` : ''} is not valid JSON: ${(err as Error).message}`, HELP)
  }
  for (const t of parsed.values.trust ?? []) if (!isAuthorityId(t)) return usageFailure(`--trust ${t} is not a 64-hex authority id`, HELP)
  const output = parsed.values.output ?? 'text'
  if (output !== 'text' && output !== 'json') return usageFailure(`--output must be text or json, got "${output}"`, HELP)
  const timeout = Number(parsed.values.timeout ?? 30)
  if (!Number.isFinite(timeout) || timeout <= 0) return usageFailure(`--timeout must be a positive number of seconds, got "${parsed.values.timeout ?? ''}"`, HELP)
  const timeoutMs = timeout * 1000
  const deadline = Date.now() + timeoutMs
  const fail = (name: string, message: string): void => {
    process.stderr.write(output === 'json' ? `${JSON.stringify({ error: { name, message } })}\n` : `${name}: ${message}\n`)
  }
  const mesh = await createClient({ bootstrap: await bootstrapList(parsed.values.bootstrap), authorityKey: await authorityKey(parsed.values.key), trust: parsed.values.trust })
  try {
    // Full nodes show private cells only to callers whose grant they trust: pull the view once and,
    // when the node answered with public cells only and this one is not among them, say why by name
    // at once instead of waiting out the deadline for replicas that will never be shown.
    await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs })
    const pulled = await mesh.libp2p.services.fleetSync.pull(mesh.libp2p.getPeers()[0], { signal: AbortSignal.timeout(Math.max(1, Math.min(10_000, deadline - Date.now()))) }).catch(() => undefined)
    if (pulled?.publicOnly !== undefined && mesh.view.claimants(cell).length === 0) {
      fail(pulled.publicOnly, `the fleet refused this caller's grant and shows it public cells only; "${cell}" is not one of them`)
      return 1
    }
    await awaitReplica(mesh, cell, { deadlineMs: deadline })
    const result = await mesh.call(cell, method, request, { timeoutMs: Math.max(1, deadline - Date.now()) })
    process.stdout.write((output === 'json' ? JSON.stringify(result) : JSON.stringify(result, null, 2)) + '\n')
    return 0
  } catch (err) {
    const e = err as Error & { remoteName?: string }
    fail(e.remoteName ?? e.name, e.message)
    return 1
  } finally {
    await mesh.stop()
  }
}

/** Read at most this much of a request file or standard input: a call frame carries at most 1 MiB (docs/limits.md), the mesh says so by name. */
const MAX_REQUEST_FILE_BYTES = 4 * 1024 * 1024

/** The request's text: the argument itself, `@FILE`'s contents, or standard input for `-`; bounded. */
async function requestText (arg: string | undefined): Promise<string | undefined> {
  if (arg === undefined || (arg !== '-' && !arg.startsWith('@'))) return arg
  const chunks: Buffer[] = []
  let size = 0
  const what = arg === '-' ? 'standard input' : arg.slice(1)
  const source = arg === '-' ? process.stdin : createReadStream(arg.slice(1))
  try {
    for await (const chunk of source) {
      const b = chunk as Buffer
      size += b.byteLength
      if (size > MAX_REQUEST_FILE_BYTES) throw new Error(`the request in ${what} is over ${MAX_REQUEST_FILE_BYTES / 1024 / 1024} MiB; a call carries at most 1 MiB (docs/limits.md): stream larger data instead`)
      chunks.push(b)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined) throw new Error(`cannot read the request from ${what}: ${(err as Error).message}`)
    throw err
  } finally {
    if (arg !== '-') (source as ReturnType<typeof createReadStream>).destroy()
  }
  return Buffer.concat(chunks).toString('utf8')
}
