// A replica that breaks the capsid framing on purpose (fixtures/hostile-cell.mjs writes raw bytes on
// the runner's socket): a torn batch, an oversized frame inside a batch, a meta length past its
// frame. The host must neither hang nor buffer without bound: the call in flight fails with a named
// error and the replica is gone.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { join } from 'node:path'
import { findBwrap, probeBwrap } from './sandbox.ts'
import { ReplicaCrashedError } from './errors.ts'
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
})
