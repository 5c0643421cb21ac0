// `cell publish [<version>]`: sign a release of the cell in --dir and hand it to the fleet. The
// version is Cell.toml's `[cell] version` unless told otherwise: a different one on the command line
// is refused (exit 2, nothing published) without --force-version, so a release never silently
// carries a version its packed Cell.toml contradicts.
import { resolve } from 'node:path'
import { parse } from 'smol-toml'
import { createClient } from '../client.ts'
import { Publisher } from '../publisher.ts'
import { formatPrepareReport } from '../prepare-report.ts'
import { readManifestSource } from '../ribosome/manifest-file.ts'
import { parseManifest, isVersion, manifestNotices } from '../../core/manifest/index.ts'
import { parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey } from './fleet-options.ts'
import { startProgress } from './progress.ts'

const HELP = `usage: cell publish [<version>] [--dir DIR] [--force-version] [--bootstrap ADDR]... [--key KEYFILE] [--wait N] [--timeout SECONDS] [--output text|json]

Bundles the cell in DIR (default .), packs it with its Cell.toml, signs the release with the
authority key, provides the artifact in the DHT and gossips the release. Waits until N replicas of
the new release are ready (default 1; 0 to return at once), then prints which nodes prepared the
release (fetched, verified and unpacked it) and which did not, and why. On a terminal, the wait
shows the replicas ready so far and the time elapsed.

The version is \`[cell] version\` of Cell.toml. A <version> argument must match it, unless
--force-version is given (or Cell.toml names no version).

options:
  --dir DIR          the cell directory (default .)
  --force-version    publish <version> even though Cell.toml names another
  --bootstrap ADDR   a fleet node to join through (repeatable; or CELL_BOOTSTRAP, or [cell.seeds],
                     or bootstrap in $CELL_HOME/node.toml)
  --key KEYFILE      authority key (default $CELL_HOME/authority.key)
  --wait N           ready replicas of the new release to wait for (default 1)
  --timeout SECONDS  how long to wait (default 60)
  --output FORMAT    text (default) or json (the report as one JSON object)
  -h, --help         show this help`

const OPTIONS = { ...FLEET_OPTIONS, dir: { type: 'string' }, wait: { type: 'string' }, timeout: { type: 'string' }, 'force-version': { type: 'boolean' }, output: { type: 'string' } } as const

/** The version to publish, or a usage error's message. */
export function chooseVersion (declared: string | undefined, given: string | undefined, force: boolean): { version: string } | { error: string } {
  if (given !== undefined && !isVersion(given)) return { error: `"${given}" is not a semantic version (MAJOR.MINOR.PATCH)` }
  if (given === undefined) {
    if (declared === undefined) return { error: 'Cell.toml names no version: set [cell] version or pass one (cell publish 1.0.0)' }
    return { version: declared }
  }
  if (declared !== undefined && declared !== given && !force) {
    return { error: `Cell.toml says version ${declared} but the command line says ${given}: change [cell] version, publish ${declared}, or pass --force-version` }
  }
  return { version: given }
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 1 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const output = v.output ?? 'text'
  if (output !== 'text' && output !== 'json') return usageFailure(`--output must be text or json, got "${output}"`, HELP)
  const wait = Number(v.wait ?? 1)
  if (!Number.isInteger(wait) || wait < 0) return usageFailure(`--wait must be a whole number >= 0, got "${v.wait ?? ''}"`, HELP)
  const timeout = Number(v.timeout ?? 60)
  if (!Number.isFinite(timeout) || timeout <= 0) return usageFailure(`--timeout must be a positive number of seconds, got "${v.timeout ?? ''}"`, HELP)
  const dir = resolve(v.dir ?? '.')
  const { file, source } = await readManifestSource(dir)
  const manifest = parseManifest(source, { file })
  for (const notice of manifestNotices(manifest)) process.stderr.write(`warning: ${notice}\n`)
  // Declared, not defaulted: the manifest fills in 0.0.0 when [cell] version is absent.
  const declared = (parse(source) as { cell?: { version?: unknown } }).cell?.version
  const chosen = chooseVersion(typeof declared === 'string' ? declared : undefined, parsed.positionals[0], v['force-version'] === true)
  if ('error' in chosen) return usageFailure(chosen.error, HELP)
  const key = await authorityKey(v.key)
  const mesh = await createClient({ bootstrap: await bootstrapList(v.bootstrap, dir), authorityKey: key, listen: true })
  const progress = startProgress({ label: `publishing ${manifest.name}@${chosen.version}`, want: wait, ready: () => mesh.replicas(manifest.name).filter(i => i.version === chosen.version).length })
  try {
    const r = await new Publisher(mesh).publish(dir, chosen.version, key, { waitReplicas: wait, timeoutMs: timeout * 1000 })
    progress.stop()
    // Only --force-version over an unchanged cell gets here (Cell.toml's version is packed with the
    // code): one artifact under two versions, whose replicas keep the label they started with.
    const twin = mesh.view.releases(r.cell).find(x => x.digest === r.digest && x.version !== r.version)
    if (twin !== undefined) process.stderr.write(`note: this artifact (sha256 ${r.digest.slice(0, 12)}…) is already released as ${r.cell}@${twin.version}: its replicas run on unchanged and report ${twin.version}; a new version needs changed code or Cell.toml\n`)
    if (output === 'json') {
      process.stdout.write(`${JSON.stringify({ cell: r.cell, version: r.version, digest: r.digest, seq: r.seq, ready: r.ready, nodes: r.nodes })}\n`)
    } else {
      process.stdout.write(`published ${r.cell}@${r.version}\n  digest ${r.digest}\n  seq ${r.seq}\n  ready replicas ${r.ready}\n`)
      process.stdout.write(`${formatPrepareReport(r.nodes)}\n`)
    }
    return 0
  } finally {
    progress.stop()
    await mesh.stop()
  }
}
