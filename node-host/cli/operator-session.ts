// Shared by the day-2 commands (`cell logs`, `cell top`, `cell status`): join the fleet as a client
// holding an operator grant from the user's authority key, pull the view once from a neighbour,
// and the small formatting helpers their text output shares.
import type { Mesh } from '../../core/mesh/index.ts'
import { UnknownCellError } from '../../core/mesh/index.ts'
import { createClient, waitForView } from '../client.ts'
import { nearestNames } from '../call-readiness.ts'
import { bootstrapList, authorityKey } from './fleet-options.ts'
import { UsageError } from './usage.ts'
import { isAuthorityId } from '../../core/identity/index.ts'

/** Options of every day-2 command besides FLEET_OPTIONS. */
export const OPERATOR_OPTIONS = { trust: { type: 'string', multiple: true } } as const
export const OPERATOR_HELP = '  --trust HEX         also trust releases signed by this authority id (repeatable)'

/** A client of the fleet whose view has been pulled once (or the deadline passed trying). */
export async function joinAsOperator (values: { bootstrap?: string[], key?: string, trust?: string[] }, timeoutMs = 15_000): Promise<Mesh> {
  for (const t of values.trust ?? []) if (!isAuthorityId(t)) throw new UsageError(`--trust ${t} is not a 64-hex authority id`)
  const mesh = await createClient({ bootstrap: await bootstrapList(values.bootstrap), authorityKey: await authorityKey(values.key), keep: 2, ...(values.trust !== undefined ? { trust: values.trust } : {}) })
  try {
    await waitForView(mesh, () => mesh.libp2p.getPeers().length > 0 ? true : undefined, 'a connection to the fleet', { timeoutMs })
    await mesh.libp2p.services.fleetSync.pull(mesh.libp2p.getPeers()[0], { signal: AbortSignal.timeout(Math.min(10_000, timeoutMs)) }).catch(() => undefined)
  } catch (err) {
    await mesh.stop()
    throw err
  }
  return mesh
}

/** UnknownCellError (with the nearest names) when the pulled view has never heard of `cell`. */
export function requireKnownCell (mesh: Mesh, cell: string): void {
  const cells = mesh.view.cells()
  if (cells.includes(cell)) return
  const near = nearestNames(cell, cells)
  throw new UnknownCellError(`the fleet knows no cell "${cell}"${near.length > 0 ? `; did you mean ${near.map(n => `"${n}"`).join(' or ')}?` : cells.length > 0 ? ` (it knows ${cells.slice(0, 8).join(', ')})` : ''}`)
}

/** `--output text|json`. */
export function outputOf (value: string | undefined): 'text' | 'json' {
  if (value === undefined || value === 'text') return 'text'
  if (value === 'json') return 'json'
  throw new UsageError(`--output must be text or json, got "${value}"`)
}

/** `10s`, `5m`, `2h`, `1d` (or plain seconds) in ms. */
export function parseDurationMs (text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim())
  if (m === null) throw new UsageError(`"${text}" is not a duration (like 30s, 10m, 2h, 1d)`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd']
  return Number(m[1]) * unit
}

/** `1d 2h`, `3m 12s`, `45s`: how long, for people. */
export function formatAge (ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${s % 60 > 0 ? ` ${s % 60}s` : ''}`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h${m % 60 > 0 ? ` ${m % 60}m` : ''}`
  return `${Math.floor(h / 24)}d${h % 24 > 0 ? ` ${h % 24}h` : ''}`
}

export function formatBytes (n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '0 B'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

/** The short form of a node id people see (`…x7Yz9k`). */
export function shortNode (nodeId: string): string {
  return `…${nodeId.slice(-6)}`
}

/** The short form of a replica id: the instance id without its `<cell>-` prefix (version and suffix). */
export function shortReplica (cell: string, instanceId: string): string {
  return instanceId.startsWith(`${cell}-`) ? instanceId.slice(cell.length + 1) : instanceId
}

/** Colours only on a terminal, and never with NO_COLOR set (https://no-color.org). */
export function useColour (stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === '')
}

/** Green, yellow, blue, magenta, cyan and their bright forms: no red (that means trouble). */
const PALETTE = [32, 33, 34, 35, 36, 92, 93, 94, 95, 96]

/** The same colour for the same replica in every run (FNV-1a of its id). */
export function colourOf (id: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0
  return PALETTE[h % PALETTE.length]
}

export function paint (text: string, code: number, on: boolean): string {
  return on ? `\x1b[${code}m${text}\x1b[0m` : text
}
