// Issue 13 point 6 from another project: `cellmesh/client` imported from an installed copy of the
// package (under node_modules, where Node strips no TypeScript) resolves to the JavaScript build
// that `npm install` makes (`prepare`: dist/client.js), under this machine's own Node as well as
// the project's. Before the build existed the import failed with ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING.
import { describe, it, expect, afterAll } from 'vitest'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { projectRoot } from './processes.ts'

const exec = promisify(execFile)

describe('cellmesh/client from an installed copy', () => {
  let dir = ''
  afterAll(async () => { if (dir !== '') await rm(dir, { recursive: true, force: true }) })

  it('imports the built client under the machine\'s Node and the project\'s', async () => {
    await exec(join(projectRoot, 'node_modules', '.bin', 'node'), [join(projectRoot, 'node-host', 'build-client.ts')], { timeout: 60_000 })
    dir = await mkdtemp(join(tmpdir(), 'cell-installed-'))
    const pkg = join(dir, 'node_modules', 'cellmesh')
    await mkdir(pkg, { recursive: true })
    // What `npm pack` ships of it for the client: package.json, the build and the sources for types.
    await cp(join(projectRoot, 'package.json'), join(pkg, 'package.json'))
    await cp(join(projectRoot, 'dist'), join(pkg, 'dist'), { recursive: true })
    // Its dependencies beside it, as npm would install them.
    for (const name of await readdir(join(projectRoot, 'node_modules'))) {
      if (name === '.bin' || name === 'cellmesh') continue
      await symlink(join(projectRoot, 'node_modules', name), join(dir, 'node_modules', name))
    }
    await writeFile(join(dir, 'main.mjs'), [
      "import { createClient, NoReplicaError, UnknownCellError } from 'cellmesh/client'",
      "console.log(JSON.stringify({ createClient: typeof createClient, error: new NoReplicaError('x').name, unknown: new UnknownCellError('y') instanceof Error }))"
    ].join('\n'))
    for (const node of ['node', join(projectRoot, 'node_modules', '.bin', 'node')]) {
      const { stdout } = await exec(node, ['main.mjs'], { cwd: dir, timeout: 60_000 })
      expect(JSON.parse(stdout), node).toEqual({ createClient: 'function', error: 'NoReplicaError', unknown: true })
    }
  }, 120_000)
})
