// Three full nodes and a publisher/caller in one process over real libp2p on loopback: the release
// travels by gossip, the artifact through the DHT, replicas run in real capsids.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { publishCell } from '../../node-host/publisher.ts'
import type { Mesh } from '../../core/mesh/index.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')

describe('in-process fleet', () => {
  const nodes: FullNode[] = []
  const clients: Mesh[] = []
  let root = ''
  afterAll(async () => {
    await Promise.all(clients.map(async c => await c.stop()))
    await Promise.all(nodes.map(async n => await n.stop()))
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  it('publishes billing and answers a typed call; an unknown authority is rejected', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-fleet-'))
    const authority = await generateAuthority()
    for (let i = 0; i < 3; i++) {
      const bootstrap = i === 0 ? [] : [nodes[0].addresses()[0]]
      const node = await FullNode.create({ dataDir: join(root, `n${i}`), bootstrap, authorityKeys: [authority], heartbeatMs: 500, tickMs: 250 })
      await node.start()
      nodes.push(node)
    }
    const publisher = await createClient({ bootstrap: [nodes[0].addresses()[0]], authorityKey: authority, listen: true })
    clients.push(publisher)
    const result = await publishCell(publisher, billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 45_000 })
    expect(result.ready).toBeGreaterThanOrEqual(1)

    const caller = await createClient({ bootstrap: [nodes[1].addresses()[0]], authorityKey: authority })
    clients.push(caller)
    await waitForReplicas(caller, 'billing', { timeoutMs: 20_000 })
    const billing = caller.remote<{ charge: (req: { amount: number }) => Promise<{ id: string, amount: number }> }>('billing')
    const charged = await billing.charge({ amount: 5 })
    expect(charged.amount).toBe(5)
    expect(typeof charged.id).toBe('string')

    // A caller whose grant comes from an authority the cell does not trust is refused by name.
    const stranger = await createClient({ bootstrap: [nodes[2].addresses()[0]], authorityKey: await generateAuthority(), trust: [authorityIdOf(authority.publicKey)] })
    clients.push(stranger)
    await waitForReplicas(stranger, 'billing', { timeoutMs: 20_000 })
    await expect(stranger.call('billing', 'charge', { amount: 1 })).rejects.toMatchObject({ name: 'UnknownAuthorityError' })
  }, 120_000)
})
