// Prints one plain closing line after the run, `N passed, N failed, N skipped`, with no colour
// codes, so that a reader of CI output (a person, or a tool that only knows common test runners'
// closing lines) can count what ran. Vitest's own summary is kept; this line comes after it.
import type { Reporter, TestModule } from 'vitest/node'

export default class PlainSummaryReporter implements Reporter {
  onTestRunEnd (testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0
    let failed = 0
    let skipped = 0
    for (const module of testModules) {
      // A file that failed to load has no tests, and one whose beforeAll/afterAll failed has its tests
      // skipped or passed: count the file as a failure, not as nothing.
      if (module.state() === 'failed' && ![...module.children.allTests()].some(t => t.result().state === 'failed')) failed++
      for (const test of module.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') passed++
        else if (state === 'failed') failed++
        else skipped++
      }
    }
    failed += unhandledErrors.length
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`)
  }
}
