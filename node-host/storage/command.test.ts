// The zfs/zpool runner's deadline: a command still running at it is killed and fails by name,
// so a stuck ZFS daemon cannot hang a node's storage work for ever. Real child processes.
import { describe, it, expect } from 'vitest'
import { run } from './command.ts'
import { StorageCommandError, StorageTimeoutError } from './errors.ts'

describe('storage command runner', () => {
  it('kills a command past its deadline and fails with StorageTimeoutError', async () => {
    const started = Date.now()
    const err = await run('sleep', ['30'], { timeoutMs: 200 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StorageTimeoutError)
    expect((err as StorageTimeoutError).message).toMatch(/^sleep 30 did not finish within 200 ms and was killed/)
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('returns the output of a command within its deadline, and names a failing one', async () => {
    expect(await run('echo', ['ok'], { timeoutMs: 10_000 })).toBe('ok\n')
    await expect(run('sh', ['-c', 'echo nope >&2; exit 3'])).rejects.toBeInstanceOf(StorageCommandError)
  })
})
