// `cell up --dashboard` in a child process: the node serves the built page and a cell-config.json
// naming its own WebSocket address and trusted authority; with --dashboard-grants it signs caller
// grants for tabs; SIGTERM stops the server and the node cleanly.
import { afterAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeGrantToken } from '../../core/identity/index.ts'
import { cell, cellRun, stopProc, type Proc } from '../../test/integration/processes.ts'

describe('cell up --dashboard', () => {
  let dir = ''
  let proc: Proc | undefined
  afterAll(async () => {
    if (proc !== undefined) await stopProc(proc)
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('serves the page and its config from a full node', async () => {
    dir = await mkdtemp(join(tmpdir(), 'cell-up-dashboard-'))
    const env = { CELL_HOME: dir }
    expect((await cellRun(['up', '--dashboard-grants'], 15_000, env)).stderr).toMatch(/UsageError: --dashboard-grants needs --dashboard/)
    const keygen = await cellRun(['keygen', '--out', join(dir, 'authority.key')], 15_000, env)
    expect(keygen.code).toBe(0)
    const authorityId = keygen.stdout.match(/[0-9a-f]{64}/)![0]
    proc = cell(['up', '--data', join(dir, 'node'), '--authority', join(dir, 'authority.key'), '--sandbox', 'process', '--dashboard', '--dashboard-grants'], env)
    // The first run on a clean checkout builds dashboard/dist.
    const url = (await proc.waitFor(/^dashboard (http:\/\/127\.0\.0\.1:\d+\/)$/m, 120_000))[1]
    const ws = proc.stdout().match(/listening (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/\S+)/)![1]
    const peerId = proc.stdout().match(/^cell node (\S+)$/m)![1]

    const config = await (await fetch(new URL('cell-config.json', url), { signal: AbortSignal.timeout(10_000) })).json()
    expect(config).toEqual({ bootstrap: [ws], trust: [authorityId], grantUrl: 'grant', grantSecret: expect.stringMatching(/^[\w-]{43}$/) })
    const page = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    expect(page.status).toBe(200)
    expect(await page.text()).toMatch(/<script type="module"[^>]* src="\.\/assets\/index-[\w-]+\.js"/)
    // Without the page's per-run secret the endpoint signs nothing (test/security/dashboard-grant.test.ts has the rest).
    const refused = await fetch(new URL('grant', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peerId }), signal: AbortSignal.timeout(10_000) })
    expect(refused.status).toBe(403)
    const granted = await fetch(new URL('grant', url), { method: 'POST', headers: { 'content-type': 'application/json', 'x-cell-grant-secret': config.grantSecret }, body: JSON.stringify({ peerId }), signal: AbortSignal.timeout(10_000) })
    const cert = decodeGrantToken(((await granted.json()) as { token: string }).token)
    expect(cert).toMatchObject({ issuer: authorityId, subject: peerId, roles: ['caller'] })

    await stopProc(proc)
    expect(await proc.exited).toEqual({ code: 0, signal: null })
    await expect(fetch(url, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
  }, 180_000)
})
