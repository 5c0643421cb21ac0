// Bundles the test page for Chromium with esbuild (browser platform, so libp2p's browser builds
// of its transports are picked) and returns the files to serve, without touching the disk.
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface TestPageFiles { [path: string]: { body: Uint8Array, type: string } }

export async function buildTestPage (options: { signal?: AbortSignal } = {}): Promise<TestPageFiles> {
  options.signal?.throwIfAborted()
  const result = await build({
    entryPoints: [join(import.meta.dirname, 'entry.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    outfile: 'bundle.js',
    sourcemap: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' }
  })
  const html = await readFile(join(import.meta.dirname, 'index.html'))
  const files: TestPageFiles = { '/index.html': { body: html, type: 'text/html; charset=utf-8' } }
  for (const f of result.outputFiles) files['/bundle.js'] = { body: f.contents, type: 'text/javascript; charset=utf-8' }
  return files
}
