import { describe, it, expect, vi } from 'vitest'
import type { TestModule } from 'vitest/node'
import PlainSummaryReporter from './plain-summary.ts'

/** A stand-in for vitest's TestModule: its state and its tests' states. */
function module (state: string, tests: string[]): TestModule {
  return { state: () => state, children: { allTests: () => tests.map(s => ({ result: () => ({ state: s }) })).values() } } as unknown as TestModule
}

function summary (modules: TestModule[], unhandled: unknown[] = []): string {
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
  try {
    new PlainSummaryReporter().onTestRunEnd(modules, unhandled)
    return String(write.mock.calls.at(-1)?.[0]).trim()
  } finally {
    write.mockRestore()
  }
}

describe('the plain closing line', () => {
  it('counts tests by state', () => {
    expect(summary([module('passed', ['passed', 'passed', 'skipped']), module('failed', ['passed', 'failed'])])).toBe('3 passed, 1 failed, 1 skipped')
  })

  it('counts a file that failed without a failed test (it did not load, or its beforeAll threw) as a failure', () => {
    expect(summary([module('failed', []), module('failed', ['skipped', 'skipped']), module('passed', ['passed'])])).toBe('1 passed, 2 failed, 2 skipped')
  })

  it('counts unhandled errors as failures', () => {
    expect(summary([module('passed', ['passed'])], [new Error('late')])).toBe('1 passed, 1 failed, 0 skipped')
  })
})
