// A replica that breaks the capsid framing on purpose (fixtures/hostile-cell.mjs writes raw bytes on
// the runner's socket): a torn batch, an oversized frame inside a batch, a meta length past its
// frame. The host must neither hang nor buffer without bound: the call in flight fails with a named
// error and the replica is gone.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { join } from 'node:path'
import { findBwrap, probeBwrap } from './sandbox.ts'
import { CapsidBusyError, ReplicaCrashedError } from './errors.ts'
import { Harness, json, unjson } from './test-helpers.ts'

const bwrapPath = findBwrap()
const hasBwrap = bwrapPath !== undefined && probeBwrap(bwrapPath) === undefined
const h = new Harness()
const artifactPath = join(import.meta.dirname, 'fixtures', 'hostile-cell.mjs')
const deadline = (): number => Date.now() + 10_000

beforeAll(async () => { await h.setup() })
afterEach(async () => { await h.stopAll() })
afterAll(async () => { await h.teardown() })

describe.each([
  { sandbox: 'bwrap' as const, skip: !hasBwrap },
  { sandbox: 'process' as const, skip: false }
])('a hostile replica in $sandbox mode', ({ sandbox, skip }) => {
  for (const method of ['torn', 'oversized', 'badMeta']) {
    it.skipIf(skip)(`${method}: the call fails with ReplicaCrashedError and the replica is gone`, async () => {
      const { capsid } = await h.start({ artifactPath, sandbox, cell: 'hostile' })
      expect(unjson(await capsid.call('ok', json(null), { deadlineMs: deadline() }))).toBe('fine')
      const err = await capsid.call(method, json(null), { deadlineMs: deadline() }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ReplicaCrashedError)
      const exit = await capsid.exited
      expect(exit.crashed).toBe(true)
      expect(capsid.state).toBe('crashed')
    }, 20_000)
  }

  it.skipIf(skip)('stops reading its socket: messages and calls to it are refused (CapsidBusyError) past 64 MiB, not buffered without end', async () => {
    const { capsid } = await h.start({ artifactPath, sandbox, cell: 'hostile' })
    expect(unjson(await capsid.call('stopReading', json(null), { deadlineMs: deadline() }))).toBe('paused')
    const payload = new Uint8Array(3 * 1024 * 1024)
    let sent = 0
    let refused: unknown
    // Fire-and-forget messages get no answer, so nothing upstream pauses: the capsid itself must say no.
    for (let i = 0; i < 64 && refused === undefined; i++) {
      try {
        capsid.message('ok', payload)
        sent++
        // Let the batch go to the socket (one write per tick), as messages arriving over time would.
        await new Promise<void>((resolve) => { setImmediate(resolve) })
      } catch (err) { refused = err }
    }
    expect(refused).toBeInstanceOf(CapsidBusyError)
    expect((refused as Error).message).toMatch(/is backed up/)
    // The kernel's socket buffer takes a few MiB; the rest waits in the host's write buffer up to 64 MiB.
    expect(sent * payload.byteLength).toBeLessThanOrEqual(72 * 1024 * 1024)
    expect(() => capsid.message('ok', payload)).toThrow(CapsidBusyError)
    await expect(capsid.call('ok', json(null), { deadlineMs: deadline() })).rejects.toBeInstanceOf(CapsidBusyError)
  }, 30_000)
})
