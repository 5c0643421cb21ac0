// `cell --version` and `cell completion bash|zsh`: the scripts list every command of `cell --help`
// and each command's options as its --help names them, and bash completes with them for real.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeTempDir, runCli } from './cli-harness.ts'
import { optionsOf } from './completion.ts'

let home: { path: string, remove: () => Promise<void> }
beforeAll(async () => { home = await makeTempDir('cell-completion-') })
afterAll(async () => { await home.remove() })

async function sh (shell: string, script: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(shell, ['-c', script], { timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

describe('cell --version and cell completion', () => {
  it('--version prints the package version', async () => {
    const r = await runCli(['--version'], { home: home.path })
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^cell 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/)
  })

  it('takes options from a help text', () => {
    expect(optionsOf('usage: cell x [--dir DIR] [--force-version]\n  --wait N  how long (--wait 0 returns)')).toEqual(['--dir', '--force-version', '--help', '--wait'])
  })

  it('bash: every command and its options complete in a real bash', async () => {
    const r = await runCli(['completion', 'bash'], { home: home.path })
    expect(r.code, r.stderr).toBe(0)
    const file = join(home.path, 'cell.bash')
    await writeFile(file, r.stdout)
    const commands = [...(await runCli(['--help'], { home: home.path })).stdout.matchAll(/^ {2}cell (\S+)/gm)].map(m => m[1])
    expect(commands).toContain('rollback')
    const complete = async (...words: string[]): Promise<string[]> => {
      const res = await sh('bash', `source ${file}; COMP_WORDS=(${words.map(w => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _cell; printf '%s\\n' "\${COMPREPLY[@]}"`)
      expect(res.stderr).toBe('')
      return res.stdout.split('\n').filter(Boolean)
    }
    expect((await complete('cell', '')).sort()).toEqual([...commands, '--help', '--version'].sort())
    expect(await complete('cell', 'rol')).toEqual(['rollback'])
    expect(await complete('cell', 'publish', '--for')).toEqual(['--force-version'])
    expect(await complete('cell', 'call', '--out')).toEqual(['--output'])
    expect(await complete('cell', 'completion', '')).toEqual(['bash', 'zsh'])
  }, 60_000)

  it('zsh: a script zsh parses, naming every command; another shell is a usage error', async () => {
    const r = await runCli(['completion', 'zsh'], { home: home.path })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^#compdef cell\n/)
    expect(r.stdout).toMatch(/'publish:sign a release/)
    expect(r.stdout).toMatch(/publish\) opts=\(.*--force-version.*\)/)
    const file = join(home.path, '_cell')
    await writeFile(file, r.stdout)
    const zsh = await sh('sh', 'command -v zsh')
    if (zsh.code === 0) expect((await sh('zsh', `zsh -n ${file}`)).code).toBe(0)
    const fish = await runCli(['completion', 'fish'], { home: home.path })
    expect(fish.code).toBe(2)
    expect(fish.stderr).toMatch(/^UsageError: shell must be bash or zsh/)
  }, 60_000)
})
