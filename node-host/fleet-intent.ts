// The fleet's intent as this node accepted it, kept in `<data>/fleet-intent.json` so a restart (of
// this node, or of every node of a fleet at once) brings each cell back at its target version with
// no new publish:
// - replay floors: the highest release / desired seq accepted per (authority, cell), handed to the
//   fleet view as core/identity SequenceGuards, so a replayed older record stays refused;
// - signed records (releases and desired-version records) as the bytes core/identity signed, keyed
//   by `${authority} ${cell}`; on start they go through the fleet view's normal verification again
//   (an untrusted or broken one is dropped and logged there, never fatal);
// - halts this node decided or adopted (core/biology HaltRecord), so a halted release stays halted;
// - this node's listen ports and a few peers it was connected to, so addresses other nodes hold stay
//   valid and a whole fleet restarting at once finds itself again.
// Written atomically (temp file + rename), every part bounded. A signed record kind is one more
// entry in INTENT_RECORD_KINDS (plus how FullNode reads it from the view: see intentRecordOf there).
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { CellError, type RetryRule } from '../core/errors.ts'
import { SequenceGuard } from '../core/identity/index.ts'
import type { HaltRecord } from '../core/biology/index.ts'

const log = logger('cell:node:intent')
export const INTENT_FILE = 'fleet-intent.json'
/** Written by nodes before the intent store; its floors are read once when no intent file exists. */
const LEGACY_FLOORS_FILE = 'sequence-floors.json'

/** Signed record kinds kept across restarts, as the fleet view names them (FleetEnvelope kind). */
// Retire records (`cell retire`) too: after a restart of the whole fleet a retired cell stays retired.
export const INTENT_RECORD_KINDS = ['release', 'desired', 'retire'] as const
export type IntentRecordKind = typeof INTENT_RECORD_KINDS[number]
/**
 * Every kind the file holds. `prepared`: signed releases this node prepared, keyed by
 * `${authority} ${cell} ${digest}`; the view keeps only the newest release of a cell, so these are
 * what lets a restarted node fall back to the previous release when the newest is halted (verified
 * again and handed to the release store, not to the view, whose floors are above them).
 */
export const STORED_RECORD_KINDS = [...INTENT_RECORD_KINDS, 'prepared'] as const
export type StoredRecordKind = typeof STORED_RECORD_KINDS[number]

/** Floors kept per kind; SequenceGuard forgets the least recently updated beyond it. */
const MAX_FLOORS = 10_000
/** Records kept per kind: the fleet view holds at most 4096 cells. */
const MAX_RECORDS = 4096
/** One signed record's bytes (a release is a few hundred bytes). */
const MAX_RECORD_BYTES = 16 * 1024
const MAX_HALTS = 1024
const MAX_PEERS = 32
const MAX_FILE_BYTES = 32 * 1024 * 1024

/** The intent file exists but is not what this node wrote (edited, truncated by a full disk). */
export class MalformedFleetIntentError extends CellError {
  static override readonly errorName = 'MalformedFleetIntentError'
  static override readonly retry: RetryRule = 'never'
}

export interface ListenPortsRecord { tcp?: number, ws?: number, webrtc?: number, webtransport?: number }

export interface FleetIntent {
  /** Replay floors, one guard per kind (the fleet view's `sequenceFloors`). */
  release: SequenceGuard
  desired: SequenceGuard
  retire: SequenceGuard
  /** Stored signed records of one kind, oldest update first. */
  records: (kind: StoredRecordKind) => Array<{ key: string, signed: Uint8Array }>
  /** Keeps a signed record under (kind, key), replacing the one there; the least recently put go beyond the bound. */
  putRecord: (kind: StoredRecordKind, key: string, signed: Uint8Array) => void
  /** Keys of one kind starting with `prefix`, oldest update first (no decoding). */
  keys: (kind: StoredRecordKind, prefix?: string) => string[]
  forget: (kind: StoredRecordKind, key: string) => void
  halts: () => HaltRecord[]
  setHalts: (halts: readonly HaltRecord[]) => void
  listen: () => ListenPortsRecord
  setListen: (ports: ListenPortsRecord) => void
  peers: () => string[]
  setPeers: (addrs: readonly string[]) => void
  /** Writes the file if anything changed since the last write; a failed write is logged, not thrown. */
  flush: () => Promise<void>
}

interface Stored {
  floors: { release: Array<[string, number]>, desired: Array<[string, number]>, retire: Array<[string, number]> }
  records: Record<StoredRecordKind, Array<[string, string]>>
  halts: HaltRecord[]
  listen: ListenPortsRecord
  peers: string[]
}

export async function loadFleetIntent (dataDir: string): Promise<FleetIntent> {
  const path = join(dataDir, INTENT_FILE)
  let stored = await readJson(path, parseIntent)
  if (stored === undefined) {
    const floors = await readJson(join(dataDir, LEGACY_FLOORS_FILE), (v) => parseFloors(v))
    stored = { ...emptyIntent(), ...(floors !== undefined ? { floors } : {}) }
  }
  const release = new SequenceGuard({ maxCells: MAX_FLOORS, initial: stored.floors.release })
  const desired = new SequenceGuard({ maxCells: MAX_FLOORS, initial: stored.floors.desired })
  const retire = new SequenceGuard({ maxCells: MAX_FLOORS, initial: stored.floors.retire })
  const records = Object.fromEntries(STORED_RECORD_KINDS.map(k => [k, new Map(stored.records[k])])) as Record<StoredRecordKind, Map<string, string>>
  let halts = stored.halts
  let listen = stored.listen
  let peers = stored.peers
  const serialise = (): string => JSON.stringify({
    version: 1,
    floors: { release: release.entries(), desired: desired.entries(), retire: retire.entries() },
    records: Object.fromEntries(STORED_RECORD_KINDS.map(k => [k, [...records[k]]])),
    halts,
    listen,
    peers
  })
  let written = serialise()
  let writing: Promise<void> = Promise.resolve()
  const flush = async (): Promise<void> => {
    writing = writing.then(async () => {
      const next = serialise()
      if (next === written) return
      const tmp = `${path}.tmp`
      await writeFile(tmp, next, { mode: 0o600 })
      await rename(tmp, path)
      written = next
    }).catch((err) => { log.error('writing %s failed: %e', path, err) })
    await writing
  }
  return {
    release,
    desired,
    retire,
    records: (kind) => [...records[kind]].map(([key, b64]) => ({ key, signed: Uint8Array.from(Buffer.from(b64, 'base64')) })),
    putRecord: (kind, key, signed) => {
      if (signed.byteLength > MAX_RECORD_BYTES || key.length > 600) return
      const map = records[kind]
      map.delete(key)
      map.set(key, Buffer.from(signed).toString('base64'))
      if (map.size > MAX_RECORDS) map.delete(map.keys().next().value as string)
    },
    keys: (kind, prefix = '') => [...records[kind].keys()].filter(k => k.startsWith(prefix)),
    forget: (kind, key) => { records[kind].delete(key) },
    halts: () => halts.map(h => ({ ...h })),
    setHalts: (next) => { halts = next.slice(-MAX_HALTS).map(h => ({ ...h })) },
    listen: () => ({ ...listen }),
    setListen: (ports) => { listen = { ...ports } },
    peers: () => [...peers],
    setPeers: (addrs) => { peers = addrs.slice(0, MAX_PEERS) },
    flush
  }
}

function emptyIntent (): Stored {
  return { floors: { release: [], desired: [], retire: [] }, records: { release: [], desired: [], retire: [], prepared: [] }, halts: [], listen: {}, peers: [] }
}

async function readJson<T> (path: string, parse: (value: unknown) => T): Promise<T | undefined> {
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (text === undefined) return undefined
  if (text.length > MAX_FILE_BYTES) throw new MalformedFleetIntentError(`${path} is larger than ${MAX_FILE_BYTES} bytes`)
  try {
    return parse(JSON.parse(text))
  } catch (err) {
    // Refuse to start rather than forget every replay floor: the operator decides (delete the file
    // to start without floors, records or halts; the fleet's other nodes still hold them).
    throw new MalformedFleetIntentError(`${path} is not a fleet-intent file: ${(err as Error).message}; remove it to start without remembered floors, releases and halts`, { cause: err })
  }
}

function parseFloors (value: unknown): Stored['floors'] {
  const v = value as { release?: unknown, desired?: unknown, retire?: unknown }
  const list = (x: unknown, what: string): Array<[string, number]> => {
    if (!Array.isArray(x) || x.length > MAX_FLOORS) throw new Error(`${what} is not a list of at most ${MAX_FLOORS} entries`)
    return x.map((e) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || e[0].length > 600 || !Number.isSafeInteger(e[1]) || e[1] < 1) throw new Error(`${what} has an invalid entry`)
      return [e[0], e[1]] as [string, number]
    })
  }
  // Retire floors are absent from files written before retire records existed.
  return { release: list(v?.release, 'release floors'), desired: list(v?.desired, 'desired floors'), retire: v?.retire === undefined ? [] : list(v.retire, 'retire floors') }
}

function parseIntent (value: unknown): Stored {
  const v = value as Partial<Record<keyof Stored, unknown>> & { version?: unknown }
  if (v?.version !== 1) throw new Error('unknown version')
  const out = emptyIntent()
  out.floors = parseFloors(v.floors)
  const records = (v.records ?? {}) as Record<string, unknown>
  for (const kind of Object.keys(records)) {
    // A kind this build does not know (written by a newer node) is skipped, not fatal.
    if (!(STORED_RECORD_KINDS as readonly string[]).includes(kind)) { log('ignoring stored %s records: unknown kind', kind); continue }
    const list = records[kind]
    if (!Array.isArray(list) || list.length > MAX_RECORDS) throw new Error(`${kind} records are not a list of at most ${MAX_RECORDS}`)
    out.records[kind as StoredRecordKind] = list.map((e) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || e[0].length > 600 || typeof e[1] !== 'string' || e[1].length > MAX_RECORD_BYTES * 2) throw new Error(`${kind} records have an invalid entry`)
      return [e[0], e[1]] as [string, string]
    })
  }
  if (!Array.isArray(v.halts) || v.halts.length > MAX_HALTS) throw new Error(`halts are not a list of at most ${MAX_HALTS}`)
  out.halts = v.halts.map((h: Partial<HaltRecord>) => {
    if (typeof h?.cell !== 'string' || typeof h.version !== 'string' || typeof h.digest !== 'string' || !Number.isFinite(h.atMs) || typeof h.reason !== 'string' || (h.nodeId !== undefined && typeof h.nodeId !== 'string')) throw new Error('halts have an invalid entry')
    return { cell: h.cell, version: h.version, digest: h.digest, atMs: h.atMs as number, reason: h.reason.slice(0, 1024), ...(h.nodeId !== undefined ? { nodeId: h.nodeId } : {}) }
  })
  const listen = (v.listen ?? {}) as Record<string, unknown>
  for (const k of ['tcp', 'ws', 'webrtc', 'webtransport'] as const) {
    const p = listen[k]
    if (p === undefined) continue
    if (!Number.isInteger(p) || (p as number) < 1 || (p as number) > 65535) throw new Error(`listen.${k} is not a port`)
    out.listen[k] = p as number
  }
  if (!Array.isArray(v.peers ?? []) || (v.peers as unknown[] ?? []).length > MAX_PEERS) throw new Error(`peers are not a list of at most ${MAX_PEERS}`)
  out.peers = ((v.peers ?? []) as unknown[]).filter((p): p is string => typeof p === 'string' && p.length < 1024)
  return out
}
