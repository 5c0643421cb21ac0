// `cell retire <cell>`: stop a cell everywhere with a signed retire record; a later publish brings it back.
import { createClient } from '../client.ts'
import { retireCell } from '../retire.ts'
import { parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'

const HELP = `usage: cell retire <cell> [--bootstrap ADDR]... [--key KEYFILE] [--no-wait] [--timeout SECONDS] [--output text|json]

Signs a retire record for <cell> with a sequence number above every record the fleet holds for it,
gossips it, and waits until no replica of it runs: every node drains its replicas and stops hosting
the cell (each logs "retired <cell> by <authority>"). A later \`cell publish\` or \`cell rollback\`
brings the cell back.

options:
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP, or bootstrap
                     in $CELL_HOME/node.toml)
  --key KEYFILE      authority key (default $CELL_HOME/authority.key)
  --no-wait          return once the record is gossiped
  --timeout SECONDS  how long to wait for the replicas to drain (default 60)
  --output FORMAT    text (default) or json (one object: cell, seq, replicas, nodes, drained)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, 'no-wait': { type: 'boolean' }, timeout: { type: 'string' }, output: { type: 'string' } } as const

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 1, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell] = parsed.positionals
  const output = v.output ?? 'text'
  if (output !== 'text' && output !== 'json') return usageFailure(`--output must be text or json, got "${output}"`, HELP)
  const timeout = Number(v.timeout ?? 60)
  if (!Number.isFinite(timeout) || timeout <= 0) return usageFailure(`--timeout must be a positive number of seconds, got "${v.timeout ?? ''}"`, HELP)
  const key = await authorityKey(v.key)
  const bootstrap = await bootstrapList(v.bootstrap)
  const mesh = await createClient({ bootstrap, authorityKey: key, listen: true })
  try {
    const r = await retireCell(mesh, cell, key, { wait: v['no-wait'] !== true, timeoutMs: timeout * 1000 })
    if (output === 'json') {
      process.stdout.write(`${JSON.stringify({ cell: r.cell, seq: r.seq, replicas: r.replicas, nodes: r.nodes, drained: v['no-wait'] !== true })}\n`)
      return 0
    }
    const where = r.nodes.length > 0 ? r.nodes.map(n => `…${n.slice(-8)}`).join(', ') : 'no node'
    process.stdout.write(`retired ${r.cell}\n  seq ${r.seq}\n  ${r.replicas} replica(s) on ${where} ${v['no-wait'] === true ? 'asked to drain' : 'drained'}\n  a later \`cell publish\` brings it back\n`)
    return 0
  } finally {
    await mesh.stop()
  }
}
