// Every error class in the project has its own literal name, and no two classes share one.
// Bundlers rename classes (`class NoReplicaError` becomes `var DG = class …` in the production
// dashboard), so the name a peer sends and the registry keys on must be a literal the class
// declares (`static override readonly errorName = 'NoReplicaError'`), not the constructor's name.
// The source tree is walked, so a new file or class cannot escape the check.
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { CellError } from '../../core/errors.ts'
import { ERROR_WORDS } from '../../browser-host/error-words.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const DIRS = ['core', 'node-host', 'browser-host', 'edge-host', 'dashboard/src', 'examples', 'test']
const RULES = new Set(['never', 'nothing-ran', 'idempotent'])

interface ErrorClass { file: string, line: number, name: string, base: string, declared: string | undefined, exported: boolean }

function sourceFiles (dir: string): string[] {
  let entries
  try { entries = readdirSync(join(ROOT, dir), { withFileTypes: true }) } catch { return [] }
  return entries.flatMap(e => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'dist' ? [] : sourceFiles(path)
    return /\.(ts|tsx|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : []
  })
}

/** Test code may throw plain Error subclasses of its own (shims, fixtures); shipped code may not. */
function isTestCode (file: string): boolean {
  return file.startsWith('test/') || /\.test\.tsx?$/.test(file) || file.includes('/fixtures/')
}

/** The body of the class whose `{` is at `open`: up to the matching `}` (strings and comments are rare enough in class heads to ignore). */
function bodyAt (text: string, open: number): string {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    if (text[i] === '{') depth++
    else if (text[i] === '}' && --depth === 0) return text.slice(open + 1, i)
  }
  return text.slice(open + 1)
}

function classesIn (file: string): Array<Omit<ErrorClass, 'declared'> & { body: string }> {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const found = []
  for (const m of text.matchAll(/^[ \t]*(export )?class (\w+) extends (\w+)[^{\n]*\{/gm)) {
    found.push({
      file,
      line: text.slice(0, m.index).split('\n').length,
      name: m[2],
      base: m[3],
      exported: m[1] !== undefined,
      body: bodyAt(text, m.index + m[0].length - 1)
    })
  }
  return found
}

const all = DIRS.flatMap(sourceFiles).map(f => relative(ROOT, join(ROOT, f))).sort().flatMap(classesIn)
// Error classes: those extending Error or CellError, and, transitively, anything extending one of them.
const errorNames = new Set(['Error', 'CellError'])
for (let grew = true; grew;) {
  grew = false
  for (const c of all) {
    if (errorNames.has(c.base) && !errorNames.has(c.name)) { errorNames.add(c.name); grew = true }
  }
}
const runner = all.filter(c => c.file === 'node-host/capsid/runner.mjs')
const errors: ErrorClass[] = all
  .filter(c => errorNames.has(c.base) && c.file !== 'node-host/capsid/runner.mjs' && !(c.base === 'Error' && c.name === 'CellError'))
  .filter(c => !(c.base === 'Error' && isTestCode(c.file)))
  .map(({ body, ...c }) => ({ ...c, declared: /static override readonly errorName(?:: string)? = '(\w+)'/.exec(body)?.[1] }))
const where = (c: ErrorClass): string => `${c.file}:${c.line} ${c.name}`

describe('error class names', () => {
  it('finds the project\'s error classes', () => {
    // Guards the walk itself: if the tree moved and the regex found nothing, every check would pass.
    expect(errors.length).toBeGreaterThan(100)
    expect(errors.map(c => c.name)).toEqual(expect.arrayContaining(['NoReplicaError', 'UnknownAuthorityError', 'RemoteError']))
  })

  it('every shipped error class extends CellError, not Error', () => {
    expect(errors.filter(c => c.base === 'Error').map(where)).toEqual([])
  })

  it('every error class declares its own literal errorName equal to the class identifier', () => {
    const wrong = errors.filter(c => c.declared !== c.name).map(c => `${where(c)} declares ${c.declared ?? 'no errorName'}`)
    expect(wrong).toEqual([])
  })

  it('no two classes share a name, anywhere in the project', () => {
    const byName = new Map<string, string[]>()
    for (const c of errors) byName.set(c.name, [...(byName.get(c.name) ?? []), where(c)])
    expect([...byName.values()].filter(places => places.length > 1)).toEqual([])
  })

  it('the capsid runner (plain JS in the sandbox) sends literal names too', () => {
    expect(runner.length).toBeGreaterThan(0)
    const wrong = runner.filter(c => !new RegExp(`static errorName = '${c.name}'`).test(c.body)).map(c => `${c.file}:${c.line} ${c.name}`)
    expect(wrong).toEqual([])
  })

  it('exported classes carry that name at run time, with a retry rule', async () => {
    const files = [...new Set(errors.filter(c => c.exported && !isTestCode(c.file)).map(c => c.file))]
    const wrong: string[] = []
    for (const file of files) {
      const mod = await import(pathToFileURL(join(ROOT, file)).href) as Record<string, unknown>
      for (const c of errors.filter(e => e.file === file && e.exported)) {
        const cls = mod[c.name] as (typeof CellError) | undefined
        if (typeof cls !== 'function' || !(cls.prototype instanceof CellError)) { wrong.push(`${where(c)} is not a CellError at run time`); continue }
        if (!Object.hasOwn(cls, 'errorName') || cls.errorName !== c.name) wrong.push(`${where(c)} has errorName ${cls.errorName}`)
        if (!RULES.has(cls.retry)) wrong.push(`${where(c)} has retry ${String(cls.retry)}`)
      }
    }
    expect(wrong).toEqual([])
  })

  it('the table of explanations names only real error classes', () => {
    const known = new Set([...errors.map(c => c.name), 'CellError'])
    expect(Object.keys(ERROR_WORDS).filter(name => !known.has(name))).toEqual([])
  })
})
