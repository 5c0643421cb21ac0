// `cell rollback <cell> <version>`: ask the fleet to run an earlier release again, by a signed
// desired-version record; the nodes displace the current version as in a rollout.
import { createClient } from '../client.ts'
import { rollback, checkRollbackArgs } from '../rollback.ts'
import { formatPrepareReport } from '../prepare-report.ts'
import { parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'
import { startProgress } from './progress.ts'

const HELP = `usage: cell rollback <cell> <version> [--digest HEX] [--bootstrap ADDR]... [--key KEYFILE] [--wait N] [--timeout SECONDS] [--output text|json]

Signs a desired-version record for <cell>@<version> with a sequence number above every record the
fleet holds for the cell, gossips it, and waits until N replicas of that version are ready. The
version's artifact digest comes from --digest, else from the fleet view (its release record or a
running instance of it). Then prints which nodes prepared that version and which did not, and why.
On a terminal, the wait shows the replicas ready so far and the time elapsed.

options:
  --digest HEX       sha256 of the version's artifact (as \`cell build\` / \`cell publish\` print it)
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP, or bootstrap
                     in $CELL_HOME/node.toml)
  --key KEYFILE      authority key (default $CELL_HOME/authority.key)
  --wait N           ready replicas of the version to wait for (default 1; 0 to return at once)
  --timeout SECONDS  how long to wait (default 60)
  --output FORMAT    text (default) or json (the report as one JSON object)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, digest: { type: 'string' }, wait: { type: 'string' }, timeout: { type: 'string' }, output: { type: 'string' } } as const

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 2 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell, version] = parsed.positionals
  const output = v.output ?? 'text'
  if (output !== 'text' && output !== 'json') return usageFailure(`--output must be text or json, got "${output}"`, HELP)
  const wait = Number(v.wait ?? 1)
  if (!Number.isInteger(wait) || wait < 0) return usageFailure(`--wait must be a whole number >= 0, got "${v.wait ?? ''}"`, HELP)
  const timeout = Number(v.timeout ?? 60)
  if (!Number.isFinite(timeout) || timeout <= 0) return usageFailure(`--timeout must be a positive number of seconds, got "${v.timeout ?? ''}"`, HELP)
  try {
    checkRollbackArgs(version, v.digest)
  } catch (err) {
    return usageFailure((err as Error).message, HELP)
  }
  const key = await authorityKey(v.key)
  const bootstrap = await bootstrapList(v.bootstrap)
  const mesh = await createClient({ bootstrap, authorityKey: key, listen: true })
  const progress = startProgress({ label: `rolling back ${cell} to ${version}`, want: wait, ready: () => mesh.replicas(cell).filter(i => i.version === version).length })
  try {
    const r = await rollback(mesh, cell, version, key, { digest: v.digest, waitReplicas: wait, timeoutMs: timeout * 1000 })
    progress.stop()
    if (output === 'json') {
      process.stdout.write(`${JSON.stringify({ cell: r.cell, version: r.version, digest: r.digest, seq: r.seq, ready: r.ready, nodes: r.nodes })}\n`)
    } else {
      process.stdout.write(`rolled back ${r.cell} to ${r.version}\n  digest ${r.digest}\n  seq ${r.seq}\n  ready replicas ${r.ready}\n`)
      process.stdout.write(`${formatPrepareReport(r.nodes)}\n`)
    }
    return 0
  } finally {
    progress.stop()
    await mesh.stop()
  }
}
