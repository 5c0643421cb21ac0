// Integration: the failure detector on a real libp2p node (TCP + noise + yamux + identify on
// 127.0.0.1) watching two real peers, with the system clock. A peer whose libp2p stopped is
// reported down after suspectMs; a peer whose connection merely dropped is redialled and not reported.
import { describe, it, expect, afterAll } from 'vitest'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { systemClock } from '../ports.ts'
import { FailureDetector } from './failure-detector.ts'
import { until } from './testing.ts'

const SUSPECT_MS = 1_500
/** Slack for event delivery and a loaded 2-core machine; the bound is on the report, not a sleep. */
const MARGIN_MS = 2_500

const started: Libp2p[] = []

async function node (): Promise<Libp2p> {
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
  started.push(libp2p)
  return libp2p
}

afterAll(async () => {
  for (const n of started) await n.stop()
})

describe('failure detector over real libp2p nodes', () => {
  it('reports a stopped peer within suspectMs + margin, leaves a live one alone, and redials a peer it only hung up on', async () => {
    const [a, b, c] = [await node(), await node(), await node()]
    const [bId, cId] = [b.peerId.toString(), c.peerId.toString()]
    await a.dial(b.getMultiaddrs()[0])
    await a.dial(c.getMultiaddrs()[0])
    const seqs = new Map([[bId, 41], [cId, 77]])
    const reports: Array<[string, number]> = []
    const reported = new EventTarget()
    const open = (id: string): boolean => a.getConnections(peerIdFromString(id)).some(conn => conn.status === 'open')
    const fd = new FailureDetector({
      clock: systemClock,
      events: a,
      selfId: a.peerId.toString(),
      suspectMs: SUSPECT_MS,
      isConnected: open,
      dial: async (id, { signal }) => await a.dial(peerIdFromString(id), { signal }),
      watched: (id) => {
        const seq = seqs.get(id)
        return seq === undefined ? undefined : { seq }
      },
      report: async (subject, subjectSeq) => {
        reports.push([subject, subjectSeq])
        reported.dispatchEvent(new Event('report'))
      }
    })
    fd.start()
    try {
      expect(open(bId) && open(cId)).toBe(true)

      // B dies: its libp2p stops, so the connection closes and the redial is refused.
      const lostAt = Date.now()
      await b.stop()
      await until('the report of B', () => reports.length > 0, reported, 'report', SUSPECT_MS + MARGIN_MS)
      const tookMs = Date.now() - lostAt
      expect(reports).toEqual([[bId, 41]])
      expect(tookMs).toBeGreaterThanOrEqual(SUSPECT_MS - 50)
      expect(tookMs).toBeLessThan(SUSPECT_MS + MARGIN_MS)
      expect(fd.stats()).toMatchObject({ suspected: 1, reported: 1, recovered: 0, redials: 1, dialFailures: 1, suspects: 0 })
      expect(open(cId)).toBe(true)

      // C stays alive but A hangs up on it: the detector's redial reconnects (C does not dial A by itself).
      const reconnected = until('A reconnected to C', () => open(cId) && fd.stats().recovered === 1, a, 'peer:connect', SUSPECT_MS)
      await a.hangUp(c.peerId)
      expect(fd.suspects()).toEqual([cId])
      await reconnected
      expect(a.getConnections(c.peerId).map(conn => conn.direction)).toContain('outbound')
      expect(fd.stats()).toMatchObject({ suspected: 2, reported: 1, recovered: 1, redials: 2, dialFailures: 1, suspects: 0 })
      // Nothing is left to report C: it is no suspect any more, so no deadline can fire for it.
      expect(fd.suspects()).toEqual([])
      expect(reports).toEqual([[bId, 41]])
    } finally {
      fd.stop()
    }
    expect(fd.stats().suspects).toBe(0)
  })
})
