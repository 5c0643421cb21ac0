// `cell restore <cell> <tag>`: the owner of the snapshot's claim restores it in place (operator role).
import { peerIdFromString } from '@libp2p/peer-id'
import { parseCommand, usageFailure, UsageError } from './usage.ts'
import { FLEET_OPTIONS } from './fleet-options.ts'
import { OPERATOR_OPTIONS, OPERATOR_HELP, joinAsOperator, requireKnownCell, outputOf, shortNode } from './operator-session.ts'
import { requestRestore, RestoreRefusedError } from '../volumes/restore-protocol.ts'
import { CellError } from '../../core/errors.ts'

const HELP = `usage: cell restore <cell> <tag> [--output text|json]

Restores one of a stateful cell's snapshots (a tag from \`cell snapshots <cell>\`, as
snapshot-e<epoch>-<UTC> or <cell>@snapshot-<UTC>) on the node that owns its claim: calls to the
replica are refused for a moment (callers retry), the replica stops, what its volume holds is kept
as a new snapshot (so the restore can be undone), the snapshot is restored and a new replica starts
on it. The claim keeps its owner and epoch. Needs the operator role of the cell's authority.

options:
  --output FORMAT    text (default) or json
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP)
  --key KEYFILE      authority key that signs this operator's grant (default $CELL_HOME/authority.key)
${OPERATOR_HELP}
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, ...OPERATOR_OPTIONS, output: { type: 'string', short: 'o' } } as const

/** No node answered that it owns the snapshot's claim and restored it. */
export class RestoreFailedError extends CellError { static override readonly errorName = 'RestoreFailedError' }

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 2, max: 2 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const [cell, given] = parsed.positionals
  let format: 'text' | 'json'
  try {
    format = outputOf(v.output)
  } catch (err) {
    if (err instanceof UsageError) return usageFailure(err, HELP)
    throw err
  }
  const mesh = await joinAsOperator(v)
  try {
    requireKnownCell(mesh, cell)
    const snapshots = mesh.view.snapshotClaims(cell).flatMap(id => mesh.view.snapshots(id))
    // `ledger@snapshot-20261130T123436Z` names the time; the registry tag adds the epoch.
    const shown = given.startsWith(`${cell}@`) ? given.slice(cell.length + 1) : given
    const record = snapshots.find(s => s.tag === shown) ?? snapshots.find(s => s.tag.replace(/^snapshot-e\d+-/, 'snapshot-') === shown)
    if (record === undefined) throw new RestoreRefusedError(`the fleet knows no snapshot "${given}" of ${cell}${snapshots.length > 0 ? ` (newest: ${snapshots.slice(0, 3).map(s => s.tag).join(', ')})` : ''}`)
    // Ask the nodes that run a ready replica of the cell; the one holding the claim restores.
    const nodes = [...new Set(mesh.view.liveInstances(cell).filter(i => i.state === 'ready').map(i => i.nodeId))]
    const chain = mesh.credentialsFor(cell)
    const answers: string[] = []
    for (const nodeId of nodes) {
      const answer = await requestRestore(mesh.libp2p, peerIdFromString(nodeId), chain, { cell, tag: record.tag }, { signal: AbortSignal.timeout(120_000) })
      if (answer.t === 'not-owner') { answers.push(`${shortNode(nodeId)}: not the owner of ${record.claimId}`); continue }
      if (answer.t === 'restored') {
        if (format === 'json') process.stdout.write(JSON.stringify({ ...answer, node: nodeId }) + '\n')
        else process.stdout.write(`restored ${cell}@${record.tag.replace(/^snapshot-e\d+-/, 'snapshot-')} (${record.tag}) into claim ${String(answer.claimId)} at epoch ${String(answer.epoch)} on node ${shortNode(nodeId)} in ${String(answer.ms)} ms; replica ${String(answer.replica)} runs on it; what the volume held before is snapshot ${String(answer.before)}\n`)
        return 0
      }
      throw new RestoreFailedError(`node ${shortNode(nodeId)}: ${String(answer.name)}: ${String(answer.message)}`)
    }
    throw new RestoreFailedError(`no node running ${cell} owns claim ${record.claimId}${answers.length > 0 ? ` (${answers.join('; ')})` : ' (no ready replica of the cell)'}`)
  } finally {
    await mesh.stop()
  }
}
