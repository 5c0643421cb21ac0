// Issue 8 §4 and §6 through the real CLI and real `cell up` processes: `cell publish` of a cell that
// throws at import fails, naming the thrown message, once the fleet marks it crash-looping (each node
// prints the halt); `cell retire` drains every replica across nodes (each node prints
// "retired <cell> by <authority>"); a later `cell publish` brings it back. On the old code the
// crashing publish waited out its timeout with no reason in its message (and the cell restarted
// about once a second), and `cell retire` was an unknown command (exit 2).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { cellRun, fleetLogs, startFleet, stopProc, type Proc } from './processes.ts'
import { stageVersion } from './versioned.ts'

describe('cell publish of a crash loop, and cell retire, on `cell up` processes', () => {
  let root = ''
  let keyPath = ''
  let authority = ''
  let bootstrap = ''
  const nodes: Proc[] = []

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-retire-cli-'))
    const key = await generateAuthority()
    authority = authorityIdOf(key.publicKey)
    keyPath = join(root, 'home', 'authority.key')
    await writeAuthorityKey(keyPath, key)
    bootstrap = await startFleet(nodes, root, keyPath, ['n1', 'n2'])
  }, 90_000)

  afterAll(async () => {
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('publish of a cell that throws at import fails with the thrown message; nodes print the crash-looping halt', async () => {
    const dir = await stageVersion(root, 'crashy', authority)
    const file = join(dir, 'cell.ts')
    await writeFile(file, (await readFile(file, 'utf8')).replace("const VERSION = 'crashy'", "const VERSION: string = (() => { throw new Error('DATABASE_URL is not set') })()"))
    const r = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '60'], 90_000)
    expect(r.code, fleetLogs(nodes)).toBe(1)
    expect(r.stderr).toMatch(/crash-looping/)
    expect(r.stderr).toMatch(/Error: DATABASE_URL is not set/)
    for (const n of nodes) await n.waitFor(/halted versioned@1\.0\.0: release 1\.0\.0 (halted by node …\w{8}: )?crash-looping: /, 30_000)
  }, 120_000)

  it('cell retire drains every replica and each node says so; a later publish brings the cell back', async () => {
    const dir = await stageVersion(root, 'v1', authority)
    const published = await cellRun(['publish', '1.0.1', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(published.code, `${published.stderr}\n${fleetLogs(nodes)}`).toBe(0)

    const retired = await cellRun(['retire', 'versioned', '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '60'], 90_000)
    expect(retired.code, `${retired.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    // (2 wanted; a surplus replica still draining when the record went out counts too)
    expect(retired.stdout).toMatch(/^retired versioned\n {2}seq \d+\n {2}\d+ replica\(s\) on …\w{8}(, …\w{8})? drained\n/)
    for (const n of nodes) await n.waitFor(new RegExp(`retired versioned by ${authority}: draining its replicas here, hosting it no more`), 30_000)

    const again = await cellRun(['publish', '1.0.1', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(again.code, `${again.stderr}\n${fleetLogs(nodes)}`).toBe(0)
    for (const n of nodes) await n.waitFor(/versioned is back: a later publish or rollback superseded its retire record/, 30_000)
    const called = await cellRun(['call', 'versioned', 'version', 'null', '--bootstrap', bootstrap, '--key', keyPath], 60_000)
    expect(called.code, called.stderr).toBe(0)
    expect(JSON.parse(called.stdout)).toBe('v1')
  }, 240_000)
})
