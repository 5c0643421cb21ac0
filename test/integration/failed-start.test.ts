// A node whose start fails leaves nothing behind: not its socket directory (under /tmp by default,
// where nothing else would ever remove it), not its data dir's lock, not a listener. Before, a start
// that failed inside FullNode.create (a zfs pool that is not there) or in start() (a listen port that
// is taken) left its run dir for good when its data dir went too, and `cell up` left its lock.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { MetricsPortInUseError } from '../../node-host/telemetry/metrics-server.ts'

describe('a node whose start fails', () => {
  let root = ''
  let runParent = ''
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-failed-start-'))
    runParent = join(root, 'sockets')
    await mkdir(runParent)
  })
  afterEach(async () => { await rm(root, { recursive: true, force: true }) })

  const records = async (dataDir: string): Promise<string[]> => await readdir(join(dataDir, 'run')).catch(() => [])

  /** Runs `fn` with a loopback TCP port another listener holds, released after. */
  async function withTakenPort (fn: (port: number) => Promise<void>): Promise<void> {
    const taken: Server = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      await fn((taken.address() as { port: number }).port)
    } finally {
      await new Promise<void>((resolve) => taken.close(() => { resolve() }))
    }
  }

  it('in create (a zfs pool that is not there): no run dir, no record, and the data dir can be used at once', async () => {
    const authority = await generateAuthority()
    const dataDir = join(root, 'n1')
    const failed = FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { webrtc: false }, storage: { zfsPool: 'cell-no-such-pool' } })
    // ZfsUnavailableError without a zfs-fuse daemon, a named pool error with one.
    await expect(failed).rejects.toHaveProperty('name', expect.stringMatching(/^Zfs\w*Error$/))
    expect(await readdir(runParent)).toEqual([])
    expect(await records(dataDir)).toEqual([])
    // Not locked: the same directory starts a node now, whose run dir is its own.
    const node = await FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { webrtc: false } })
    expect(await readdir(runParent)).toHaveLength(1)
    // Made, never started, stopped: its run dir goes too.
    await node.stop()
    expect(await readdir(runParent)).toEqual([])
    expect(await records(dataDir)).toEqual([])
  }, 60_000)

  it('in start (its TCP port is taken): stopped again, listening nowhere, run dir and lock gone', async () => {
    const authority = await generateAuthority()
    const dataDir = join(root, 'n2')
    await withTakenPort(async (port) => {
      const node = await FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { host: '127.0.0.1', tcp: port, webrtc: false } })
      expect(await readdir(runParent)).toHaveLength(1)
      await expect(node.start()).rejects.toThrow()
      expect(await readdir(runParent)).toEqual([])
      expect(await records(dataDir)).toEqual([])
      expect(node.addresses()).toEqual([])
      // The lock went with it: the same data dir starts and stops cleanly on a free port.
      const again = await FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { host: '127.0.0.1', tcp: 0, webrtc: false } })
      await again.start()
      expect(again.addresses().length).toBeGreaterThan(0)
      await again.stop()
      expect(await readdir(runParent)).toEqual([])
    })
  }, 60_000)

  it('in start, before joining (its metrics port is taken): run dir and lock gone, by name', async () => {
    const authority = await generateAuthority()
    const dataDir = join(root, 'n3')
    await withTakenPort(async (port) => {
      const node = await FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { host: '127.0.0.1', tcp: 0, webrtc: false }, metrics: { host: '127.0.0.1', port } })
      await expect(node.start()).rejects.toBeInstanceOf(MetricsPortInUseError)
      expect(await readdir(runParent)).toEqual([])
      expect(await records(dataDir)).toEqual([])
      const again = await FullNode.create({ dataDir, runParent, authorityKeys: [authority], listen: { host: '127.0.0.1', tcp: 0, webrtc: false } })
      await again.stop()
    })
  }, 60_000)
})
