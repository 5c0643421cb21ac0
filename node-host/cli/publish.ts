// `cell publish <version>`: sign a release of the cell in --dir and hand it to the fleet.
import { resolve } from 'node:path'
import { createClient } from '../client.ts'
import { Publisher } from '../publisher.ts'
import { formatPrepareReport } from '../prepare-report.ts'
import { parseCommand } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'

const HELP = `usage: cell publish <version> [--dir DIR] [--bootstrap ADDR]... [--key KEYFILE] [--wait N] [--timeout 60s]

Bundles the cell in DIR (default .), packs it with its Cell.toml, signs the release with the
authority key, provides the artifact in the DHT and gossips the release. Waits until N replicas of
the new release are ready (default 1; 0 to return at once), then prints which nodes prepared the
release (fetched, verified and unpacked it) and which did not, and why.

options:
  --dir DIR          the cell directory (default .)
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP, or [cell.seeds])
  --key KEYFILE      authority key (default $CELL_HOME/authority.key)
  --wait N           ready replicas of the new release to wait for (default 1)
  --timeout SECONDS  how long to wait (default 60)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, dir: { type: 'string' }, wait: { type: 'string' }, timeout: { type: 'string' } } as const

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 1, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const dir = resolve(v.dir ?? '.')
  const key = await authorityKey(v.key)
  const mesh = await createClient({ bootstrap: await bootstrapList(v.bootstrap, dir), authorityKey: key, listen: true })
  try {
    const r = await new Publisher(mesh).publish(dir, parsed.positionals[0], key, { waitReplicas: Number(v.wait ?? 1), timeoutMs: Number(v.timeout ?? 60) * 1000 })
    process.stdout.write(`published ${r.cell}@${r.version}\n  digest ${r.digest}\n  seq ${r.seq}\n  ready replicas ${r.ready}\n`)
    process.stdout.write(`${formatPrepareReport(r.nodes)}\n`)
    return 0
  } finally {
    await mesh.stop()
  }
}
