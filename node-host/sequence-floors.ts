// The highest release and desired-version sequence numbers this node accepted, per (authority, cell),
// kept in `<data>/sequence-floors.json` so that after a restart a replayed older record (validly
// signed, but superseded) is still refused: core/identity's SequenceGuard, one per record kind,
// handed to the fleet view as its floors. Written atomically (temp file + rename), bounded.
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { CellError } from '../core/errors.ts'
import { SequenceGuard } from '../core/identity/index.ts'

const log = logger('cell:node:seq')
const FILE = 'sequence-floors.json'
/** Entries kept per kind; SequenceGuard forgets the least recently updated beyond it. */
const MAX_ENTRIES = 10_000
const MAX_FILE_BYTES = 4 * 1024 * 1024

/** The floors file exists but is not what this node wrote (edited, truncated by a full disk). */
export class MalformedSequenceFloorsError extends CellError { static override readonly errorName = 'MalformedSequenceFloorsError' }

export interface SequenceFloors {
  release: SequenceGuard
  desired: SequenceGuard
  /** Writes the floors if they changed since the last write. */
  flush: () => Promise<void>
}

export async function loadSequenceFloors (dataDir: string): Promise<SequenceFloors> {
  const path = join(dataDir, FILE)
  let stored: { release: Array<[string, number]>, desired: Array<[string, number]> } = { release: [], desired: [] }
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (text !== undefined) {
    if (text.length > MAX_FILE_BYTES) throw new MalformedSequenceFloorsError(`${path} is larger than ${MAX_FILE_BYTES} bytes`)
    try {
      stored = parse(JSON.parse(text))
    } catch (err) {
      // Refuse to start rather than forget every floor: the operator decides (delete the file to reset).
      throw new MalformedSequenceFloorsError(`${path} is not a sequence-floors file: ${(err as Error).message}; remove it to start without replay floors`, { cause: err })
    }
  }
  const release = new SequenceGuard({ maxCells: MAX_ENTRIES, initial: stored.release })
  const desired = new SequenceGuard({ maxCells: MAX_ENTRIES, initial: stored.desired })
  let written = JSON.stringify({ release: release.entries(), desired: desired.entries() })
  let writing: Promise<void> = Promise.resolve()
  const flush = async (): Promise<void> => {
    writing = writing.then(async () => {
      const next = JSON.stringify({ release: release.entries(), desired: desired.entries() })
      if (next === written) return
      const tmp = `${path}.tmp`
      await writeFile(tmp, next, { mode: 0o600 })
      await rename(tmp, path)
      written = next
    }).catch((err) => { log.error('writing %s failed: %e', path, err) })
    await writing
  }
  return { release, desired, flush }
}

function parse (value: unknown): { release: Array<[string, number]>, desired: Array<[string, number]> } {
  const v = value as { release?: unknown, desired?: unknown }
  const list = (x: unknown, what: string): Array<[string, number]> => {
    if (!Array.isArray(x) || x.length > MAX_ENTRIES) throw new Error(`${what} is not a list of at most ${MAX_ENTRIES} entries`)
    return x.map((e) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || e[0].length > 600 || !Number.isSafeInteger(e[1]) || e[1] < 1) throw new Error(`${what} has an invalid entry`)
      return [e[0], e[1]] as [string, number]
    })
  }
  return { release: list(v?.release, 'release'), desired: list(v?.desired, 'desired') }
}
