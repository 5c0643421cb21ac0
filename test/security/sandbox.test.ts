// A hostile cell against real strict (bubblewrap) capsids started by a real ReplicaSet: it tries to
// read /etc/shadow, the node's keys, another replica's volume, to reach a host service on
// 127.0.0.1, to fork-bomb, to allocate 4 GiB and to fill /tmp. Each attempt must fail by name
// (an errno, or ReplicaCrashedError with exit.limit = 'memory') while an honest replica on the
// same node keeps answering, during and after.
//
// How each test fails against the old sandbox. Checked in a copy of this tree whose start-capsid
// launched bwrap with the old bwrapArgs of 9a88b5f (every top-level directory of / bound
// read-only, /tmp an uncapped tmpfs) and with no replica uid, no prlimit and no cgroups, i.e. the
// replica ran as uid 0 without limits; running this file there:
//   - uid: the cell saw uid 0.
//   - /etc/shadow and the keys: read returned their text (whole / bound, uid 0; the node data dir
//     lives under /var/tmp here, as ~/.cell does in production: not under the replaced /tmp).
//   - other volume: read returned replica A's secret, by its host path.
//   - fork bomb: all `max` (128) children started, no failure.
//   - 4 GiB: the allocation succeeded (no memory limit), the call returned.
//   - /tmp: the writes reached the fuse (256 MiB) with no ENOSPC (/tmp was an uncapped tmpfs).
// The 127.0.0.1 test passed before too (bwrap already unshared the network); it guards that the
// strict level keeps doing so, which process mode cannot (see the last describe).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile, mkdir, readdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { Server } from 'node:net'
import { join, basename } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ReplicaSet } from '../../node-host/replica-set.ts'
import type { ReplicaInfo } from '../../node-host/replica-set.ts'
import { findBwrap, probeBwrap } from '../../node-host/capsid/sandbox.ts'
import { ReplicaCrashedError, SandboxTooWeakError } from '../../node-host/capsid/errors.ts'
import type { Capsid, CapsidExit } from '../../node-host/capsid/capsid.ts'
import { buildTo, json, unjson } from '../../node-host/capsid/test-helpers.ts'
import { systemClock, systemRandom } from '../../core/ports.ts'

const bwrap = findBwrap()
const strictHere = bwrap !== undefined && probeBwrap(bwrap) === undefined
const root = process.getuid?.() === 0
const MiB = 1024 * 1024
const TMP_BYTES = 16 * MiB
const PIDS = 64

let nodeDir = ''
let runDir = ''
let buildDir = ''
let hostile = ''
let honest = ''
let replicas: ReplicaSet
let a: Capsid
let b: Capsid
let good: Capsid
let volumeA = ''
const secret = `volume-secret-${randomBytes(8).toString('hex')}`
const keySecret = `peer-key-${randomBytes(8).toString('hex')}`

const deadline = (ms = 10_000): number => Date.now() + ms
const call = async (c: Capsid, method: string, req: unknown, ms = 10_000): Promise<any> => unjson(await c.call(method, json(req), { deadlineMs: deadline(ms) }))

/**
 * Run `attack` while the honest replica answers an echo every 50 ms; every honest call must
 * succeed during the attack and one more after it.
 */
async function whileHonestServes<T> (attack: () => Promise<T>): Promise<T> {
  let stop = false
  let answered = 0
  const failures: unknown[] = []
  const loop = (async () => {
    while (!stop) {
      try {
        expect(await call(good, 'echo', { n: answered }, 5000)).toEqual({ n: answered })
        answered++
      } catch (err) {
        failures.push(err)
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  })()
  try {
    return await attack()
  } finally {
    stop = true
    await loop
    expect(failures).toEqual([])
    expect(answered).toBeGreaterThan(0)
    expect(await call(good, 'echo', 'after')).toBe('after')
  }
}

function exitOf (c: Capsid): Promise<CapsidExit> {
  return c.exited
}

describe.skipIf(!strictHere)('strict sandbox against a hostile cell', () => {
  beforeAll(async () => {
    // Not under /tmp: the node's real data dir (~/.cell) is not either, and bwrap always hid the host /tmp.
    nodeDir = await mkdtemp('/var/tmp/cell-sec-')
    runDir = await mkdtemp('/tmp/cs-')
    buildDir = await mkdtemp('/tmp/csb-')
    await writeFile(join(nodeDir, 'peer.key'), keySecret, { mode: 0o600 })
    await writeFile(join(nodeDir, 'authority.key'), keySecret, { mode: 0o600 })
    hostile = await buildTo(buildDir, join(import.meta.dirname, 'fixtures'), 'hostile-cell.ts', 'hostile')
    honest = await buildTo(buildDir, join(import.meta.dirname, '..', '..', 'node-host', 'capsid', 'fixtures'), 'test-cell.ts', 'honest')
    replicas = new ReplicaSet({ dataDir: nodeDir, runDir, sandbox: 'bwrap', clock: systemClock, random: systemRandom, maxReplicas: 8, limits: { tmpBytes: TMP_BYTES, pids: PIDS } })
    expect(replicas.sandboxLevel).toBe('strict')
    const spawn = async (cell: string, codePath: string): Promise<ReplicaInfo & { capsid: Capsid }> =>
      await replicas.spawn({ cell, version: '1.0.0', digest: basename(codePath), codePath }, { signal: AbortSignal.timeout(30_000) }) as ReplicaInfo & { capsid: Capsid }
    const ra = await spawn('hostile', hostile)
    const rb = await spawn('hostile', hostile)
    const rg = await spawn('honest', honest)
    a = ra.capsid
    b = rb.capsid
    good = rg.capsid
    // Replica A keeps a secret in its own volume; B will go looking for it. A's volume is the one
    // whose name tag A finds at /cell/data.
    const volumes = await readdir(join(nodeDir, 'volumes'))
    expect(volumes.length).toBe(3)
    for (const v of volumes) await writeFile(join(nodeDir, 'volumes', v, 'probe'), v)
    const seen = await call(a, 'read', { paths: ['/cell/data/probe'] })
    expect(seen[0].ok).toBe(true)
    volumeA = join(nodeDir, 'volumes', seen[0].value)
    await writeFile(join(volumeA, 'secret.txt'), secret)
  }, 90_000)

  afterAll(async () => {
    await replicas?.stopAll()
    for (const dir of [nodeDir, runDir, buildDir]) if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it.runIf(root)('runs the cell as an unprivileged uid of its own, not as root', async () => {
    const ida = await call(a, 'whoami', null)
    const idb = await call(b, 'whoami', null)
    for (const id of [ida, idb]) {
      expect(id.uid).not.toBe(0)
      expect(id.euid).not.toBe(0)
      expect(id.gid).not.toBe(0)
      expect(id.groups).not.toContain(0)
    }
    expect(ida.uid).not.toBe(idb.uid)
  })

  it('cannot read /etc/shadow or list /root, /work, /etc', async () => {
    const reads = await whileHonestServes(async () => await call(b, 'read', { paths: ['/etc/shadow', '/etc/passwd', '/proc/1/root/etc/shadow'] }))
    for (const r of reads) {
      expect(r.ok, r.path).toBe(false)
      expect(['ENOENT', 'EACCES'], r.path).toContain(r.code)
    }
    const lists = await call(b, 'list', { paths: ['/root', '/work', '/etc', '/home', '/var'] })
    for (const l of lists) {
      expect(l.ok, l.path).toBe(false)
      expect(l.code, l.path).toBe('ENOENT')
    }
  })

  it('cannot read the node\'s keys, by host path or from its own volume', async () => {
    const paths = [join(nodeDir, 'peer.key'), join(nodeDir, 'authority.key'), '/cell/data/../peer.key', '/cell/data/../../peer.key', '/cell/peer.key']
    const reads = await whileHonestServes(async () => await call(b, 'read', { paths }))
    for (const r of reads) {
      expect(r.ok, `${r.path}: ${JSON.stringify(r)}`).toBe(false)
      expect(['ENOENT', 'EACCES'], r.path).toContain(r.code)
    }
  })

  it('cannot read another replica\'s volume', async () => {
    const paths = [join(volumeA, 'secret.txt'), join('/cell/data/..', basename(volumeA), 'secret.txt')]
    const reads = await whileHonestServes(async () => await call(b, 'read', { paths }))
    for (const r of reads) {
      expect(r.ok, `${r.path}: ${JSON.stringify(r)}`).toBe(false)
      expect(['ENOENT', 'EACCES'], r.path).toContain(r.code)
    }
    // Control: the secret is there, and its owner reads it.
    expect((await call(a, 'read', { paths: ['/cell/data/secret.txt'] }))[0]).toMatchObject({ ok: true, value: secret })
  })

  it('cannot reach a host service listening only on 127.0.0.1', async () => {
    let accepted = 0
    const server: Server = createServer(sock => { accepted++; sock.destroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as { port: number }).port
      const r = await whileHonestServes(async () => await call(b, 'connect', { port }))
      expect(r).toEqual({ connected: false, code: 'ECONNREFUSED' })
      expect(accepted).toBe(0)
    } finally {
      await new Promise(resolve => server.close(resolve))
    }
  })

  it('a fork bomb hits the process limit (EAGAIN) and the replica lives on', async () => {
    const max = 2 * PIDS
    const r = await whileHonestServes(async () => await call(b, 'forkBomb', { max }, 60_000))
    expect(r.started).toBeLessThan(max)
    // fork() itself refused (EAGAIN), or a child could not start its threads and aborted.
    expect(['EAGAIN', 'SIGABRT', 'SIGTRAP', 'exit 1', 'exit 134']).toContain(r.failure)
    expect(await call(b, 'echo', 'still here')).toBe('still here')
  }, 90_000)

  it('filling /tmp stops at its cap with ENOSPC', async () => {
    const r = await whileHonestServes(async () => await call(b, 'fill', { path: '/tmp/fill', maxMiB: 256 }, 30_000))
    expect(r.code).toBe('ENOSPC')
    expect(r.writtenMiB).toBeLessThanOrEqual(TMP_BYTES / MiB)
    expect(await call(b, 'echo', 'still here')).toBe('still here')
  }, 60_000)

  it('a 4 GiB allocation is killed at the memory limit: ReplicaCrashedError naming the limit', async () => {
    const exited = exitOf(b)
    const err = await whileHonestServes(async () => await b.call('allocate', json({ gib: 4 }), { deadlineMs: deadline(60_000) }).catch(e => e))
    expect(err).toBeInstanceOf(ReplicaCrashedError)
    expect(err.name).toBe('ReplicaCrashedError')
    const exit = await exited
    expect(exit.crashed).toBe(true)
    expect(exit.limit).toBe('memory')
    expect(exit.reason).toMatch(/memory limit of 512 MiB/)
    expect(err.message).toMatch(/memory limit/)
    // The other replicas of the node are untouched.
    expect(await call(a, 'echo', 'a lives')).toBe('a lives')
  }, 90_000)
})

describe.skipIf(!strictHere)('sandbox levels', () => {
  it('a process-mode node refuses a release that requires strict, by name, and runs one that accepts process', async () => {
    const dir = await mkdtemp('/tmp/csp-')
    try {
      const art = await buildTo(dir, join(import.meta.dirname, '..', '..', 'node-host', 'capsid', 'fixtures'), 'test-cell.ts', 'honest')
      await mkdir(join(dir, 'node'))
      const set = new ReplicaSet({ dataDir: join(dir, 'node'), runDir: join(dir, 'run'), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 2 })
      expect(set.sandboxLevel).toBe('process')
      const spec = { cell: 'honest', version: '1.0.0', digest: 'd', codePath: art }
      await expect(set.spawn({ ...spec, manifest: { sandbox: { require: 'strict' } } })).rejects.toBeInstanceOf(SandboxTooWeakError)
      // No manifest key means the default, strict.
      await expect(set.spawn(spec)).rejects.toBeInstanceOf(SandboxTooWeakError)
      expect(set.list()).toEqual([])
      const r = await set.spawn({ ...spec, manifest: { sandbox: { require: 'process' } } }, { signal: AbortSignal.timeout(20_000) })
      expect(unjson(await r.capsid!.call('echo', json(1), { deadlineMs: deadline() }))).toBe(1)
      await set.stopAll()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
