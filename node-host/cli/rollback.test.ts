import { describeCommandLine } from './cli-harness.ts'

describeCommandLine('rollback', {
  usage: /^usage: cell rollback <cell> <version>/,
  usageErrors: [
      [['rollback', 'billing'], /expected at least 2 argument/],
      [['rollback', 'billing', 'one.two'], /not a semantic version/],
      [['rollback', 'billing', '1.0.0', '--digest', 'abc'], /--digest must be 64 hex/],
      [['rollback', 'billing', '1.0.0', '--wait', 'many'], /--wait must be a whole number/],
      [['rollback', 'billing', '1.0.0', '--timeout', '0'], /--timeout must be a positive/],
      [['rollback', 'billing', '1.0.0', '--bogus'], /UsageError/],
      [['rollback', 'billing', '1.0.0', '--output', 'yaml'], /--output must be text or json/]
  ]
})
