// Argument handling shared by the keygen, build and grant commands: strict flag parsing, `--help`,
// and the usage-error convention (message plus the command's help on stderr, exit code 2). Named
// runtime failures are thrown instead and main.ts prints them as `Name: message` with exit code 1.
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { CellError } from '../../core/errors.ts'

/** The command line is wrong (unknown flag, bad role, bad duration…): exit 2, nothing was done. */
export class UsageError extends CellError { static override readonly errorName = 'UsageError' }

export const EXIT_OK = 0
export const EXIT_USAGE = 2

/** `$CELL_HOME`, else `~/.cell`: where keygen puts the authority key and grant/publish look for it. */
export function cellHome (env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.CELL_HOME
  return fromEnv != null && fromEnv !== '' ? fromEnv : join(homedir(), '.cell')
}

export function defaultAuthorityKeyPath (env: NodeJS.ProcessEnv = process.env): string {
  return join(cellHome(env), 'authority.key')
}

/** Prints a usage error and the help's synopsis line on stderr; returns the exit code to hand back. */
export function usageFailure (err: UsageError | string, help: string): number {
  const message = typeof err === 'string' ? err : err.message
  process.stderr.write(`UsageError: ${message}\n${help.split('\n')[0]}\n(--help for all options)\n`)
  return EXIT_USAGE
}

type Options = NonNullable<ParseArgsConfig['options']>

export interface ParsedCommand<O extends Options> {
  values: ReturnType<typeof parseArgs<{ options: O & { help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }>>['values']
  positionals: string[]
}

/**
 * Parses `argv` strictly against `options` (plus `--help/-h`). Returns the parsed command, or an
 * exit code when the caller should stop: 0 after printing help, 2 after a usage error.
 */
export function parseCommand<O extends Options> (
  argv: string[], options: O, help: string, positionals: { min: number, max: number }
): ParsedCommand<O> | number {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (err) {
    // node:util reports every kind of bad command line with an ERR_PARSE_ARGS_* code.
    if (String((err as { code?: unknown })?.code).startsWith('ERR_PARSE_ARGS')) return usageFailure((err as Error).message, help)
    throw err
  }
  if ((parsed.values as { help?: boolean }).help === true) {
    process.stdout.write(help + '\n')
    return EXIT_OK
  }
  const n = parsed.positionals.length
  if (n < positionals.min) return usageFailure(`expected at least ${positionals.min} argument(s), got ${n}`, help)
  if (n > positionals.max) return usageFailure(`unexpected argument "${parsed.positionals[positionals.max]}"`, help)
  return { values: parsed.values as ParsedCommand<O>['values'], positionals: parsed.positionals }
}
