// Issue 13 points 1-3 through the real CLI against real `cell up` processes (one shared fleet of
// two): `cell top --once --output json`, `cell logs` (json lines, text prefixes without colour off
// a terminal), `cell logs -f` through a whole rollout (+ for each new replica, - for each old one)
// and a node death (kill -9: its replica ends with "left the fleet", the replacement appears),
// `cell status <cell>` explaining the cell, and the refusals: an unknown cell by name, an operator
// of an authority the nodes trust but that does not claim the cell.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { cell, cellRun, fleetLogs, startFleet, stopProc, projectRoot, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'

const fixture = join(import.meta.dirname, 'fixtures', 'chatty')

/** A terminal a person would use: `cell top` in a detached tmux session, read with capture-pane. */
class Tmux {
  readonly session = `cell-top-${process.pid}`
  private run (...args: string[]): string {
    return execFileSync('tmux', args, { encoding: 'utf8' })
  }

  start (command: string): void { this.run('new-session', '-d', '-s', this.session, '-x', '160', '-y', '40', command) }
  keys (...keys: string[]): void { this.run('send-keys', '-t', this.session, ...keys) }
  screen (): string { return this.run('capture-pane', '-p', '-t', this.session) }
  stop (): void { try { this.run('kill-session', '-t', this.session) } catch { /* gone already */ } }

  /** Waits (with a deadline) until the pane shows `pattern`; returns the screen. */
  async waitFor (pattern: RegExp, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const screen = this.screen()
      if (pattern.test(screen)) return screen
      if (Date.now() > deadline) throw new Error(`tmux pane never showed ${pattern}:\n${screen}`)
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
}

describe('cell logs, cell top and cell status on `cell up` processes', () => {
  let root = ''
  let keyPath = ''
  let otherKeyPath = ''
  let authority = ''
  let env: Record<string, string> = {}
  const nodes: Proc[] = []
  const extra: Proc[] = []

  const stage = async (tag: string, version: string): Promise<string> => {
    const dir = await stageCell(fixture, join(root, tag), authority)
    await writeFile(join(dir, 'cell.ts'), (await readFile(join(dir, 'cell.ts'), 'utf8')).replace("const VERSION = 'v1'", `const VERSION = '${tag}'`))
    await writeFile(join(dir, 'Cell.toml'), (await readFile(join(dir, 'Cell.toml'), 'utf8')).replace('version = "1.0.0"', `version = "${version}"`))
    return dir
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-cli-logs-'))
    const key = await generateAuthority()
    const other = await generateAuthority()
    authority = authorityIdOf(key.publicKey)
    keyPath = join(root, 'home', 'authority.key')
    otherKeyPath = join(root, 'other.key')
    await writeAuthorityKey(keyPath, key)
    await writeAuthorityKey(otherKeyPath, other)
    // The nodes also trust `other`, which claims no cell: its operators may join but not read chatty.
    const bootstrap = await startFleet(nodes, root, keyPath, ['n1', 'n2'], ['--trust', authorityIdOf(other.publicKey)])
    env = { CELL_HOME: join(root, 'home'), CELL_BOOTSTRAP: bootstrap }
    const published = await cellRun(['publish', '--dir', await stage('v1', '1.0.0'), '--wait', '2'], 90_000, env)
    expect(published.code, published.stderr + fleetLogs(nodes)).toBe(0)
  }, 180_000)

  afterAll(async () => {
    await Promise.all([...extra, ...nodes].map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('cell top --once --output json shows both nodes and the cell with ready/desired and min-max', async () => {
    const top = await cellRun(['top', '--once', '--output', 'json'], 30_000, env)
    expect(top.code, top.stderr).toBe(0)
    const picture = JSON.parse(top.stdout) as { nodes: Array<{ node: string, slots: number, replicas: number, uptimeMs: number }>, cells: Array<{ cell: string, ready: number, desired: number, min: number, max: number, versions: Array<{ version: string, ready: number }>, halts: unknown[] }> }
    expect(picture.nodes).toHaveLength(2)
    for (const n of picture.nodes) {
      expect(n.replicas).toBe(1)
      expect(n.slots).toBeGreaterThan(0)
      expect(n.uptimeMs).toBeGreaterThan(0)
    }
    const chatty = picture.cells.find(c => c.cell === 'chatty')!
    expect(chatty).toMatchObject({ ready: 2, desired: 2, min: 2, max: 2, halts: [] })
    expect(chatty.versions).toEqual([expect.objectContaining({ version: '1.0.0', ready: 2 })])
  }, 60_000)

  it('cell top refreshes in place in a terminal and q restores the screen (tmux)', async () => {
    const tmux = new Tmux()
    const done = join(root, 'top-exit')
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')
    tmux.start(`cd ${projectRoot} && env ${vars} node_modules/.bin/node node-host/cli/cell.js top --interval 1s; echo "exit $?" > ${done}; sleep 30`)
    try {
      const first = await tmux.waitFor(/chatty\s+1\.0\.0×2\s+2\/2\s+2-2/, 60_000)
      expect(first).toMatch(/^cell top — 2 node\(s\), 1 cell\(s\) · (\d\d:\d\d:\d\d) UTC/m)
      const clock = (first.match(/· (\d\d:\d\d:\d\d) UTC/) ?? [])[1]
      // Refreshed in place: the same screen with a later time, the header still on the first line.
      const later = await tmux.waitFor(new RegExp(`^cell top — .* · (?!${clock})\\d\\d:\\d\\d:\\d\\d UTC`), 30_000)
      expect(later.split('\n')[0]).toMatch(/^cell top/)
      expect(later.match(/^cell top/gm)).toHaveLength(1)
      tmux.keys('q')
      const deadline = Date.now() + 20_000
      let exit = ''
      while ((exit = await readFile(done, 'utf8').catch(() => '')) === '' && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 250))
      expect(exit).toBe('exit 0\n')
      // The alternate screen is gone: the terminal shows what it showed before.
      expect(tmux.screen()).not.toMatch(/cell top|chatty/)
    } finally {
      tmux.stop()
    }
  }, 120_000)

  it('cell logs prints every replica, as json lines and as prefixed text; an unknown cell fails by name', async () => {
    const json = await cellRun(['logs', 'chatty', '--tail', '3', '--output', 'json'], 30_000, env)
    expect(json.code, json.stderr).toBe(0)
    const lines = json.stdout.trim().split('\n').map(l => JSON.parse(l) as Record<string, string>)
    expect(lines).toHaveLength(6)
    for (const l of lines) {
      expect(Object.keys(l).sort()).toEqual(['cell', 'msg', 'node', 'replica', 'stream', 'ts', 'version'])
      expect(l).toMatchObject({ cell: 'chatty', version: '1.0.0', stream: 'stdout' })
      expect(l.msg).toMatch(/^tick \d+$/)
    }
    expect(new Set(lines.map(l => l.node)).size).toBe(2)
    const text = await cellRun(['logs', 'chatty', '--since', '2s'], 30_000, env)
    expect(text.code, text.stderr).toBe(0)
    const prefixed = text.stdout.trim().split('\n')
    // From two seconds before the command started: fewer than the two full rings (1000 lines each).
    expect(prefixed.length).toBeGreaterThan(10)
    expect(prefixed.length).toBeLessThan(1900)
    for (const l of prefixed) expect(l).toMatch(/^\[chatty\/1\.0\.0-[0-9a-f]{8}@…\w{6}\] tick \d+$/)
    expect(text.stdout).not.toContain('\x1b[')
    // No line matches: said on stderr (was silence and exit 0, as if nothing had been asked).
    const none = await cellRun(['logs', 'chatty', '--replica', 'ffffffff'], 30_000, env)
    expect(none.code, none.stderr).toBe(0)
    expect(none.stdout).toBe('')
    expect(none.stderr).toMatch(/^no log lines from chatty \(replica ffffffff\): 2 replica\(s\) on 2 node\(s\) in the view/m)
    const unknown = await cellRun(['logs', 'chaty'], 30_000, env)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^UnknownCellError: .*did you mean "chatty"/m)
  }, 60_000)

  it('an operator of another authority is refused by name (every refusal on both protocols: logs-protocol.test.ts)', async () => {
    const logs = await cellRun(['logs', 'chatty', '--key', otherKeyPath, '--trust', authority], 30_000, env)
    expect(logs.code, logs.stdout).toBe(1)
    expect(logs.stderr).toMatch(/^NotAuthorizedError: .*does not claim cell "chatty"/m)
  }, 60_000)

  it('cell status explains the cell: target and why, releases with seq and signer, replicas, each node', async () => {
    const status = await cellRun(['status', 'chatty'], 30_000, env)
    expect(status.code, status.stderr).toBe(0)
    const out = status.stdout
    expect(out).toMatch(/^chatty: healthy — 2 of 2 replica\(s\) ready \(1\.0\.0 ×2\), target 1\.0\.0 \(newest release\)/)
    expect(out).toMatch(new RegExp(`1\\.0\\.0\\s+seq \\d+\\s+sha256 [0-9a-f]{12}…  signed by ${authority.slice(0, 8)}…  ← target`))
    expect(out.match(/^ {2}1\.0\.0-[0-9a-f]{8}\s+on …\w{6}\s+ready/gm)).toHaveLength(2)
    expect(out.match(/^ {2}node …\w{6}: prepared 1\.0\.0; runs 1\.0\.0 \(ready\)$/gm), out).toHaveLength(2)
    expect(out).toMatch(/target 1\.0\.0 \(newest release\)/)
  }, 60_000)

  it('cell logs -f follows a rollout (+ new, - old) and a node death, then exits 0 on SIGINT', async () => {
    const follow = cell(['logs', 'chatty', '-f', '--tail', '0'], env)
    extra.push(follow)
    await follow.waitFor(/(^\+ \[chatty\/1\.0\.0-[^\n]*\n[^]*){2}/m, 30_000)
    const published = await cellRun(['publish', '--dir', await stage('v2', '1.1.0'), '--wait', '2'], 90_000, env)
    expect(published.code, published.stderr).toBe(0)
    // Every replica of 1.1.0 appears and says it is up; every replica of 1.0.0 ends.
    await follow.waitFor(/(^- \[chatty\/1\.0\.0-[^\n]*ended: stopped\n[^]*){2}/m, 60_000)
    await follow.waitFor(/(^\[chatty\/1\.1\.0-[^\n]*\] chatty v2 up\n[^]*){2}/m, 30_000)
    expect(follow.stdout().match(/^\+ \[chatty\/1\.1\.0-/gm)).toHaveLength(2)
    // A node dies: its replica ends with the reason, the other node starts a replacement.
    const dead = nodes[1]
    const deadId = (dead.stdout().match(/cell node (\w+)/) ?? [])[1]
    expect(deadId).toBeDefined()
    dead.child.kill('SIGKILL')
    await dead.exited
    await follow.waitFor(new RegExp(`^- \\[chatty/1\\.1\\.0-[0-9a-f]{8}@…${deadId.slice(-6)}\\] ended: node …${deadId.slice(-6)} left the fleet$`, 'm'), 60_000)
    await follow.waitFor(/(^\+ \[chatty\/1\.1\.0-[^\n]*\n[^]*){3}/m, 60_000)
    // No line twice (each tick of a replica once).
    const ticks = follow.stdout().split('\n').filter(l => / tick \d+$/.test(l))
    expect(new Set(ticks).size).toBe(ticks.length)
    follow.child.kill('SIGINT')
    expect((await follow.exited).code).toBe(0)
  }, 240_000)
})
