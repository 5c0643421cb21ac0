// The stateful example cell: an append-only ledger in the replica's volume. Every append is
// fsynced before it is acknowledged, so a snapshot of /cell/data never loses an acknowledged entry.
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { defineCell } from '../../core/cell.ts'
import type { CellContext } from '../../core/cell.ts'
import { CellError } from '../../core/errors.ts'

export class InvalidEntryError extends CellError { static override readonly errorName = 'InvalidEntryError' }
export class LedgerCorruptError extends CellError { static override readonly errorName = 'LedgerCorruptError' }

const MAX_ABS_AMOUNT = 1e12
const MAX_ACCOUNT_CHARS = 128
const MAX_MEMO_CHARS = 1024
const MAX_STREAMED = 100_000
const MAX_PAGE = 1000

export interface Entry { seq: number, account: string, amount: number, memo?: string, at: string }

// The capsid mounts the volume at /cell/data; in process mode it passes the real path instead.
const dataDir = (): string => process.env.CELL_DATA_DIR ?? '/cell/data'
const ledgerPath = (): string => join(dataDir(), 'ledger.jsonl')

async function readEntries (): Promise<Entry[]> {
  let text: string
  try {
    text = await readFile(ledgerPath(), 'utf8')
  } catch (err: any) {
    if (err?.code === 'ENOENT') return []
    throw err
  }
  const entries: Entry[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === '') continue
    try {
      entries.push(JSON.parse(lines[i]))
    } catch (err) {
      // A torn last line is a write that was never acknowledged; anything earlier is corruption.
      if (i === lines.length - 1) break
      throw new LedgerCorruptError(`ledger line ${i + 1} is not JSON`, { cause: err })
    }
  }
  return entries
}

// Appends are serialised so sequence numbers are dense and lines never interleave.
let tail: Promise<unknown> = Promise.resolve()
let nextSeq: number | undefined

const Ledger = defineCell({
  async append (req: { account: string, amount: number, memo?: string }, ctx: CellContext): Promise<Entry> {
    const { account, amount, memo } = req ?? {}
    if (typeof account !== 'string' || account.length === 0 || account.length > MAX_ACCOUNT_CHARS) {
      throw new InvalidEntryError(`account must be a non-empty string of at most ${MAX_ACCOUNT_CHARS} characters`)
    }
    if (typeof amount !== 'number' || !Number.isFinite(amount) || amount === 0 || Math.abs(amount) > MAX_ABS_AMOUNT) {
      throw new InvalidEntryError('amount must be a non-zero finite number')
    }
    if (memo !== undefined && (typeof memo !== 'string' || memo.length > MAX_MEMO_CHARS)) {
      throw new InvalidEntryError(`memo must be a string of at most ${MAX_MEMO_CHARS} characters`)
    }
    const run = tail.then(async () => {
      ctx.signal.throwIfAborted()
      if (nextSeq === undefined) {
        const existing = await readEntries()
        nextSeq = (existing.at(-1)?.seq ?? 0) + 1
      }
      const entry: Entry = { seq: nextSeq, account, amount, ...(memo !== undefined ? { memo } : {}), at: new Date().toISOString() }
      const fh = await open(ledgerPath(), 'a', 0o600)
      try {
        await fh.write(JSON.stringify(entry) + '\n')
        await fh.sync()
      } finally {
        await fh.close()
      }
      nextSeq++
      return entry
    })
    tail = run.catch(() => {})
    return await run
  },

  async balance (req: { account: string }, _ctx: CellContext): Promise<{ account: string, balance: number, entries: number }> {
    const account = req?.account
    if (typeof account !== 'string') throw new InvalidEntryError('account must be a string')
    await tail
    let balance = 0
    let count = 0
    for (const e of await readEntries()) {
      if (e.account !== account) continue
      balance += e.amount
      count++
    }
    return { account, balance, entries: count }
  },

  /** Up to `limit` (at most 1000) entries from `fromSeq` on, oldest first: a page of the log without a stream. */
  async list (req: { fromSeq?: number, limit?: number }, _ctx: CellContext): Promise<Entry[]> {
    const fromSeq = req?.fromSeq ?? 1
    const limit = Math.min(Math.max(1, req?.limit ?? 100), MAX_PAGE)
    if (typeof fromSeq !== 'number' || !Number.isInteger(fromSeq)) throw new InvalidEntryError('fromSeq must be an integer')
    await tail
    return (await readEntries()).filter(e => e.seq >= fromSeq).slice(0, limit)
  },

  async * entries (req: { account?: string, fromSeq?: number }, ctx: CellContext): AsyncGenerator<Entry> {
    await tail
    let sent = 0
    for (const e of await readEntries()) {
      ctx.signal.throwIfAborted()
      if (req?.account !== undefined && e.account !== req.account) continue
      if (req?.fromSeq !== undefined && e.seq < req.fromSeq) continue
      if (sent++ >= MAX_STREAMED) return
      yield e
    }
  }
}, { idempotent: ['balance', 'list'] })

export default Ledger
