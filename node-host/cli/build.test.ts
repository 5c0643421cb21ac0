import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { cp, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { packArtifact, unpackArtifact } from '../../core/manifest/packaged.ts'
import { buildCell } from '../ribosome/index.ts'
import { makeTempDir, REPO_ROOT, runCli } from './cli-harness.ts'

let tmp: { path: string, remove: () => Promise<void> }
beforeEach(async () => { tmp = await makeTempDir('cell-build-') })
afterEach(async () => { await tmp.remove() })

const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex')

/** `<64 hex>  <path>\n` → [digest, path]; fails the test on any other shape. */
function parseLine (stdout: string): [string, string] {
  const m = /^([0-9a-f]{64}) {2}(\S.*)\n$/.exec(stdout)
  expect(m, JSON.stringify(stdout)).not.toBeNull()
  return [m![1], m![2]]
}

/** A copy of an example cell whose imports of the repo's core/ still resolve from the temp dir. */
async function copyExample (name: string): Promise<string> {
  const dir = join(tmp.path, name)
  await cp(join(REPO_ROOT, 'examples', name), dir, { recursive: true, filter: src => !src.includes('/.cell') })
  for (const file of await readdir(dir)) {
    if (!file.endsWith('.ts')) continue
    const path = join(dir, file)
    const source = await readFile(path, 'utf8')
    await writeFile(path, source.replaceAll("'../../core/", `'${join(REPO_ROOT, 'core')}/`))
  }
  return dir
}

describe('cell build', () => {
  it('builds examples/billing reproducibly: same digest twice, equal to the sha256 of the written file', async () => {
    const first = await runCli(['build', 'examples/billing', '--out', join(tmp.path, 'a')], { home: tmp.path })
    expect(first.stderr).toMatch(/^built billing 1\.0\.0 from cell\.ts/m)
    expect(first.code).toBe(0)
    const second = await runCli(['build', join(REPO_ROOT, 'examples', 'billing'), '--out', join(tmp.path, 'b')], { home: tmp.path })
    expect(second.code).toBe(0)
    const [digestA, pathA] = parseLine(first.stdout)
    const [digestB, pathB] = parseLine(second.stdout)
    expect(pathA).not.toBe(pathB)
    expect(digestB).toBe(digestA)
    expect(pathA).toBe(join(tmp.path, 'a', `${digestA}.mjs`))
    expect(await sha256(pathA)).toBe(digestA)
    expect(await sha256(pathB)).toBe(digestA)
  })

  it('packs the Cell.toml text with the bundle: the digest a release of these sources signs', async () => {
    const r = await runCli(['build', 'examples/billing', '--out', join(tmp.path, 'out')], { home: tmp.path })
    expect(r.code).toBe(0)
    const [digest, path] = parseLine(r.stdout)
    const source = await readFile(join(REPO_ROOT, 'examples', 'billing', 'Cell.toml'), 'utf8')
    const { manifest, code } = unpackArtifact(new Uint8Array(await readFile(path)))
    expect(manifest).toBe(source)
    const built = await buildCell(join(REPO_ROOT, 'examples', 'billing'), { main: 'cell.ts' })
    expect(Buffer.from(code).equals(Buffer.from(built.artifact))).toBe(true)
    expect(createHash('sha256').update(packArtifact(source, built.artifact)).digest('hex')).toBe(digest)
  })

  it('defaults to the current directory and writes under .cell/artifacts', async () => {
    const dir = await copyExample('billing')
    const r = await runCli(['build'], { home: tmp.path, cwd: dir })
    expect(r.code).toBe(0)
    const [digest, path] = parseLine(r.stdout)
    expect(isAbsolute(path)).toBe(false)
    expect(path).toBe(join('.cell', 'artifacts', `${digest}.mjs`))
    expect(await sha256(join(dir, path))).toBe(digest)
  })

  it('warns that [cell.telemetry] otlp_trace = true is ignored, and still builds', async () => {
    const dir = await copyExample('billing')
    const manifestPath = join(dir, 'Cell.toml')
    const source = await readFile(manifestPath, 'utf8')
    expect(source).toMatch(/^otlp_trace = false$/m)
    const quiet = await runCli(['build'], { home: tmp.path, cwd: dir })
    expect(quiet.code).toBe(0)
    expect(quiet.stderr).not.toMatch(/warning/)
    await writeFile(manifestPath, source.replace(/^otlp_trace = false$/m, 'otlp_trace = true'))
    const r = await runCli(['build'], { home: tmp.path, cwd: dir })
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/^warning: \[cell\.telemetry\] otlp_trace = true is deprecated and ignored: .*cell up --otlp URL/m)
    parseLine(r.stdout)
  })

  it('rejects a broken Cell.toml naming the error, file, line and key, and writes nothing', async () => {
    const dir = await copyExample('billing')
    const manifestPath = join(dir, 'Cell.toml')
    const lines = (await readFile(manifestPath, 'utf8')).split('\n')
    const at = lines.findIndex(l => l.startsWith('max_replicas'))
    expect(at).toBeGreaterThan(0)
    lines[at] = lines[at].replace('max_replicas', 'max_replica')
    await writeFile(manifestPath, lines.join('\n'))

    const r = await runCli(['build', dir], { home: tmp.path })
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain(`ManifestUnknownKeyError: ${manifestPath}:${at + 1}: cell.biology.max_replica: unknown key`)
    await expect(stat(join(dir, '.cell'))).rejects.toThrow()
  })

  it('reports a syntax error, a missing Cell.toml and a failing bundle as named errors', async () => {
    const dir = await copyExample('billing')
    await writeFile(join(dir, 'Cell.toml'), '[cell]\nname = "billing"\nversion = \n')
    const syntax = await runCli(['build', dir], { home: tmp.path })
    expect(syntax.code).toBe(1)
    expect(syntax.stderr).toMatch(new RegExp(`^ManifestSyntaxError: ${join(dir, 'Cell.toml')}:3: `, 'm'))

    const missing = await runCli(['build', tmp.path], { home: tmp.path })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/^ManifestNotFoundError: no Cell\.toml in /m)

    const source = await readFile(join(REPO_ROOT, 'examples', 'billing', 'Cell.toml'), 'utf8')
    await writeFile(join(dir, 'Cell.toml'), source)
    await writeFile(join(dir, 'cell.ts'), "import { nothing } from './missing.ts'\nexport default nothing\n")
    const broken = await runCli(['build', dir], { home: tmp.path })
    expect(broken.code).toBe(1)
    expect(broken.stderr).toMatch(/^BuildError: build of cell\.ts failed/m)
    expect(broken.stderr).toContain('missing.ts')
  })

  it('prints help with exit 0 and rejects extra arguments with exit 2', async () => {
    const help = await runCli(['build', '-h'], { home: tmp.path })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^usage: cell build/)
    const extra = await runCli(['build', 'a', 'b'], { home: tmp.path })
    expect(extra.code).toBe(2)
    expect(extra.stderr).toMatch(/^UsageError: unexpected argument "b"/)
  })
})
