import { describe, expect, it } from 'vitest'
import { editDistance, nearestNames } from './call-readiness.ts'

describe('did you mean, for cell names', () => {
  it('suggests close names only, nearest first', () => {
    expect(editDistance('billng', 'billing')).toBe(1)
    expect(nearestNames('billng', ['ledger', 'billing', 'billings'])).toEqual(['billing', 'billings'])
    expect(nearestNames('LEDGER', ['ledger'])).toEqual(['ledger'])
    expect(nearestNames('payments', ['billing', 'ledger'])).toEqual([])
    expect(nearestNames('x'.repeat(300), ['x'])).toEqual([])
  })
})
