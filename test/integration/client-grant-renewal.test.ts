// A client made with the user's authority key (`createClient({ authorityKey })`, what
// `cellmesh/client` scripts and services use) issues itself a caller grant. It was issued once, for
// an hour: a service calling cells for longer had every call refused after that hour. Now it is
// renewed at half its validity while the client runs. Here the grant lasts 2 s and the client calls
// billing for 5 s; on the old code the calls after the first grant's end failed
// (CertificateExpiredError: grant from … expired).
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { TestFleet } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'
import { projectRoot } from './processes.ts'

const GRANT_MS = 2_000

describe('a long-running client', () => {
  const fleet = new TestFleet()
  afterAll(async () => { await fleet.stop() })

  it('keeps calling past its first caller grant\'s end', async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-client-grant-', 1, { authorityKeys: [key] })
    const bootstrap = [fleet.nodes[0].addresses()[0]]
    const publisher = await createClient({ bootstrap, authorityKey: key })
    fleet.clients.push(publisher)
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authorityIdOf(key.publicKey))
    await new Publisher(publisher).publish(dir, '1.0.0', key, { waitReplicas: 1, timeoutMs: 60_000 })

    const client = await createClient({ bootstrap, authorityKey: key, grantValidityMs: GRANT_MS })
    fleet.clients.push(client)
    const firstEnd = Date.now() + GRANT_MS
    const failures: string[] = []
    let calls = 0
    // Calls at a steady pace, 2.5 grant lifetimes long.
    const until = Date.now() + 2.5 * GRANT_MS
    while (Date.now() < until) {
      await client.call<{ total: number }>('billing', 'quote', { amount: 100, currency: 'EUR' }, { timeoutMs: 5_000 })
        .then(q => { if (q.total !== 103.2) failures.push(`wrong quote ${JSON.stringify(q)}`) }, (err: Error) => { failures.push(`${err.name}: ${err.message}`) })
      calls++
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    expect(failures.slice(0, 3)).toEqual([])
    expect(calls).toBeGreaterThan(10)
    expect(Date.now()).toBeGreaterThan(firstEnd + GRANT_MS / 2)
  }, 120_000)
})
