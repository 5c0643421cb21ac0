// The documentation a newcomer reads keeps up with the code (issue 13 point 7): every Cell.toml key
// of the schema is in docs/cell-toml.md with its default, every `cell` command is in the README's
// table, the README still opens with its two commands, and the docs it links to exist.
import { readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULTS, MANIFEST_KEYS } from '../../core/manifest/schema.ts'

const root = resolve(import.meta.dirname, '..', '..')
const read = async (path: string): Promise<string> => await readFile(join(root, path), 'utf8')

describe('docs', () => {
  it('docs/cell-toml.md has a row for every key of the manifest schema, and no key the schema lacks', async () => {
    const doc = await read('docs/cell-toml.md')
    const rows = new Map([...doc.matchAll(/^\| `(cell(?:\.[a-z0-9_]+)+)` \| ([^|]+) \|/gm)].map(m => [m[1], m[2].trim()]))
    const keys: string[] = []
    for (const [table, names] of Object.entries(MANIFEST_KEYS)) {
      if (table === '') continue
      for (const name of names) {
        // Sub-tables (cell.biology, …) are sections of their own, not keys.
        if ((MANIFEST_KEYS as Record<string, readonly string[]>)[`${table}.${name}`] !== undefined) continue
        keys.push(`${table}.${name}`)
      }
    }
    expect(keys.length).toBeGreaterThan(20)
    for (const key of keys) expect(rows.has(key), `docs/cell-toml.md has no row for ${key}`).toBe(true)
    expect([...rows.keys()].filter(k => !keys.includes(k))).toEqual([])
    // Defaults as the parser applies them.
    const b = DEFAULTS.biology
    const expected: Record<string, string> = {
      'cell.version': `"${DEFAULTS.version}"`,
      'cell.main': `"${DEFAULTS.main}"`,
      'cell.public': String(DEFAULTS.public),
      'cell.biology.min_replicas': String(b.minReplicas),
      'cell.biology.max_replicas': String(b.maxReplicas),
      'cell.biology.cpu_target': String(b.cpuTarget),
      'cell.biology.memory_target': String(b.memoryTarget),
      'cell.biology.update': `"${b.update}"`,
      'cell.biology.max_surge': String(b.maxSurge),
      'cell.biology.health_grace': `"${b.healthGraceMs / 1000}s"`,
      'cell.biology.canary_weight': String(b.canaryWeight),
      'cell.storage.class': `"${DEFAULTS.storage.class}"`,
      'cell.storage.snapshot_every': `"${DEFAULTS.storage.snapshotEveryMs / 3_600_000}h"`,
      'cell.sandbox.require': `"${DEFAULTS.sandbox.require}"`,
      'cell.telemetry.prometheus': String(DEFAULTS.telemetry.prometheus),
      'cell.telemetry.otlp_trace': String(DEFAULTS.telemetry.otlpTrace)
    }
    for (const [key, value] of Object.entries(expected)) expect(rows.get(key), key).toBe(`\`${value}\``)
  })

  it('the README lists every cell command and keeps its first two commands', async () => {
    const readme = await read('README.md')
    expect(readme).toMatch(/^# Cell\n\n```sh\nnpm install && npm start\nnpm test\n```\n/)
    const main = await read('node-host/cli/main.ts')
    const commands = [...main.matchAll(/^ {2}([a-z]+): \{/gm)].map(m => m[1])
    expect(commands).toContain('rollback')
    const table = readme.slice(readme.indexOf('## Commands'))
    for (const name of commands) expect(table, `README's command table has no \`cell ${name}\``).toMatch(new RegExp(`^\\| \`cell ${name}[ \`]`, 'm'))
  })

  it('every docs/ page the README links to exists', async () => {
    const readme = await read('README.md')
    const links = [...new Set([...readme.matchAll(/\((docs\/[a-z0-9-]+\.md)\)/g)].map(m => m[1]))]
    for (const page of ['docs/cell-toml.md', 'docs/limits.md', 'docs/writing-cells.md']) expect(links).toContain(page)
    for (const link of links) expect((await stat(join(root, link))).isFile(), link).toBe(true)
  })
})
