// Issue 8.3: restarts keep the fleet's intent. Three `cell up` processes run billing and the
// `versioned` fixture after a rollback (1.1.0 published over 1.0.0, then rolled back to 1.0.0: the
// target is not the newest release). Every node gets SIGTERM, then all restart on the same data
// directories at once with no --bootstrap flag (they find each other through the ports and peers
// they remember), and every cell answers at its target version without a new publish.
// On the old code this fails: the restarted nodes hold no release, so no replica starts and the wait
// for replicas times out ("0 instance(s)", as in the issue); without port reuse the restarted nodes
// listen elsewhere and the first expectation on the address fails.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { createClient, waitForReplicas, waitForView } from '../../node-host/client.ts'
import type { Mesh } from '../../core/mesh/index.ts'
import { cell, cellRun, fleetLogs, stopProc, startFleet, projectRoot, type Proc } from './processes.ts'
import { stageCell } from './stage-cell.ts'
import { CELL, onlyRunning, stageVersion } from './versioned.ts'

const NAMES = ['n1', 'n2', 'n3']

describe('a whole fleet restarts and keeps its intent', () => {
  let root = ''
  let key: AuthorityKey
  let keyPath = ''
  const nodes: Proc[] = []
  const clients: Mesh[] = []
  let bootstrap = ''

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-restart-'))
    key = await generateAuthority()
    keyPath = join(root, 'authority.key')
    await writeAuthorityKey(keyPath, key)
    bootstrap = await startFleet(nodes, root, keyPath, NAMES)
  }, 120_000)

  afterAll(async () => {
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async p => await stopProc(p)))
    if (root !== '') await rm(root, { recursive: true, force: true })
  }, 60_000)

  const publish = async (dir: string, version: string, wait: number): Promise<string> => {
    const r = await cellRun(['publish', version, '--dir', dir, '--bootstrap', bootstrap, '--key', keyPath, '--wait', String(wait), '--timeout', '90'], 120_000)
    expect(r.stderr, fleetLogs(nodes)).toBe('')
    expect(r.code, fleetLogs(nodes)).toBe(0)
    return /digest ([0-9a-f]{64})/.exec(r.stdout)![1]
  }

  it('every cell answers at its target version after all nodes restarted, with no publish', async () => {
    const authority = authorityIdOf(key.publicKey)
    await publish(await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authority), '1.0.0', 1)
    const v1 = await publish(await stageVersion(root, 'v1', authority), '1.0.0', 2)
    const v2 = await publish(await stageVersion(root, 'v2', authority), '1.1.0', 2)
    const rolled = await cellRun(['rollback', CELL, '1.0.0', '--digest', v1, '--bootstrap', bootstrap, '--key', keyPath, '--wait', '2', '--timeout', '90'], 120_000)
    expect(rolled.code, rolled.stderr + fleetLogs(nodes)).toBe(0)
    const before = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    clients.push(before)
    await waitForView(before, () => onlyRunning(before, v1, 2), 'only 1.0.0 replicas of versioned before the restart', { timeoutMs: 90_000 })
    expect(v2).not.toBe(v1)
    // Each node says at the default level which replicas it started and drained, and why: billing's
    // first replica, 1.1.0's surge over 1.0.0, 1.0.0 retired by the rollout, 1.1.0 by the rollback.
    const said = nodes.map(p => p.stdout()).join('')
    expect(said, said).toMatch(/^started billing-1\.0\.0-\w+: deficit \d+ \(\d+ live < desired \d+\)$/m)
    expect(said, said).toMatch(/^started versioned-1\.1\.0-\w+: rollout to 1\.1\.0: /m)
    expect(said, said).toMatch(/^draining versioned-1\.0\.0-\w+: rollout: \d+ 1\.1\.0 replica\(s\) proven /m)
    expect(said, said).toMatch(/^draining versioned-1\.1\.0-\w+: rollout: \d+ 1\.0\.0 replica\(s\) proven /m)

    // Every node stops (SIGTERM: drain, then exit 0), then all restart on the same data dirs.
    await before.stop()
    clients.length = 0
    const old = nodes.splice(0)
    await Promise.all(old.map(async p => await stopProc(p, 60_000)))
    for (const p of old) expect(p.child.exitCode, p.stderr().slice(-2000)).toBe(0)
    // What an earlier run may leave in a data dir: an artifact and a code file no release names.
    const orphan = 'f'.repeat(64)
    const artifactsDir = join(root, NAMES[0], 'artifacts')
    await writeFile(join(artifactsDir, `${orphan}.mjs`), 'export default {}\n')
    await writeFile(join(root, NAMES[0], 'code', `${orphan}.mjs`), 'export default {}\n')
    // All at once, with no --bootstrap: each node dials the full nodes it remembers, on the ports they
    // listened on (a peer not up yet is dialled again with backoff).
    for (const name of NAMES) nodes.push(cell(['up', '--data', join(root, name), '--authority', keyPath]))
    const restarted = await Promise.all(nodes.map(async p => (await p.waitFor(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)/, 30_000))[1]))
    // The first node's address is the one everybody held: same peer id and port.
    expect(restarted[0]).toBe(bootstrap)

    const after = await createClient({ bootstrap: [bootstrap], authorityKey: key })
    clients.push(after)
    await waitForReplicas(after, 'billing', { count: 1, timeoutMs: 90_000 }).catch((err) => { throw new Error(`${(err as Error).message}\n${fleetLogs(nodes)}`) })
    // The target is the rolled-back 1.0.0, not the newest release 1.1.0; held for 3 s so a 1.1.0
    // replica starting on its way would be seen.
    await waitForView(after, () => onlyRunning(after, v1, 2), 'only 1.0.0 replicas of versioned after the restart', { timeoutMs: 90_000, holdMs: 3_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}\n${fleetLogs(nodes)}`) })
    // All three nodes are in one fleet again, and each says so (its peers connect while it starts).
    await waitForView(after, () => after.view.nodes().length >= 3 ? true : undefined, 'three nodes in view', { timeoutMs: 30_000 })
    for (const p of nodes) expect(p.stdout(), p.stdout()).toMatch(/^peer joined …\w{6} \(\d fleet peers?\)$/m)

    // The restarted node swept the orphan and kept the artifacts of the releases it remembers.
    await expect.poll(async () => (await readdir(artifactsDir)).includes(`${orphan}.mjs`), { timeout: 30_000, interval: 200 }).toBe(false)
    expect(await readdir(join(root, NAMES[0], 'code'))).not.toContain(`${orphan}.mjs`)
    expect(await readdir(artifactsDir)).toEqual(expect.arrayContaining([`${v1}.mjs`, `${v2}.mjs`]))

    const charged = await after.call<{ amount: number, currency: string }>('billing', 'charge', { amount: 5, currency: 'EUR' }, { timeoutMs: 15_000 })
    expect(charged).toMatchObject({ amount: 5, currency: 'EUR' })
    for (let i = 0; i < 6; i++) expect(await after.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })).toBe('v1')
    const called = await cellRun(['call', 'billing', 'charge', '{"amount":7,"currency":"EUR"}', '--bootstrap', bootstrap, '--key', keyPath], 60_000)
    expect(called.code, called.stderr).toBe(0)
  }, 480_000)
})
