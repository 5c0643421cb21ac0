import { describe, expect, it } from 'vitest'
import { manifestNotices, OTLP_TRACE_IGNORED, parseManifest } from './index.ts'

const manifest = (...telemetry: string[]): string => ['[cell]', 'name = "billing"', '[cell.authority]', `ed25519 = "${'ab'.repeat(32)}"`, '[cell.telemetry]', ...telemetry].join('\n')

describe('manifest notices', () => {
  it('accepts otlp_trace = true (signed releases must still load) but says it is ignored and why', () => {
    const m = parseManifest(manifest('otlp_trace = true'))
    expect(m.telemetry.otlpTrace).toBe(true)
    expect(manifestNotices(m)).toEqual([OTLP_TRACE_IGNORED])
    expect(OTLP_TRACE_IGNORED).toMatch(/deprecated and ignored/)
    expect(OTLP_TRACE_IGNORED).toMatch(/cell up --otlp/)
  })

  it('has nothing to say about otlp_trace = false or an absent key', () => {
    expect(manifestNotices(parseManifest(manifest('otlp_trace = false')))).toEqual([])
    expect(manifestNotices(parseManifest(manifest()))).toEqual([])
  })
})
