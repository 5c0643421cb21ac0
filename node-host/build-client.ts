// Builds the package's client entry (`cellmesh/client`) into dist/client.js: one ES module of the
// client and the core it uses, with every npm dependency left as an import. Node does not strip
// TypeScript under node_modules, so an installed copy of this package needs the JavaScript build;
// `npm install` runs it (the `prepare` script) and `npm pack` ships it. Types come from the sources.
import { build } from 'esbuild'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
await build({
  entryPoints: [join(root, 'node-host', 'client-api.ts')],
  outfile: join(root, 'dist', 'client.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning'
})
