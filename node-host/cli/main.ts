// `cell` command dispatcher. Each command lives in its own module and is loaded on demand so that
// `cell keygen` does not pay for starting libp2p.
import { CellError } from '../../core/errors.ts'

const COMMANDS: Record<string, { summary: string, load: () => Promise<{ run: (argv: string[]) => Promise<number> }> }> = {
  keygen: { summary: 'make an authority key pair and print the public key for Cell.toml', load: async () => await import('./keygen.ts') },
  up: { summary: 'start a full node', load: async () => await import('./up.ts') },
  build: { summary: 'bundle a cell into one artifact and print its sha256', load: async () => await import('./build.ts') },
  publish: { summary: 'sign a release of the cell in this directory and announce it to the fleet', load: async () => await import('./publish.ts') },
  rollback: { summary: 'run an earlier release again: cell rollback <cell> <version> [--digest HEX]', load: async () => await import('./rollback.ts') },
  retire: { summary: 'stop a cell everywhere until its next publish: cell retire <cell>', load: async () => await import('./retire.ts') },
  call: { summary: 'call a cell method: cell call <cell> <method> \'<json>\'', load: async () => await import('./call.ts') },
  restore: { summary: 'restore a stateful cell\'s snapshot on the node that owns its claim (operator): cell restore <cell> <snapshot>', load: async () => await import('./restore.ts') },
  snapshots: { summary: 'a stateful cell\'s snapshots: time, epoch, size, safe or not, held by: cell snapshots <cell>', load: async () => await import('./snapshots.ts') },
  grant: { summary: 'issue a grant: cell grant <host|caller|operator> <peer-id> --ttl 7d', load: async () => await import('./grant.ts') },
  logs: { summary: 'print (-f: follow) every replica\'s stdout/stderr: cell logs <cell> [-f]', load: async () => await import('./logs.ts') },
  top: { summary: 'the fleet\'s nodes and cells, refreshed in place: cell top [--once]', load: async () => await import('./top.ts') },
  status: { summary: 'why a cell runs what it runs, replica by replica and node by node: cell status [<cell>]', load: async () => await import('./status.ts') },
  completion: {
    summary: 'a shell completion script: source <(cell completion bash|zsh)',
    load: async () => {
      const completion = await import('./completion.ts')
      const summaries = Object.fromEntries(Object.entries(COMMANDS).map(([name, c]) => [name, c.summary]))
      return { run: async (argv: string[]) => await completion.run(argv, summaries, async (name) => await COMMANDS[name].load()) }
    }
  }
}

/** `cell --version`: this package's version, and the Node that runs it. */
async function version (): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return `cell ${pkg.version} (node ${process.version})`
}

function usage (): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  cell ${name.padEnd(8)} ${c.summary}`)
  return ['usage: cell <command> [options]', '', ...lines, '', 'Run `cell <command> --help` for its options; `cell --version` prints the version.'].join('\n')
}

async function main (argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name == null || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n')
    return name == null ? 2 : 0
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`${await version()}\n`)
    return 0
  }
  const command = COMMANDS[name]
  if (command == null) {
    const { suggestCommand } = await import('./suggest.ts')
    const meant = suggestCommand(name, Object.keys(COMMANDS))
    process.stderr.write(`cell: unknown command "${name}"${meant !== undefined ? `; did you mean \`cell ${meant}\`?` : ''}\n\n${usage()}\n`)
    return 2
  }
  const mod = await command.load()
  return await mod.run(rest)
}

/** Exit status when stdout's reader went away: what a shell reports for a process killed by SIGPIPE. */
const CLOSED_STDOUT_EXIT = 141

// A reader that goes away (`cell logs -f | head`, `cell status | head -3`) closes stdout: stop
// quietly, as a process killed by SIGPIPE would, instead of an unhandled EPIPE with a stack. A node
// (`cell up`) keeps running and drops its output: its replicas must not die with a log pipe.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err
  if (process.argv[2] !== 'up') process.exit(CLOSED_STDOUT_EXIT)
})

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  // Named errors are the interface: print the class name and message, never a stack, for known failures.
  if (err instanceof CellError) {
    process.stderr.write(`${err.name}: ${err.message}\n`)
  } else if (err instanceof Error && err.name === 'TypeError' && (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    process.stderr.write(`UsageError: ${err.message}\n`)
  } else {
    process.stderr.write(`${(err as Error)?.name ?? 'Error'}: ${(err as Error)?.message ?? String(err)}\n`)
    if (process.env.CELL_DEBUG != null) console.error(err)
  }
  process.exitCode = 1
}
