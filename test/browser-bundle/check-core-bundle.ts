// Bundles every module under core/ for the browser platform and reports anything that ties it to
// Node: an import of a Node built-in (from core or from any dependency core pulls in), or a use of
// the `Buffer` / `process` globals in core's own code.
import { build, transform, type Plugin } from 'esbuild'
import { builtinModules } from 'node:module'
import { readFile, readdir } from 'node:fs/promises'
import { join, relative } from 'node:path'

const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]))

export interface BundleReport {
  entries: string[]
  /** `importer -> specifier` for every Node built-in import found. */
  builtinImports: string[]
  /** `file: identifier` for every Buffer/process use in core's own code. */
  nodeGlobals: string[]
  errors: string[]
  outputBytes: number
}

export async function listCoreModules (root: string): Promise<string[]> {
  const out: string[] = []
  async function walk (dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await walk(path)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
    }
  }
  await walk(root)
  return out.sort()
}

// Identifiers that exist in Node but not in a browser tab. An object key of that name (`{ require:
// 'strict' }`, Cell.toml's [cell.sandbox] require) is a property, not the global.
const GLOBAL_PATTERN = /(?<![\w$.'"`])(Buffer|process|require|__dirname|__filename|setImmediate)(?![\w$])(?!\s*:)/g

export async function checkBrowserBundle (entries: string[], projectRoot: string): Promise<BundleReport> {
  const builtinImports: string[] = []
  const nodeGlobals: string[] = []
  const guard: Plugin = {
    name: 'no-node-builtins',
    setup (b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (NODE_BUILTINS.has(args.path)) {
          builtinImports.push(`${relative(projectRoot, args.importer)} -> ${args.path}`)
          return { path: args.path, external: true }
        }
        return undefined
      })
      b.onLoad({ filter: /\.ts$/ }, async (args) => {
        const rel = relative(projectRoot, args.path)
        if (!rel.startsWith('core/') && !rel.startsWith('fixtures')) return undefined
        const source = await readFile(args.path, 'utf8')
        // Strip types and comments first so doc comments that mention `process` do not count.
        const js = (await transform(source, { loader: 'ts', format: 'esm', legalComments: 'none' })).code
        for (const line of js.split('\n')) {
          const code = line.replace(/(["'`])(?:\\.|(?!\1).)*\1/g, '""')
          for (const m of code.matchAll(GLOBAL_PATTERN)) nodeGlobals.push(`${rel}: ${m[1]}`)
        }
        return { contents: source, loader: 'ts' }
      })
    }
  }
  const result = await build({
    entryPoints: entries,
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    splitting: true,
    outdir: 'out',
    target: 'es2022',
    logLevel: 'silent',
    plugins: [guard]
  }).catch((err: { errors?: Array<{ text: string }> }) => ({ errors: err.errors ?? [{ text: String(err) }], outputFiles: [] }))
  return {
    entries,
    builtinImports: [...new Set(builtinImports)],
    nodeGlobals: [...new Set(nodeGlobals)],
    errors: result.errors.map((e) => e.text),
    outputBytes: (result.outputFiles ?? []).reduce((n, f) => n + f.contents.byteLength, 0)
  }
}
