// Optional node config file (`cell up --config FILE`, default $CELL_HOME/node.toml when present):
//   bootstrap = ["/ip4/…/tcp/…/p2p/…"]   trust = ["<64 hex>"]   grants = ["cell-grant-v1:…"]
//   zfs_pool = "tank"   (the ZFS pool stateful cells' volumes are created in; absent: the dir driver only)
//   dissemination = "per-cell"   (how records travel: "fleet", the default, or "per-cell"; docs/biology.md "Scale")
//   guests_per_host = 32   guests_total = 256   (inbound connections of peers that are neither fleet
//   members nor callers with a trusted grant: per address, IPv6 per /64, and in all; docs/limits.md)
// Flags add to what the file says.
import { readFile } from 'node:fs/promises'
import { parse, TomlError } from 'smol-toml'
import { CellError } from '../../core/errors.ts'
import { isAuthorityId } from '../../core/identity/index.ts'
import type { Dissemination } from '../../core/fleet/index.ts'

export class NodeConfigError extends CellError { static override readonly errorName = 'NodeConfigError' }

export interface NodeConfig {
  bootstrap: string[]
  trust: string[]
  grants: string[]
  zfsPool?: string
  dissemination?: Dissemination
  /** Limits on guest connections (core/mesh/guest-connections.ts). */
  guests?: { perHost?: number, total?: number }
}

const KEYS = new Set(['bootstrap', 'trust', 'grants', 'zfs_pool', 'dissemination', 'guests_per_host', 'guests_total'])
/** The largest guest limit a config may set (libp2p's connection cap is the total plus 128). */
export const MAX_GUEST_LIMIT = 4096
export const DISSEMINATIONS: readonly Dissemination[] = ['fleet', 'per-cell']
/** A ZFS pool name as `zpool create` accepts it (no dataset path). */
export const ZFS_POOL_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/
const MAX_CONFIG_BYTES = 64 * 1024

function strings (file: string, key: string, value: unknown, check?: (s: string) => boolean): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > 64 || value.some(v => typeof v !== 'string')) throw new NodeConfigError(`${file}: ${key} must be an array of at most 64 strings`)
  for (const v of value as string[]) if (check != null && !check(v)) throw new NodeConfigError(`${file}: ${key} has an invalid entry "${v}"`)
  return value as string[]
}

export async function readNodeConfig (file: string, options: { optional?: boolean } = {}): Promise<NodeConfig> {
  let source: string
  try {
    source = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && options.optional === true) return { bootstrap: [], trust: [], grants: [] }
    throw new NodeConfigError(`cannot read node config ${file}`, { cause: err })
  }
  if (source.length > MAX_CONFIG_BYTES) throw new NodeConfigError(`${file} is larger than ${MAX_CONFIG_BYTES} bytes`)
  let doc: Record<string, unknown>
  try {
    doc = parse(source) as Record<string, unknown>
  } catch (err) {
    const line = err instanceof TomlError ? `:${err.line}` : ''
    throw new NodeConfigError(`${file}${line}: ${(err as Error).message.split('\n')[0]}`, { cause: err })
  }
  for (const key of Object.keys(doc)) if (!KEYS.has(key)) throw new NodeConfigError(`${file}: unknown key ${key} (expected ${[...KEYS].join(', ')})`)
  return {
    bootstrap: strings(file, 'bootstrap', doc.bootstrap, s => s.startsWith('/')),
    trust: strings(file, 'trust', doc.trust, isAuthorityId),
    grants: strings(file, 'grants', doc.grants),
    ...zfsPool(file, doc.zfs_pool),
    ...dissemination(file, doc.dissemination),
    ...guests(file, doc.guests_per_host, doc.guests_total)
  }
}

function guests (file: string, perHost: unknown, total: unknown): { guests?: { perHost?: number, total?: number } } {
  const out: { perHost?: number, total?: number } = {}
  for (const [key, value, into] of [['guests_per_host', perHost, 'perHost'], ['guests_total', total, 'total']] as const) {
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_GUEST_LIMIT) throw new NodeConfigError(`${file}: ${key} must be a whole number from 1 to ${MAX_GUEST_LIMIT}`)
    out[into] = value
  }
  return Object.keys(out).length > 0 ? { guests: out } : {}
}

function dissemination (file: string, value: unknown): { dissemination?: Dissemination } {
  if (value === undefined) return {}
  if (typeof value !== 'string' || !(DISSEMINATIONS as readonly string[]).includes(value)) throw new NodeConfigError(`${file}: dissemination must be one of ${DISSEMINATIONS.map(d => `"${d}"`).join(', ')}`)
  return { dissemination: value as Dissemination }
}

function zfsPool (file: string, value: unknown): { zfsPool?: string } {
  if (value === undefined) return {}
  if (typeof value !== 'string' || !ZFS_POOL_PATTERN.test(value)) throw new NodeConfigError(`${file}: zfs_pool must be a ZFS pool name (letters, digits, _ . : -; starting with a letter)`)
  return { zfsPool: value }
}
