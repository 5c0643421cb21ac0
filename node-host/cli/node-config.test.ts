import { describe, it, expect } from 'vitest'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readNodeConfig, NodeConfigError } from './node-config.ts'

describe('node config', () => {
  it('reads bootstrap, trust and grants; absent optional file is empty; bad files are named', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cell-cfg-'))
    try {
      const good = join(dir, 'good.toml')
      await writeFile(good, `bootstrap = ["/ip4/127.0.0.1/tcp/1/p2p/12D3KooWabc"]\ntrust = ["${'ab'.repeat(32)}"]\n`)
      expect(await readNodeConfig(good)).toEqual({ bootstrap: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWabc'], trust: ['ab'.repeat(32)], grants: [] })
      expect(await readNodeConfig(join(dir, 'absent.toml'), { optional: true })).toEqual({ bootstrap: [], trust: [], grants: [] })
      await expect(readNodeConfig(join(dir, 'absent.toml'))).rejects.toBeInstanceOf(NodeConfigError)
      const pool = join(dir, 'pool.toml')
      await writeFile(pool, 'zfs_pool = "tank"\n')
      expect(await readNodeConfig(pool)).toEqual({ bootstrap: [], trust: [], grants: [], zfsPool: 'tank' })
      for (const [name, text] of [['pool-path', 'zfs_pool = "tank/cell"'], ['pool-type', 'zfs_pool = 1'], ['syntax', 'bootstrap = ['], ['unknown', 'bootstrapp = []'], ['type', 'trust = "x"'], ['hex', 'trust = ["xyz"]'], ['addr', 'bootstrap = ["host:1"]']]) {
        const file = join(dir, `${name}.toml`)
        await writeFile(file, text)
        await expect(readNodeConfig(file)).rejects.toBeInstanceOf(NodeConfigError)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
