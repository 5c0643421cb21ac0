import { describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { checkBrowserBundle, listCoreModules } from './check-core-bundle.ts'

const root = join(import.meta.dirname, '..', '..')

describe('core bundles for the browser', () => {
  it('has no Node built-in, Buffer or process anywhere under core/', async () => {
    const entries = await listCoreModules(join(root, 'core'))
    expect(entries.length).toBeGreaterThan(3)
    const report = await checkBrowserBundle(entries, root)
    expect(report.errors).toEqual([])
    expect(report.builtinImports).toEqual([])
    expect(report.nodeGlobals).toEqual([])
    expect(report.outputBytes).toBeGreaterThan(0)
  }, 120_000)

  it('flags a module that uses Node built-ins and globals (the check can fail)', async () => {
    const fixtures = join(import.meta.dirname, 'fixtures')
    const report = await checkBrowserBundle([join(fixtures, 'uses-node.ts')], import.meta.dirname)
    expect(report.builtinImports).toEqual(['fixtures/uses-node.ts -> node:fs'])
    expect(report.nodeGlobals.sort()).toEqual(['fixtures/uses-node.ts: Buffer', 'fixtures/uses-node.ts: process'])
  })

  it('does not flag words inside strings and comments', async () => {
    const report = await checkBrowserBundle([join(import.meta.dirname, 'fixtures', 'clean.ts')], import.meta.dirname)
    expect(report.builtinImports).toEqual([])
    expect(report.nodeGlobals).toEqual([])
  })
})
