// Options shared by the commands that join a fleet (up, publish, call): where to bootstrap from and
// which authority key to act with.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseManifest } from '../../core/manifest/index.ts'
import { KeyFileNotFoundError, readAuthorityKey } from '../keys/index.ts'
import type { AuthorityKey } from '../../core/identity/index.ts'
import { cellHome, defaultAuthorityKeyPath } from './usage.ts'
import { DISSEMINATIONS, readNodeConfig, type NodeConfig } from './node-config.ts'
import type { Dissemination } from '../../core/fleet/index.ts'
import { UsageError } from './usage.ts'

export const FLEET_OPTIONS = {
  bootstrap: { type: 'string', multiple: true },
  key: { type: 'string' }
} as const

/**
 * --bootstrap flags, else CELL_BOOTSTRAP (comma-separated), else `[cell.seeds] bootstrap` of the
 * cell's Cell.toml, else `bootstrap` of `$CELL_HOME/node.toml`: every command joins the same way.
 */
export async function bootstrapList (flags: string[] | undefined, cellDir?: string): Promise<string[]> {
  if (flags != null && flags.length > 0) return flags.flatMap(f => f.split(',')).map(s => s.trim()).filter(Boolean)
  const env = process.env.CELL_BOOTSTRAP
  if (env != null && env.trim() !== '') return env.split(',').map(s => s.trim()).filter(Boolean)
  if (cellDir != null) {
    const file = join(cellDir, 'Cell.toml')
    const source = await readFile(file, 'utf8').catch(() => undefined)
    if (source != null) {
      const seeds = [...parseManifest(source, { file }).seeds.bootstrap].filter(a => a.startsWith('/'))
      if (seeds.length > 0) return seeds
    }
  }
  return (await readNodeConfig(join(cellHome(), 'node.toml'), { optional: true })).bootstrap
}

/**
 * The authority key a command acts with: --key, else CELL_AUTHORITY_KEY, else
 * `$CELL_HOME/authority.key`. A missing file says where it looked and how to make or name one.
 */
export async function authorityKey (path: string | undefined): Promise<AuthorityKey> {
  const [file, from] = path !== undefined ? [path, '--key'] : process.env.CELL_AUTHORITY_KEY !== undefined ? [process.env.CELL_AUTHORITY_KEY, 'CELL_AUTHORITY_KEY'] : [defaultAuthorityKeyPath(), 'the default, $CELL_HOME/authority.key']
  try {
    return await readAuthorityKey(file)
  } catch (err) {
    if (!(err instanceof KeyFileNotFoundError)) throw err
    throw new KeyFileNotFoundError(`no authority key at ${file} (${from}): \`cell keygen\` makes one there, or pass --key with the key that signs your grants`, { cause: err })
  }
}

/**
 * How fleet records travel (docs/biology.md "Scale"): the --dissemination flag, else
 * CELL_DISSEMINATION, else `dissemination` of the node config (`config` when the caller read one,
 * e.g. `cell up --config`; else `$CELL_HOME/node.toml`), else "fleet". Every node and client of one
 * fleet must use the same.
 */
export async function disseminationOf (flag: string | undefined, config?: Pick<NodeConfig, 'dissemination'>): Promise<Dissemination> {
  const env = process.env.CELL_DISSEMINATION
  const chosen = flag ?? (env != null && env.trim() !== '' ? env.trim() : undefined)
  if (chosen !== undefined) {
    if (!(DISSEMINATIONS as readonly string[]).includes(chosen)) throw new UsageError(`${flag !== undefined ? '--dissemination' : 'CELL_DISSEMINATION'} ${chosen}: expected ${DISSEMINATIONS.join(' or ')}`)
    return chosen as Dissemination
  }
  return (config ?? await readNodeConfig(join(cellHome(), 'node.toml'), { optional: true })).dissemination ?? 'fleet'
}
