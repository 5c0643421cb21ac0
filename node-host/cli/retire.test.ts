// `cell retire`'s command line (the fleet behaviour is in test/integration/retire-cli.test.ts and
// retire.test.ts). On the old code `retire` was an unknown command: exit 2 and not in `cell --help`.
import { describeCommandLine } from './cli-harness.ts'

describeCommandLine('retire', {
  usage: /^usage: cell retire <cell>/,
  usageErrors: [
      [['retire'], /expected at least 1 argument/],
      [['retire', 'a', 'b'], /argument/],
      [['retire', 'billing', '--timeout', '0'], /--timeout must be a positive/],
      [['retire', 'billing', '--bogus'], /UsageError/],
      [['retire', 'billing', '--output', 'yaml'], /--output must be text or json/]
  ]
})
