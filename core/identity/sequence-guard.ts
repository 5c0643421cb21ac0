// Per-cell replay guard: remembers the highest sequence number seen for each cell so an old
// (validly signed) release or desired-version record cannot roll a cell back. Keep one guard per
// record kind. The map is bounded; when full, the cell updated least recently is forgotten and
// counted, which re-opens replay for that one cell only — hosts persist `entries()` to narrow it.
import { logger } from '@libp2p/logger'
import { ReplayedRecordError } from './errors.ts'

const log = logger('cell:identity:seq')

export interface SequencedRecord {
  cell: string
  seq: number
}

export interface SequenceGuardInit {
  /** Most cells remembered; default 10 000. */
  maxCells?: number
  /** Highest sequence per cell restored from storage. */
  initial?: Iterable<[string, number]>
}

export class SequenceGuard {
  private readonly highest = new Map<string, number>()
  private readonly maxCells: number
  /** Cells forgotten because the map was full. */
  evicted = 0
  /** Records refused as replays. */
  replayed = 0

  constructor (init: SequenceGuardInit = {}) {
    this.maxCells = Math.max(1, init.maxCells ?? 10_000)
    for (const [cell, seq] of init.initial ?? []) this.remember(cell, seq)
  }

  /** Highest sequence number seen for `cell`, or 0. */
  highestSeq (cell: string): number {
    return this.highest.get(cell) ?? 0
  }

  /** True and remembered when `record.seq` is above every seq seen for its cell; false otherwise. */
  accept (record: SequencedRecord): boolean {
    if (!Number.isSafeInteger(record.seq) || record.seq < 1) return false
    if (record.seq <= this.highestSeq(record.cell)) {
      this.replayed++
      log('refused %s seq %d <= %d', record.cell, record.seq, this.highestSeq(record.cell))
      return false
    }
    this.remember(record.cell, record.seq)
    return true
  }

  /** As `accept`, but throws ReplayedRecordError instead of returning false. */
  acceptOrThrow (record: SequencedRecord): void {
    if (!this.accept(record)) {
      throw new ReplayedRecordError(`${record.cell} seq ${record.seq} is not above ${this.highestSeq(record.cell)}`)
    }
  }

  /** Snapshot for persistence. */
  entries (): Array<[string, number]> {
    return [...this.highest]
  }

  get size (): number {
    return this.highest.size
  }

  private remember (cell: string, seq: number): void {
    // Delete-then-set keeps Map insertion order = update order, so the first key is the stalest.
    this.highest.delete(cell)
    this.highest.set(cell, seq)
    while (this.highest.size > this.maxCells) {
      const stalest = this.highest.keys().next().value as string
      this.highest.delete(stalest)
      this.evicted++
      log('forgot %s: sequence guard full (%d cells)', stalest, this.maxCells)
    }
  }
}
