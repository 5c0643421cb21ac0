import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, rm, writeFile, readFile, mkdir, cp, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createHash } from 'node:crypto'
import { buildCell } from './build.ts'
import { ArtifactStore, writeArtifact } from './artifact-store.ts'
import { BuildError, ArtifactTooLargeError, CorruptArtifactError, InvalidDigestError } from './errors.ts'

const root = resolve(import.meta.dirname, '../..')
const hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

describe('ribosome buildCell', () => {
  let tmp: string
  beforeEach(async () => { tmp = await mkdtemp(join(tmpdir(), 'ribosome-')) })
  afterEach(async () => { await rm(tmp, { recursive: true, force: true }) })

  it('bundles the billing example into one self-contained ESM file with its sha256', async () => {
    const out = await buildCell(join(root, 'examples/billing'))
    expect(out.entry).toBe('cell.ts')
    expect(out.digest).toBe(hex(out.artifact))
    const text = new TextDecoder().decode(out.artifact)
    // core/cell.ts is inlined: no relative import is left for the sandbox to resolve.
    expect(text).toContain('function defineCell')
    expect(text).not.toMatch(/from ['"]\.\.?\//)
    expect(text).not.toContain(root)
    // It really runs: import it and call a handler.
    const file = join(tmp, 'billing.mjs')
    await writeFile(file, out.artifact)
    const mod = await import(file)
    const q = await mod.default.quote({ amount: 100 }, { signal: new AbortController().signal, deadlineMs: Date.now() + 1000 })
    expect(q.total).toBeCloseTo(100 + 100 * 0.029 + 0.3, 5)
    expect(mod.default.__cell.idempotent).toEqual(['quote'])
  })

  it('is deterministic: same sources in another directory give the same digest', async () => {
    const a = await buildCell(join(root, 'examples/billing'))
    // Copy the cell and the core it imports to a different absolute location.
    await mkdir(join(tmp, 'examples'), { recursive: true })
    await cp(join(root, 'examples/billing'), join(tmp, 'examples/billing'), { recursive: true })
    await cp(join(root, 'core'), join(tmp, 'core'), { recursive: true })
    const b = await buildCell(join(tmp, 'examples/billing'))
    expect(b.digest).toBe(a.digest)
    // A one-character change in code changes the digest (comments are stripped, code is not).
    const src = await readFile(join(root, 'examples/billing/cell.ts'), 'utf8')
    expect(src).toContain("'ch_'")
    await writeFile(join(tmp, 'examples/billing/cell.ts'), src.replace("'ch_'", "'cx_'"))
    const c = await buildCell(join(tmp, 'examples/billing'))
    expect(c.digest).not.toBe(a.digest)
  })

  it('honours main from the manifest', async () => {
    await mkdir(join(tmp, 'src'))
    await writeFile(join(tmp, 'src/entry.ts'), 'export default { hello: async () => 1 }\n')
    const out = await buildCell(tmp, { main: 'src/entry.ts' })
    expect(out.entry).toBe('src/entry.ts')
    await expect(buildCell(tmp, { main: '../outside.ts' })).rejects.toBeInstanceOf(BuildError)
  })

  it('names build failures and carries esbuild messages', async () => {
    await writeFile(join(tmp, 'cell.ts'), "import { nope } from './missing.ts'\nexport default { a: nope }\n")
    const err = await buildCell(tmp).catch(e => e)
    expect(err).toBeInstanceOf(BuildError)
    expect(err.name).toBe('BuildError')
    expect(err.messages.join('\n')).toContain('missing.ts')

    await writeFile(join(tmp, 'cell.ts'), 'export default {{{ \n')
    const syntax = await buildCell(tmp).catch(e => e)
    expect(syntax).toBeInstanceOf(BuildError)
    expect(syntax.messages.length).toBeGreaterThan(0)
  })

  it('refuses an entry without a default export, naming what it exports (every replica would crash at start)', async () => {
    await writeFile(join(tmp, 'cell.ts'), 'export const greet = async () => 1\nexport function other () {}\n')
    const err = await buildCell(tmp).catch(e => e)
    expect(err).toBeInstanceOf(BuildError)
    expect(err.message).toBe('cell.ts has no default export: a cell\'s entry exports its handlers as `export default defineCell({ … })` (it exports greet, other)')
    await writeFile(join(tmp, 'cell.ts'), 'const x = 1\n')
    expect((await buildCell(tmp).catch(e => e)).message).toBe('cell.ts has no default export: a cell\'s entry exports its handlers as `export default defineCell({ … })`')
    // A re-exported default counts.
    await writeFile(join(tmp, 'impl.ts'), 'export default { hello: async () => 1 }\n')
    await writeFile(join(tmp, 'cell.ts'), "export { default } from './impl.ts'\n")
    expect((await buildCell(tmp)).entry).toBe('cell.ts')
  })

  it('rejects artifacts over the size limit', async () => {
    await writeFile(join(tmp, 'cell.ts'), `export const blob = ${JSON.stringify('x'.repeat(4096))}\nexport default {}\n`)
    const err = await buildCell(tmp, { maxBytes: 1024 }).catch(e => e)
    expect(err).toBeInstanceOf(ArtifactTooLargeError)
    expect(err.sizeBytes).toBeGreaterThan(4096)
    const ok = await buildCell(tmp, { maxBytes: 1024 * 1024 })
    expect(ok.artifact.byteLength).toBeGreaterThan(4096)
  })

  it('honours an aborted signal', async () => {
    const ac = new AbortController()
    ac.abort(new Error('stop'))
    await expect(buildCell(join(root, 'examples/billing'), { signal: ac.signal })).rejects.toThrow('stop')
  })
})

describe('ArtifactStore', () => {
  let tmp: string
  beforeEach(async () => { tmp = await mkdtemp(join(tmpdir(), 'store-')) })
  afterEach(async () => { await rm(tmp, { recursive: true, force: true }) })

  it('stores by content digest and verifies on read', async () => {
    const store = new ArtifactStore(join(tmp, 'artifacts'))
    const bytes = new TextEncoder().encode('export default {}\n')
    const digest = await store.put(bytes)
    expect(digest).toBe(hex(bytes))
    expect(await store.has(digest)).toBe(true)
    expect(store.pathOf(digest)).toBe(join(tmp, 'artifacts', `${digest}.mjs`))
    expect(await store.get(digest)).toEqual(bytes)
    expect(await store.put(bytes)).toBe(digest)

    const other = hex(new TextEncoder().encode('other'))
    expect(await store.has(other)).toBe(false)
    expect(await store.get(other)).toBeUndefined()
    expect(() => store.pathOf('../../etc/passwd')).toThrow(InvalidDigestError)

    // Tamper with the stored file: the read must refuse it.
    const path = store.pathOf(digest)
    await chmod(path, 0o644)
    await writeFile(path, 'export default { evil: true }\n')
    await expect(store.get(digest)).rejects.toBeInstanceOf(CorruptArtifactError)
    await store.delete(digest)
    expect(await store.has(digest)).toBe(false)
  })

  it('refuses oversized artifacts; writeArtifact names the file by digest', async () => {
    const store = new ArtifactStore(tmp, { maxBytes: 8 })
    await expect(store.put(new Uint8Array(9))).rejects.toBeInstanceOf(ArtifactTooLargeError)
    const { path, digest } = await writeArtifact(join(tmp, 'out'), new Uint8Array([1, 2, 3]))
    expect(path).toBe(join(tmp, 'out', `${digest}.mjs`))
    expect(digest).toBe(hex(new Uint8Array([1, 2, 3])))
  })
})
