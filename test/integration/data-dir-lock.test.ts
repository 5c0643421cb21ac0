// One node per data directory: a second `cell up` on a directory a running node uses fails at once
// with DataDirInUseError naming that node's pid, and leaves the running node alone; after the node
// is killed (SIGKILL: its lock stays behind) a new start takes the directory over with the same
// identity; a clean stop removes the lock. Before this, the second start ran beside the first: two
// processes with one peer id, one release store and one set of volumes and claims.
// The node's socket directories under /tmp (replicas' sockets; the WebTransport sidecar's bridge)
// are fresh at each start and recorded in the data dir: the start after a kill removes the killed
// run's, a clean stop its own (before, every node left /tmp/cell-run-<id> behind, and a killed one
// its sidecar's directory too).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { denoBinary } from '../../node-host/webtransport/sidecar.ts'
import { cell, stopProc, type Proc } from './processes.ts'

const LISTENING = /^cell node (\w+)$/m

describe('a data directory holds one node', () => {
  let root = ''
  let keyPath = ''
  const procs: Proc[] = []
  const withWebTransport = denoBinary() !== undefined
  const up = (): Proc => {
    const p = cell(['up', '--data', join(root, 'n1'), '--authority', keyPath, ...(withWebTransport ? [] : ['--webtransport', 'off'])])
    procs.push(p)
    return p
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-lock-'))
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, await generateAuthority())
  })

  afterAll(async () => {
    await Promise.all(procs.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('refuses a second node on it, takes it over from a killed one, and a clean stop frees it', async () => {
    const first = up()
    const id = (await first.waitFor(LISTENING, 30_000))[1]
    const kinds = withWebTransport ? ['run', 'wt'] : ['run']
    const runDirs = async (): Promise<string[]> => await Promise.all(kinds.map(async k => (await readFile(join(root, 'n1', 'run', `${k}.path`), 'utf8')).trim()))
    if (withWebTransport) await first.waitFor(/webtransport/i, 30_000)
    const killedDirs = await runDirs()
    for (const d of killedDirs) expect(existsSync(d), d).toBe(true)

    const second = up()
    const { code } = await second.exited
    expect(code, second.stdout()).toBe(1)
    expect(second.stderr()).toMatch(new RegExp(`^DataDirInUseError: .*/n1 is in use by another cell node \\(pid ${first.child.pid}, since \\S+\\); stop it first, or pass another --data$`, 'm'))
    expect(second.stdout()).not.toMatch(LISTENING)
    // The running node is untouched: still up, and still prints what happens to it.
    expect(first.child.exitCode).toBeNull()

    first.child.kill('SIGKILL')
    await first.exited
    expect(await readdir(join(root, 'n1'))).toContain('node.lock')
    const third = up()
    expect((await third.waitFor(LISTENING, 30_000))[1]).toBe(id)
    if (withWebTransport) await third.waitFor(/webtransport/i, 30_000)
    const thirdDirs = await runDirs()
    for (const d of killedDirs) expect(existsSync(d), `${d}, left by the killed node`).toBe(false)
    for (const d of thirdDirs) expect(existsSync(d), d).toBe(true)

    await stopProc(third)
    expect(third.child.exitCode).toBe(0)
    expect(await readdir(join(root, 'n1'))).not.toContain('node.lock')
    for (const d of thirdDirs) expect(existsSync(d), `${d}, after a clean stop`).toBe(false)
    expect(await readdir(join(root, 'n1', 'run'))).toEqual([])
  }, 120_000)

  it('names a data directory that is a file', async () => {
    const p = cell(['up', '--data', keyPath, '--authority', keyPath, '--webtransport', 'off'])
    procs.push(p)
    expect((await p.exited).code).toBe(1)
    expect(p.stderr()).toMatch(/^DataDirUnusableError: cannot use .*\/authority\.key as a node's data directory: it \(or a parent\) is a file, not a directory$/m)
  }, 30_000)
})
