// `cell call <cell> <method> '<json>'`: one call through the mesh; the result as JSON on stdout, or the
// error's name and message on stderr with a non-zero exit.
import { createClient, waitForReplicas, waitForView } from '../client.ts'
import { parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'
import { isAuthorityId } from '../../core/identity/index.ts'

const HELP = `usage: cell call <cell> <method> ['<json>'] [--bootstrap ADDR]... [--key KEYFILE] [--timeout SECONDS]

Calls a method of a cell on a replica the fleet runs and prints the result as JSON.

options:
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE      authority key that signs this caller's grant (default $CELL_HOME/authority.key)
  --trust HEX        also trust releases signed by this authority id (repeatable)
  --timeout SECONDS  deadline of the call, including finding a replica (default 30)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, trust: { type: 'string', multiple: true }, timeout: { type: 'string' } } as const

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 3 })
  if (typeof parsed === 'number') return parsed
  const [cell, method, json] = parsed.positionals
  let request: unknown = null
  try {
    request = json != null ? JSON.parse(json) : null
  } catch (err) {
    return usageFailure(`the request is not valid JSON: ${(err as Error).message}`, HELP)
  }
  for (const t of parsed.values.trust ?? []) if (!isAuthorityId(t)) return usageFailure(`--trust ${t} is not a 64-hex authority id`, HELP)
  const timeoutMs = Number(parsed.values.timeout ?? 30) * 1000
  const deadline = Date.now() + timeoutMs
  const mesh = await createClient({ bootstrap: await bootstrapList(parsed.values.bootstrap), authorityKey: await authorityKey(parsed.values.key), trust: parsed.values.trust })
  try {
    // Full nodes show private cells only to callers whose grant they trust: pull the view once and,
    // when the node answered with public cells only and this one is not among them, say why by name
    // at once instead of waiting out the deadline for replicas that will never be shown.
    await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs })
    const pulled = await mesh.libp2p.services.fleetSync.pull(mesh.libp2p.getPeers()[0], { signal: AbortSignal.timeout(Math.max(1, Math.min(10_000, deadline - Date.now()))) }).catch(() => undefined)
    if (pulled?.publicOnly !== undefined && mesh.view.claimants(cell).length === 0) {
      process.stderr.write(`${pulled.publicOnly}: the fleet refused this caller's grant and shows it public cells only; "${cell}" is not one of them\n`)
      return 1
    }
    await waitForReplicas(mesh, cell, { timeoutMs: Math.max(1, deadline - Date.now()) })
    const result = await mesh.call(cell, method, request, { timeoutMs: Math.max(1, deadline - Date.now()) })
    process.stdout.write(JSON.stringify(result, null, 2) + '\n')
    return 0
  } catch (err) {
    const e = err as Error & { remoteName?: string }
    process.stderr.write(`${e.remoteName ?? e.name}: ${e.message}\n`)
    return 1
  } finally {
    await mesh.stop()
  }
}
