// The example cells, built by the ribosome and run in a real capsid (bwrap where present).
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { findBwrap, probeBwrap } from './sandbox.ts'
import { RemoteHandlerError } from './errors.ts'
import { Harness, buildTo, json, unjson, projectRoot } from './test-helpers.ts'

const bwrapPath = findBwrap()
const sandbox = bwrapPath !== undefined && probeBwrap(bwrapPath) === undefined ? 'bwrap' as const : 'process' as const
const h = new Harness()
let billing = ''
let ledger = ''
const opts = (): { deadlineMs: number } => ({ deadlineMs: Date.now() + 5000 })

beforeAll(async () => {
  await h.setup()
  billing = await buildTo(h.tmp, join(projectRoot, 'examples/billing'), 'cell.ts', 'billing')
  ledger = await buildTo(h.tmp, join(projectRoot, 'examples/ledger'), 'cell.ts', 'ledger')
})
afterEach(async () => { await h.stopAll() })
afterAll(async () => { await h.teardown() })

describe(`example cells in ${sandbox} mode`, () => {
  it('billing charges, quotes, streams history and names invalid input', async () => {
    const { capsid } = await h.start({ artifactPath: billing, sandbox, cell: 'billing' })
    expect(capsid.idempotent).toEqual(['quote'])
    const charge = unjson(await capsid.call('charge', json({ amount: 12.5, currency: 'USD' }), opts()))
    expect(charge).toMatchObject({ amount: 12.5, currency: 'USD' })
    expect(charge.id).toMatch(/^ch_[0-9a-f]{24}$/)
    expect(Number.isNaN(Date.parse(charge.chargedAt))).toBe(false)
    const other = unjson(await capsid.call('charge', json({ amount: 1 }), opts()))
    expect(other.id).not.toBe(charge.id)
    expect(other.currency).toBe('EUR')

    for (const amount of [0, -1, 1e10, 'x', null]) {
      const err = await capsid.call('charge', json({ amount }), opts()).catch(e => e)
      expect(err).toBeInstanceOf(RemoteHandlerError)
      expect(err.name).toBe('InvalidAmountError')
    }
    const q = unjson(await capsid.call('quote', json({ amount: 100 }), opts()))
    expect(q).toEqual({ amount: 100, currency: 'EUR', fee: 3.2, total: 103.2 })

    const history = []
    for await (const c of capsid.stream('history', json({ count: 5 }), opts())) history.push(unjson(c))
    expect(history.map(c => c.amount)).toEqual([10, 20, 30, 40, 50])
  })

  it('ledger appends durably to its volume and survives a restart', async () => {
    const first = await h.start({ artifactPath: ledger, sandbox, cell: 'ledger' })
    const a = unjson(await first.capsid.call('append', json({ account: 'alice', amount: 100, memo: 'opening' }), opts()))
    const b = unjson(await first.capsid.call('append', json({ account: 'alice', amount: -30 }), opts()))
    await first.capsid.call('append', json({ account: 'bob', amount: 5 }), opts())
    expect([a.seq, b.seq]).toEqual([1, 2])
    expect(unjson(await first.capsid.call('balance', json({ account: 'alice' }), opts()))).toEqual({ account: 'alice', balance: 70, entries: 2 })
    const err = await first.capsid.call('append', json({ account: '', amount: 1 }), opts()).catch(e => e)
    expect(err.name).toBe('InvalidEntryError')

    const lines = readFileSync(join(first.dataDir, 'ledger.jsonl'), 'utf8').trim().split('\n').map(l => JSON.parse(l))
    expect(lines.map(l => [l.seq, l.account, l.amount])).toEqual([[1, 'alice', 100], [2, 'alice', -30], [3, 'bob', 5]])
    await first.capsid.stop({ drainMs: 2000 })

    // A new replica on the same volume continues the sequence.
    const second = await h.start({ artifactPath: ledger, sandbox, cell: 'ledger', dataDir: first.dataDir })
    const c = unjson(await second.capsid.call('append', json({ account: 'bob', amount: 7 }), opts()))
    expect(c.seq).toBe(4)
    const bobs = []
    for await (const e of second.capsid.stream('entries', json({ account: 'bob' }), opts())) bobs.push(unjson(e))
    expect(bobs.map(e => [e.seq, e.amount])).toEqual([[3, 5], [4, 7]])
  })
})
