// Tests publish the example cells under keys they generate: copy a cell directory to a temp dir,
// point its relative imports of the project at absolute paths, and set its authority.
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { withAuthority } from '../../node-host/publisher.ts'

const projectRoot = resolve(import.meta.dirname, '..', '..')

export async function stageCell (source: string, target: string, authority: string): Promise<string> {
  await mkdir(target, { recursive: true })
  for (const name of await readdir(source)) {
    if (name.endsWith('.test.ts')) continue
    let text = await readFile(join(source, name), 'utf8')
    if (name === 'Cell.toml') text = withAuthority(text, authority)
    else text = text.replace(/from '((?:\.\.\/)+)(core\/[^']+)'/g, (_m, _dots: string, rest: string) => `from '${join(projectRoot, rest)}'`)
    await writeFile(join(target, name), text)
  }
  return target
}
