// Issue 10 point 2: a cell that asks for class = "zfs" on a fleet with no ZFS pool is never given a
// directory instead: `cell publish` fails with NoStorageClassError naming what the fleet offers, no
// replica starts, and every node's reasons for the cell (what `cell status` shows) say why by name.
import { describe, it, expect, afterAll } from 'vitest'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { createClient, waitForView } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { NoStorageClassError } from '../../node-host/storage/errors.ts'
import { projectRoot } from './processes.ts'
import { TestFleet, ticks } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'

describe('a zfs cell on a fleet without a pool', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  afterAll(async () => { await fleet.stop() })

  it('is refused by name at publish and in the nodes\' reasons, and runs nowhere', async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-storage-class-', 2, { authorityKeys: [key] })
    for (const n of nodes) expect(n.storageSummary()).toMatch(/^dir only/)
    const dir = await stageCell(join(projectRoot, 'examples', 'ledger'), join(root, 'ledger'), authorityIdOf(key.publicKey))
    const toml = join(dir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace(/class = "[a-z]+"/, 'class = "zfs"'))
    const operator = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: key })
    clients.push(operator)
    await waitForView(operator, () => operator.view.nodes().filter(n => n.roles.includes('storage-dir')).length >= 2 ? true : undefined, 'both nodes in view with their storage roles', { timeoutMs: 30_000 })
    const err = await new Publisher(operator).publish(dir, '1.0.0', key, { setAuthority: true, timeoutMs: 30_000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoStorageClassError)
    expect((err as Error).message).toMatch(/"zfs" is not offered \(offered: dir\)/)
    await waitForView(operator, () => nodes.every(n => n.releases.latest('ledger') !== undefined) ? true : undefined, 'ledger prepared on both nodes', { timeoutMs: 30_000 })
    await ticks(operator, nodes, 3)
    for (const n of nodes) {
      expect(n.loop.lastReasons.get('ledger')?.[0]).toMatch(/^NoStorageClassError: no node in view offers storage class "zfs"/)
      expect(n.replicas.list('ledger')).toEqual([])
    }
  }, 120_000)
})
