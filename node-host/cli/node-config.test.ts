import { describe, it, expect } from 'vitest'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readNodeConfig, NodeConfigError } from './node-config.ts'
import { disseminationOf } from './fleet-options.ts'

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
      const mode = join(dir, 'mode.toml')
      await writeFile(mode, 'dissemination = "per-cell"\n')
      expect(await readNodeConfig(mode)).toEqual({ bootstrap: [], trust: [], grants: [], dissemination: 'per-cell' })
      const guests = join(dir, 'guests.toml')
      await writeFile(guests, 'guests_per_host = 64\nguests_total = 1024\n')
      expect(await readNodeConfig(guests)).toEqual({ bootstrap: [], trust: [], grants: [], guests: { perHost: 64, total: 1024 } })
      for (const bad of ['guests_per_host = 0', 'guests_total = 4097', 'guests_per_host = 1.5', 'guests_total = "256"']) {
        const file = join(dir, 'bad-guests.toml')
        await writeFile(file, bad)
        await expect(readNodeConfig(file)).rejects.toThrow(/must be a whole number from 1 to 4096/)
      }
      for (const [name, text] of [['mode-value', 'dissemination = "percell"'], ['mode-type', 'dissemination = 1'], ['pool-path', 'zfs_pool = "tank/cell"'], ['pool-type', 'zfs_pool = 1'], ['syntax', 'bootstrap = ['], ['unknown', 'bootstrapp = []'], ['type', 'trust = "x"'], ['hex', 'trust = ["xyz"]'], ['addr', 'bootstrap = ["host:1"]']]) {
        const file = join(dir, `${name}.toml`)
        await writeFile(file, text)
        await expect(readNodeConfig(file)).rejects.toBeInstanceOf(NodeConfigError)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('dissemination', () => {
  it('takes the flag, else CELL_DISSEMINATION, else the given config or node.toml, else fleet; a wrong value is a usage error', async () => {
    const home = await mkdtemp(join(tmpdir(), 'cell-home-'))
    const saved = { home: process.env.CELL_HOME, mode: process.env.CELL_DISSEMINATION }
    try {
      process.env.CELL_HOME = home
      delete process.env.CELL_DISSEMINATION
      expect(await disseminationOf(undefined)).toBe('fleet')
      await writeFile(join(home, 'node.toml'), 'dissemination = "per-cell"\n')
      expect(await disseminationOf(undefined)).toBe('per-cell')
      // A config the caller read (cell up --config) stands in for node.toml; absent there, fleet.
      expect(await disseminationOf(undefined, { dissemination: 'fleet' })).toBe('fleet')
      expect(await disseminationOf(undefined, {})).toBe('fleet')
      process.env.CELL_DISSEMINATION = 'fleet'
      expect(await disseminationOf(undefined)).toBe('fleet')
      expect(await disseminationOf(undefined, { dissemination: 'per-cell' })).toBe('fleet')
      expect(await disseminationOf('per-cell')).toBe('per-cell')
      await expect(disseminationOf('gossip')).rejects.toMatchObject({ name: 'UsageError', message: expect.stringContaining('--dissemination gossip') })
      process.env.CELL_DISSEMINATION = 'cells'
      await expect(disseminationOf(undefined)).rejects.toMatchObject({ name: 'UsageError', message: expect.stringContaining('CELL_DISSEMINATION cells') })
    } finally {
      if (saved.home === undefined) delete process.env.CELL_HOME
      else process.env.CELL_HOME = saved.home
      if (saved.mode === undefined) delete process.env.CELL_DISSEMINATION
      else process.env.CELL_DISSEMINATION = saved.mode
      await rm(home, { recursive: true, force: true })
    }
  })
})
