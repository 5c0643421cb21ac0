// Issue #2 §14: three full nodes as separate `cell up` processes, `cell publish` and `cell call` as
// further processes; an unknown authority is refused by name; killing the replica's process mid-call
// ends the call with a named error, never a hang.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, readdir, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { cell, cellRun, fleetLogs, stopProc, projectRoot, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'

const STARTUP_MS = 30_000

async function exists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

/** Napping marker written by the sleepy cell inside some node's volume. */
async function findNapping (root: string): Promise<boolean> {
  for (const node of ['n1', 'n2', 'n3']) {
    const volumes = join(root, node, 'volumes')
    for (const v of await readdir(volumes).catch(() => [] as string[])) {
      if (await exists(join(volumes, v, 'napping'))) return true
    }
  }
  return false
}

describe('multi-process fleet', () => {
  let root = ''
  let keyPath = ''
  let strangerKeyPath = ''
  let authority = ''
  const nodes: Proc[] = []
  let bootstrap = ''

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-mp-'))
    const key = await generateAuthority()
    authority = authorityIdOf(key.publicKey)
    keyPath = join(root, 'home', 'authority.key')
    await writeAuthorityKey(keyPath, key)
    strangerKeyPath = join(root, 'stranger', 'authority.key')
    await writeAuthorityKey(strangerKeyPath, await generateAuthority())
    for (const name of ['n1', 'n2', 'n3']) {
      const args = ['up', '--data', join(root, name), '--authority', keyPath]
      if (name === 'n2') {
        // One node joins through its config file instead of a flag.
        const config = join(root, 'n2.toml')
        await writeFile(config, `bootstrap = ["${bootstrap}"]\n`)
        args.push('--config', config)
      } else if (bootstrap !== '') {
        args.push('--bootstrap', bootstrap)
      }
      const p = cell(args)
      nodes.push(p)
      const m = await p.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, STARTUP_MS)
      if (bootstrap === '') bootstrap = m[1]
    }
  }, 120_000)

  afterAll(async () => {
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('publishes billing and calls it from a fourth process', async () => {
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authority)
    const published = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(published.stderr, fleetLogs(nodes)).toBe('')
    expect(published.code, fleetLogs(nodes)).toBe(0)
    expect(published.stdout).toMatch(/published billing@1\.0\.0/)

    const called = await cellRun(['call', 'billing', 'charge', '{"amount":5,"currency":"EUR"}', '--bootstrap', bootstrap, '--key', keyPath], 60_000)
    expect(called.code).toBe(0)
    const result = JSON.parse(called.stdout) as { amount: number, currency: string, id: string }
    expect(result).toMatchObject({ amount: 5, currency: 'EUR' })

    const refused = await cellRun(['call', 'billing', 'charge', '{"amount":-1}', '--bootstrap', bootstrap, '--key', keyPath], 60_000)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^InvalidAmountError: /)
  }, 180_000)

  it('rejects a caller signed by an unknown authority, by name', async () => {
    const r = await cellRun(['call', 'billing', 'charge', '{"amount":5}', '--bootstrap', bootstrap, '--key', strangerKeyPath, '--trust', authority], 60_000)
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    // The fleet shows a caller it does not trust its public cells only, and says why by name.
    expect(r.stderr).toMatch(/^UnknownAuthorityError: /)
  }, 90_000)

  it('ends a call with a named error when its replica process is killed', async () => {
    const dir = await stageCell(join(projectRoot, 'test', 'integration', 'fixtures', 'sleepy'), join(root, 'sleepy'), authority)
    const published = await cellRun(['publish', '1.0.0', '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath], 90_000)
    expect(published.stderr, fleetLogs(nodes)).toBe('')
    expect(published.code, fleetLogs(nodes)).toBe(0)
    const digest = /digest ([0-9a-f]{64})/.exec(published.stdout)![1]

    const call = cell(['call', 'sleepy', 'nap', '{"ms":60000}', '--bootstrap', bootstrap, '--key', keyPath, '--timeout', '90'])
    // The cell marks its volume as soon as the call runs; wait for that, with a deadline.
    const deadline = Date.now() + 60_000
    while (!await findNapping(root)) {
      if (Date.now() > deadline) throw new Error(`the nap call never started: ${call.stderr()}\n${fleetLogs(nodes)}`)
      if (call.child.exitCode != null) throw new Error(`the caller exited early: ${call.stderr()}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const startedKill = Date.now()
    // The sandbox's command line names the artifact by digest: kill every process running it.
    execFileSync('pkill', ['-KILL', '-f', digest])
    const timer = setTimeout(() => call.child.kill('SIGKILL'), 30_000)
    const { code } = await call.exited
    clearTimeout(timer)
    expect(code).toBe(1)
    expect(call.stderr()).toMatch(/^(ReplicaCrashedError|ChannelClosedError): /)
    expect(Date.now() - startedKill).toBeLessThan(30_000)
  }, 180_000)

  it('stops a node cleanly on SIGTERM, replicas included', async () => {
    const node = nodes[2]
    node.child.kill('SIGTERM')
    const timer = setTimeout(() => node.child.kill('SIGKILL'), 30_000)
    const { code, signal } = await node.exited
    clearTimeout(timer)
    expect(signal).toBeNull()
    expect(code).toBe(0)
    expect(node.stdout()).toMatch(/SIGTERM: draining replicas and stopping…\nstopping: replicas stopped \(\d+\.\d s\)\n(stopping: volumes closed \(\d+\.\d s\)\n)?stopping: left the mesh \(\d+\.\d s\)\nstopped\n$/)
  }, 60_000)
})
