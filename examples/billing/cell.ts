// The stateless example cell: charges and quotes are pure functions of the request, so any
// replica can answer and `quote` is safe to retry elsewhere.
import { defineCell } from '../../core/cell.ts'
import type { CellContext } from '../../core/cell.ts'
import { CellError } from '../../core/errors.ts'

export class InvalidAmountError extends CellError { static override readonly errorName = 'InvalidAmountError' }
export class InvalidCurrencyError extends CellError { static override readonly errorName = 'InvalidCurrencyError' }

const MAX_AMOUNT = 1e9
const CURRENCY = /^[A-Z]{3}$/
/** Flat fee rate applied by `quote`; a real cell would read it from config. */
const FEE_RATE = 0.029
const FEE_FIXED = 0.3
const MAX_HISTORY = 1000

export interface ChargeRequest { amount: number, currency?: string }
export interface Charge { id: string, amount: number, currency: string, chargedAt: string }
export interface Quote { amount: number, currency: string, fee: number, total: number }

function checkAmount (amount: unknown): number {
  if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0 || amount > MAX_AMOUNT) {
    throw new InvalidAmountError(`amount must be a positive finite number at most ${MAX_AMOUNT}`)
  }
  return amount
}

function checkCurrency (currency: unknown): string {
  const c = currency ?? 'EUR'
  if (typeof c !== 'string' || !CURRENCY.test(c)) throw new InvalidCurrencyError('currency must be a three-letter ISO 4217 code')
  return c
}

function randomId (): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12))
  return 'ch_' + Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

const round2 = (n: number): number => Math.round(n * 100) / 100

const Billing = defineCell({
  async charge (req: ChargeRequest, _ctx: CellContext): Promise<Charge> {
    const amount = checkAmount(req?.amount)
    const currency = checkCurrency(req?.currency)
    return { id: randomId(), amount, currency, chargedAt: new Date().toISOString() }
  },

  async quote (req: ChargeRequest, _ctx: CellContext): Promise<Quote> {
    const amount = checkAmount(req?.amount)
    const currency = checkCurrency(req?.currency)
    const fee = round2(amount * FEE_RATE + FEE_FIXED)
    return { amount, currency, fee, total: round2(amount + fee) }
  },

  /** A stream of synthetic past charges (the cell is stateless; a real one would query a store). */
  async * history (req: { count?: number, currency?: string }, ctx: CellContext): AsyncGenerator<Charge> {
    const count = Math.min(Math.max(0, Math.floor(req?.count ?? 10)), MAX_HISTORY)
    const currency = checkCurrency(req?.currency)
    const now = Date.now()
    for (let i = 0; i < count; i++) {
      ctx.signal.throwIfAborted()
      yield { id: randomId(), amount: (i + 1) * 10, currency, chargedAt: new Date(now - i * 60_000).toISOString() }
    }
  }
}, { idempotent: ['quote'] })

export default Billing
