// The claim acceptor's durable state on a full node: one JSON file, replaced atomically (write a
// temp file, fsync it, rename it over the old one, fsync the directory), so a crash leaves either
// the old state or the new one, never half of either. ClaimAcceptor saves before it answers, so a
// promise it made is on disk before the proposer hears of it.
//
// A file that exists but cannot be read back is NOT treated as empty: an acceptor that forgot its
// promises could vote twice in one round and break the one-writer guarantee. It fails by name and
// the node runs without a vote for claims until an operator looks (removing the file is safe only
// once every lease it could hold has run out: leaseMs + margin, at most ~11 minutes).
import { open, readFile, rename, mkdir, rm } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import { logger } from '@libp2p/logger'
import { CellError, type RetryRule } from '../../core/errors.ts'
import { isClaimId, isFinalTag, isPeerIdString, type AcceptorState, type AcceptorStore, type ClaimSlot } from '../../core/claims/index.ts'

const log = logger('cell:claims:store')

/** A failing save is logged at most this often (the rounds that fail come every few seconds per claim). */
const SAVE_ERROR_LOG_MS = 60_000

/** Most bytes the state file may have (4096 claims of a few hundred bytes each, with room). */
export const MAX_ACCEPTOR_STATE_BYTES = 16 * 1024 * 1024

export class CorruptAcceptorStateError extends CellError {
  static override readonly errorName = 'CorruptAcceptorStateError'
  static override readonly retry: RetryRule = 'never'
}

export class AcceptorFileStore implements AcceptorStore {
  readonly path: string
  private seq = 0
  /** Saves failed since the last one that worked, and when that was last logged. */
  private failures = 0
  private loggedAtMs = -Infinity

  constructor (path: string) {
    this.path = path
  }

  async load (): Promise<AcceptorState | null> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
    if (text.length > MAX_ACCEPTOR_STATE_BYTES) throw new CorruptAcceptorStateError(`${this.path} is larger than ${MAX_ACCEPTOR_STATE_BYTES} bytes`)
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new CorruptAcceptorStateError(`${this.path} is not JSON`, { cause: err })
    }
    return checkState(parsed, this.path)
  }

  /**
   * Saves `state` durably. A node whose saves fail (a full disk) answers no claim round: nothing in
   * the fleet shows it but its owners' view of it as silent, so it says so itself, once a minute,
   * and says when saves work again.
   */
  async save (state: AcceptorState): Promise<void> {
    try {
      await this.write(state)
    } catch (err) {
      this.failures++
      const now = Date.now()
      if (now - this.loggedAtMs >= SAVE_ERROR_LOG_MS) {
        this.loggedAtMs = now
        log.error('cannot save this node\'s claim votes to %s (%s; %d failed save(s) so far): it answers no claim round until it can, and the owners of those claims replace it after --voter-replace-after', this.path, (err as Error).message, this.failures)
      }
      throw err
    }
    if (this.failures > 0) {
      log.error('claim votes saved to %s again, after %d failed save(s)', this.path, this.failures)
      this.failures = 0
      this.loggedAtMs = -Infinity
    }
  }

  private async write (state: AcceptorState): Promise<void> {
    const text = JSON.stringify(state)
    if (text.length > MAX_ACCEPTOR_STATE_BYTES) throw new CorruptAcceptorStateError(`acceptor state of ${text.length} bytes exceeds ${MAX_ACCEPTOR_STATE_BYTES}`)
    const dir = dirname(this.path)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const tmp = join(dir, `.${basename(this.path)}.${process.pid}.${this.seq++}.tmp`)
    try {
      const file = await open(tmp, 'w', 0o600)
      try {
        await file.writeFile(text)
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(tmp, this.path)
    } catch (err) {
      // A full disk: the old state stays, and no partial temp file is left per attempt.
      await rm(tmp, { force: true })
      throw err
    }
    const d = await open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  }
}

function checkState (x: unknown, path: string): AcceptorState {
  const bad = (what: string): never => { throw new CorruptAcceptorStateError(`${path}: ${what}`) }
  if (typeof x !== 'object' || x === null || Array.isArray(x)) bad('not an object')
  const claims = (x as { claims?: unknown }).claims
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) return bad('no claims')
  const out: Record<string, ClaimSlot> = {}
  for (const [id, slot] of Object.entries(claims as Record<string, unknown>)) {
    if (!isClaimId(id)) bad(`"${id.slice(0, 80)}" is not a claim id`)
    const s = slot as Partial<ClaimSlot> | null
    if (typeof s !== 'object' || s === null) return bad(`${id}: not a slot`)
    const ballotOk = (b: unknown): boolean => b === null || (typeof b === 'object' && Number.isSafeInteger((b as { counter?: unknown }).counter) && isPeerIdString(String((b as { proposer?: unknown }).proposer)))
    if (!ballotOk(s.promised ?? null)) bad(`${id}: bad promise`)
    const acc = s.accepted ?? null
    if (acc !== null) {
      const v = acc.value
      if (!ballotOk(acc.ballot) || typeof v !== 'object' || v === null || !isPeerIdString(String(v.owner)) || !Number.isSafeInteger(v.epoch) ||
        !Number.isSafeInteger(v.leaseMs) || (v.state !== 'held' && v.state !== 'released') || !Array.isArray(v.voters) || !v.voters.every(p => isPeerIdString(String(p))) ||
        (v.final !== undefined && !isFinalTag(v.final))) {
        bad(`${id}: bad accepted value`)
      }
    }
    if (typeof s.acceptedAtLocalMs !== 'number' || !Number.isFinite(s.acceptedAtLocalMs)) bad(`${id}: bad accept time`)
    out[id] = { promised: s.promised ?? null, accepted: acc, acceptedAtLocalMs: s.acceptedAtLocalMs as number }
  }
  return { claims: out }
}
