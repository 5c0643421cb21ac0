import { describe, it, expect } from 'vitest'
import { isUnsampledTraceparent, unsampledParentCheck } from './tracer.ts'

const TRACE = '0af7651916cd43dd8448eb211c80319c'
const SPAN = 'b7ad6b7169203331'

describe('unsampledParentCheck', () => {
  it('says unsampled only for a well-formed traceparent with the sampled flag clear, and remembers the last one', () => {
    const unsampled = unsampledParentCheck()
    const off = `00-${TRACE}-${SPAN}-00`
    const on = `00-${TRACE}-${SPAN}-01`
    expect(unsampled(undefined)).toBe(false)
    expect(unsampled(on)).toBe(false)
    expect(unsampled(`00-${'0'.repeat(32)}-${SPAN}-00`)).toBe(false)
    expect(unsampled('garbage')).toBe(false)
    expect(unsampled(off)).toBe(true)
    expect(unsampled(off)).toBe(true)
    // A sampled parent after an unsampled one is still seen as sampled.
    expect(unsampled(on)).toBe(false)
    expect(isUnsampledTraceparent(off)).toBe(true)
  })
})
