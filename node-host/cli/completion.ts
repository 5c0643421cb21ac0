// `cell completion bash|zsh`: a shell completion script for the commands and their options. The
// options come from each command's own `--help` text at the time the script is made, so the
// script cannot drift from the commands (load it again after an upgrade).
import { parseCommand, usageFailure } from './usage.ts'

const HELP = `usage: cell completion bash|zsh

Prints a completion script for the shell: commands, then each command's options (from its --help).
  bash:  source <(npx cell completion bash)     (or save it under /etc/bash_completion.d/cell)
  zsh:   source <(npx cell completion zsh)      (or save it as _cell in a directory of $fpath)

options:
  -h, --help   show this help`

export type CommandLoader = (name: string) => Promise<{ run: (argv: string[]) => Promise<number> }>

/** The long options a help text mentions, sorted, with --help. */
export function optionsOf (help: string): string[] {
  return [...new Set([...(help.match(/--[a-z][a-z0-9-]*/g) ?? []), '--help'])].sort()
}

/** What `cell <command> --help` prints, captured instead of written. */
async function helpOf (load: CommandLoader, name: string): Promise<string> {
  const mod = await load(name)
  const write = process.stdout.write.bind(process.stdout)
  let text = ''
  process.stdout.write = ((chunk: string | Uint8Array) => { text += typeof chunk === 'string' ? chunk : new TextDecoder().decode(chunk); return true }) as typeof process.stdout.write
  try {
    await mod.run(['--help'])
  } finally {
    process.stdout.write = write
  }
  return text
}

const word = (s: string): string => s.replace(/[^A-Za-z0-9_-]/g, '')

export function bashScript (commands: Record<string, string[]>): string {
  const cases = Object.entries(commands).map(([name, opts]) => `    ${word(name)}) opts="${opts.map(word).join(' ')}" ;;`).join('\n')
  return `# bash completion for cell (\`cell completion bash\`)
_cell() {
  local cur=\${COMP_WORDS[COMP_CWORD]} opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${Object.keys(commands).map(word).join(' ')} completion --help --version" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
    completion) opts="bash zsh" ;;
  esac
  if [[ "$cur" == -* || "\${COMP_WORDS[1]}" == completion ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _cell cell
`
}

export function zshScript (commands: Record<string, string[]>, summaries: Record<string, string>): string {
  const described = [...Object.keys(commands), 'completion'].map(name => `    '${word(name)}:${(summaries[name] ?? '').replace(/['\\]/g, '').replace(/:/g, ' -')}'`).join('\n')
  const cases = Object.entries(commands).map(([name, opts]) => `    ${word(name)}) opts=(${opts.map(word).join(' ')}) ;;`).join('\n')
  return `#compdef cell
# zsh completion for cell (\`cell completion zsh\`)
_cell() {
  local -a commands opts
  commands=(
${described}
  )
  if (( CURRENT == 2 )); then
    _describe 'command' commands
    return
  fi
  case $words[2] in
${cases}
    completion) compadd bash zsh; return ;;
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- $opts
  else
    _files
  fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _cell "$@"
else
  compdef _cell cell
fi
`
}

export async function run (argv: string[], commands: Record<string, string>, load: CommandLoader): Promise<number> {
  const parsed = parseCommand(argv, {}, HELP, { min: 1, max: 1 })
  if (typeof parsed === 'number') return parsed
  const shell = parsed.positionals[0]
  if (shell !== 'bash' && shell !== 'zsh') return usageFailure(`shell must be bash or zsh, got "${shell}"`, HELP)
  const options: Record<string, string[]> = {}
  for (const name of Object.keys(commands)) {
    if (name === 'completion') continue
    options[name] = optionsOf(await helpOf(load, name))
  }
  process.stdout.write(shell === 'bash' ? bashScript(options) : zshScript(options, commands))
  return 0
}
