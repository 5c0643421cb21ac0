// The listener's failure modes that need no browser: a sidecar that never comes up does not stop the
// node (it starts, without a WebTransport address, and the supervisor keeps trying).
import { describe, it, expect } from 'vitest'
import { createLibp2p } from 'libp2p'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { webTransportListener, type WebTransportHandle } from './transport.ts'

describe('WebTransport listener without a working sidecar', () => {
  it('lets the node start without the address and keeps restarting the sidecar with backoff', async () => {
    let handle: WebTransportHandle | undefined
    const node = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1/webtransport'] },
      // /bin/false exits at once, as a Deno that cannot run would.
      transports: [tcp(), webTransportListener({ deno: '/bin/false', startTimeoutMs: 1500 }, (h) => { handle = h })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })
    try {
      const addrs = node.getMultiaddrs().map(String)
      expect(addrs.some(a => a.includes('/tcp/'))).toBe(true)
      expect(addrs.some(a => a.includes('/webtransport'))).toBe(false)
      // Restarted (500 ms, then 1 s backoff): wait for the second start with a deadline.
      const deadline = Date.now() + 10_000
      while (handle!.stats().starts < 2 && Date.now() < deadline) await new Promise<void>((resolve) => { setTimeout(resolve, 50) })
      expect(handle!.stats().starts).toBeGreaterThanOrEqual(2)
    } finally {
      await node.stop()
    }
    const starts = handle!.stats().starts
    await new Promise<void>((resolve) => { setTimeout(resolve, 1500) })
    expect(handle!.stats().starts).toBe(starts) // stopped with the node: no more restarts
  })
})
