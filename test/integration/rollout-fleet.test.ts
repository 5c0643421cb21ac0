// Issue #3 §9 (rollout and rollback): five `cell up` processes; `cell publish` of a new version and
// `cell rollback` to the old one, each while a client calls the cell without pause — every call must
// succeed, and the fleet must end on exactly the version asked for.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cellRun, fleetLogs, stopProc, startFleet, type Proc } from './processes.ts'
import { CELL, CallLoop, onlyRunning, stageVersion } from './versioned.ts'

describe('rollout and rollback on a multi-process fleet', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const nodes: Proc[] = []
  const loops: CallLoop[] = []
  let bootstrap = ''
  let client: Mesh | undefined
  let v1 = ''
  let v2 = ''

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-rollout-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    bootstrap = await startFleet(nodes, root, keyPath, ['n1', 'n2', 'n3', 'n4', 'n5'])
  }, 120_000)

  afterAll(async () => {
    await Promise.all(loops.map(async l => await l.stop()))
    await client?.stop()
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  const publish = async (tag: string, version: string, wait: number): Promise<string> => {
    const dir = await stageVersion(root, tag, authorityIdOf(key.publicKey))
    const r = await cellRun(['publish', version, '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--wait', String(wait), '--timeout', '90'], 120_000)
    expect(r.stderr, fleetLogs(nodes)).toBe('')
    expect(r.code, fleetLogs(nodes)).toBe(0)
    return /digest ([0-9a-f]{64})/.exec(r.stdout)![1]
  }

  it('publishes 1.1.0 over 1.0.0 while every call succeeds', async () => {
    v1 = await publish('v1', '1.0.0', 2)
    client = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    const c = client
    await waitForView(c, () => onlyRunning(c, v1, 2), '2 ready replicas of 1.0.0', { timeoutMs: 60_000 })

    const loop = new CallLoop(c)
    loops.push(loop)
    const started = Date.now()
    v2 = await publish('v2', '1.1.0', 0)
    expect(v2).not.toBe(v1)
    await waitForView(c, () => onlyRunning(c, v2, 2), 'only 1.1.0 replicas running', { timeoutMs: 120_000 })
    await loop.stop()
    process.stdout.write(`multi-process rollout: ${Date.now() - started} ms, ${loop.calls} calls, ${loop.failures.length} failed\n`)
    expect(loop.failures).toEqual([])
    expect(loop.answers.get('v2') ?? 0).toBeGreaterThan(0)
  }, 300_000)

  it('cell rollback returns the fleet to 1.0.0 while every call succeeds', async () => {
    expect(v2).not.toBe('')
    const c = client!
    const loop = new CallLoop(c)
    loops.push(loop)
    const started = Date.now()
    const r = await cellRun(['rollback', CELL, '1.0.0', '--digest', v1, '--bootstrap', bootstrap, '--key', keyPath, '--wait', '1', '--timeout', '90'], 120_000)
    expect(r.stderr, fleetLogs(nodes)).toBe('')
    expect(r.code, fleetLogs(nodes)).toBe(0)
    // Every node says it holds 1.0.0 prepared (before issue 8 the CLI printed no per-node report).
    expect(r.stdout).toMatch(/prepared on 5 of 5 nodes/)
    await waitForView(c, () => onlyRunning(c, v1, 2), 'only 1.0.0 replicas running', { timeoutMs: 120_000 })
    await loop.stop()
    process.stdout.write(`multi-process rollback: ${Date.now() - started} ms, ${loop.calls} calls, ${loop.failures.length} failed\n`)
    expect(loop.failures).toEqual([])
    expect(loop.answers.get('v1') ?? 0).toBeGreaterThan(0)
  }, 300_000)
})
