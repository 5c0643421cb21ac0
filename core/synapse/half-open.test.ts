// A peer that is refused (REJECT, then our graceful close) but never closes its own end and keeps
// writing must not hold the stream half-open: the server aborts it after handshakeTimeoutMs. Before
// the fix such streams stayed open (outside every channel count) for as long as the peer wished.
import { afterEach, describe, expect, it } from 'vitest'
import { acceptingAuth, createSynapseNode, testHandler } from '../../test/bench/nodes.ts'
import type { SynapseNode } from '../../test/bench/nodes.ts'
import { SYNAPSE_PROTOCOL } from './index.ts'

const nodes: SynapseNode[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

describe('synapse: refused streams do not stay half-open', () => {
  it('aborts a refused stream whose peer keeps writing and never closes', async () => {
    const server = await createSynapseNode({ ...acceptingAuth(), handler: testHandler(), maxPendingHandshakesPerPeer: 1, handshakeTimeoutMs: 500 })
    const attacker = await createSynapseNode({ ...acceptingAuth() })
    nodes.push(server, attacker)
    const addr = server.getMultiaddrs()[0]
    // The first stream takes the one pending-handshake slot; the second is refused at once.
    await attacker.dialProtocol(addr, SYNAPSE_PROTOCOL)
    const refused = await attacker.dialProtocol(addr, SYNAPSE_PROTOCOL)
    let closed = false
    refused.addEventListener('close', () => { closed = true }, { once: true })
    const chunk = new Uint8Array(1024)
    let sent = 0
    const deadline = Date.now() + 5_000
    while (!closed && Date.now() < deadline) {
      if (refused.status === 'open' && refused.writeStatus === 'writable') { refused.send(chunk); sent++ }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(closed, `the refused stream was still ${refused.status} after 5 s (${sent} KiB written)`).toBe(true)
  })
})
