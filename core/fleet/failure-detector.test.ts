// Unit tests of the failure detector with a ManualClock and fake ports. The same detector runs
// over real libp2p nodes in failure-detector-libp2p.test.ts.
import { describe, it, expect } from 'vitest'
import { FailureDetector, FailureDetectorConfigError } from './failure-detector.ts'
import type { FailureDetectorInit, PeerIdLike } from './failure-detector.ts'
import { ManualClock } from '../testing/manual-clock.ts'

interface Dial { peerId: string, signal: AbortSignal, resolve: () => void, reject: (err: Error) => void }

/** Fake network: connection state, peer events, dials the test settles by hand, the view's watched peers. */
class FakeNet extends EventTarget {
  readonly open = new Set<string>()
  readonly seqs = new Map<string, number>()
  readonly dials: Dial[] = []
  readonly reports: Array<[string, number]> = []
  reportFails = false
  listeners = 0

  connect (id: string): void {
    this.open.add(id)
    this.dispatchEvent(new CustomEvent<PeerIdLike>('peer:connect', { detail: { toString: () => id } }))
  }

  disconnect (id: string): void {
    this.open.delete(id)
    this.dispatchEvent(new CustomEvent<PeerIdLike>('peer:disconnect', { detail: { toString: () => id } }))
  }

  override addEventListener (type: string, listener: EventListenerOrEventListenerObject | null): void {
    this.listeners++
    super.addEventListener(type, listener)
  }

  override removeEventListener (type: string, listener: EventListenerOrEventListenerObject | null): void {
    this.listeners--
    super.removeEventListener(type, listener)
  }

  ports (clock: ManualClock, extra: Partial<FailureDetectorInit> = {}): FailureDetectorInit {
    return {
      clock,
      events: this as unknown as FailureDetectorInit['events'],
      isConnected: (id) => this.open.has(id),
      dial: async (peerId, { signal }) => await new Promise<void>((resolve, reject) => {
        const d: Dial = { peerId, signal, resolve, reject }
        this.dials.push(d)
        signal.addEventListener('abort', () => { reject(new Error('aborted')) })
      }),
      watched: (id) => {
        const seq = this.seqs.get(id)
        return seq === undefined ? undefined : { seq }
      },
      report: async (subject, subjectSeq) => {
        this.reports.push([subject, subjectSeq])
        if (this.reportFails) throw new Error('publish failed')
      },
      selfId: 'self',
      ...extra
    }
  }
}

/** Lets settled promises' callbacks run (dial outcomes are observed asynchronously). */
const flush = async (): Promise<void> => { for (let i = 0; i < 5; i++) await Promise.resolve() }

function setup (extra: Partial<FailureDetectorInit> = {}): { clock: ManualClock, net: FakeNet, fd: FailureDetector } {
  const clock = new ManualClock()
  const net = new FakeNet()
  for (const [id, seq] of [['b', 5], ['c', 7], ['d', 9]] as const) { net.seqs.set(id, seq); net.connect(id) }
  const fd = new FailureDetector(net.ports(clock, extra))
  fd.start()
  return { clock, net, fd }
}

describe('FailureDetector', () => {
  it('reports a lost peer that stays unreachable once suspectMs passed, at the seq the view holds', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('b')
    expect(fd.suspects()).toEqual(['b'])
    expect(net.dials.map(d => d.peerId)).toEqual(['b'])
    clock.advance(2_999)
    await flush()
    expect(net.reports).toEqual([])
    net.seqs.set('b', 6) // a newer record arrived meanwhile (through another peer)
    clock.advance(1)
    await flush()
    expect(net.reports).toEqual([['b', 6]])
    expect(fd.stats()).toMatchObject({ suspected: 1, reported: 1, recovered: 0, redials: 1, dialFailures: 1, suspects: 0 })
    expect(net.dials[0].signal.aborted).toBe(true)
    expect(clock.pending).toBe(0)
    fd.stop()
  })

  it('does not report a peer that reconnects by itself in time, and cancels its redial', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('b')
    clock.advance(1_500)
    net.connect('b')
    expect(fd.suspects()).toEqual([])
    expect(net.dials[0].signal.aborted).toBe(true)
    expect(clock.pending).toBe(0)
    clock.advance(10_000)
    await flush()
    expect(net.reports).toEqual([])
    expect(fd.stats()).toMatchObject({ suspected: 1, recovered: 1, reported: 0, dialFailures: 0 })
    fd.stop()
  })

  it('does not report a peer the redial reached', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('c')
    clock.advance(300)
    net.open.add('c') // the dial's connection (its peer:connect may come later or never)
    net.dials[0].resolve()
    await flush()
    expect(fd.stats()).toMatchObject({ recovered: 1, dialFailures: 0, suspects: 0 })
    expect(clock.pending).toBe(0)
    clock.advance(10_000)
    await flush()
    expect(net.reports).toEqual([])
    fd.stop()
  })

  it('tries one redial per loss: repeated events do not dial again; a failed redial still waits for a reconnection', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('b')
    net.disconnect('b')
    net.disconnect('b')
    expect(net.dials).toHaveLength(1)
    net.dials[0].reject(new Error('connection refused'))
    await flush()
    expect(fd.stats()).toMatchObject({ redials: 1, dialFailures: 1, suspects: 1 })
    clock.advance(2_000)
    net.connect('b') // b dialed us back
    clock.advance(5_000)
    await flush()
    expect(net.reports).toEqual([])
    expect(fd.stats().recovered).toBe(1)
    fd.stop()
  })

  it('gives the redial its own deadline', async () => {
    const { clock, net, fd } = setup({ suspectMs: 3_000, redialTimeoutMs: 1_000 })
    net.disconnect('b')
    clock.advance(999)
    expect(net.dials[0].signal.aborted).toBe(false)
    clock.advance(1)
    expect(net.dials[0].signal.aborted).toBe(true)
    await flush()
    expect(fd.stats()).toMatchObject({ dialFailures: 1, suspects: 1 })
    clock.advance(2_000)
    await flush()
    expect(net.reports).toEqual([['b', 5]])
    fd.stop()
  })

  it('reports a subject once per seq, and again after it came back with a higher seq and was lost again', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('b')
    clock.advance(3_000)
    net.connect('b') // back, but no newer record yet
    net.disconnect('b')
    clock.advance(10_000)
    await flush()
    expect(net.reports).toEqual([['b', 5]])
    expect(net.dials).toHaveLength(1)
    net.seqs.set('b', 8) // its refutation (a higher seq)
    net.connect('b')
    net.disconnect('b')
    clock.advance(3_000)
    await flush()
    expect(net.reports).toEqual([['b', 5], ['b', 8]])
    expect(fd.stats()).toMatchObject({ suspected: 2, reported: 2 })
    fd.stop()
  })

  it('ignores peers the view does not watch, itself, and peers still connected', async () => {
    const { clock, net, fd } = setup()
    net.connect('tab')
    net.disconnect('tab') // not a live full node
    net.seqs.set('self', 1)
    net.disconnect('self')
    net.open.add('d')
    net.dispatchEvent(new CustomEvent<PeerIdLike>('peer:disconnect', { detail: { toString: () => 'd' } })) // another connection is open
    expect(fd.suspects()).toEqual([])
    expect(net.dials).toEqual([])
    clock.advance(10_000)
    await flush()
    expect(net.reports).toEqual([])
    expect(fd.stats().suspected).toBe(0)
    fd.stop()
  })

  it('does not report a suspect the view stopped watching before its deadline (expired or already down)', async () => {
    const { clock, net, fd } = setup()
    net.disconnect('b')
    net.seqs.delete('b')
    clock.advance(3_000)
    await flush()
    expect(net.reports).toEqual([])
    expect(fd.stats()).toMatchObject({ reported: 0, suspects: 0 })
    expect(clock.pending).toBe(0)
    fd.stop()
  })

  it('counts a report that failed and does not repeat it', async () => {
    const { clock, net, fd } = setup()
    net.reportFails = true
    net.disconnect('b')
    clock.advance(3_000)
    await flush()
    expect(fd.stats()).toMatchObject({ reported: 1, reportErrors: 1 })
    net.connect('b')
    net.disconnect('b')
    clock.advance(3_000)
    await flush()
    expect(net.reports).toEqual([['b', 5]])
    fd.stop()
  })

  it('bounds its suspects: the oldest is dropped, its timers cleared and its redial aborted', async () => {
    const { clock, net, fd } = setup({ maxSuspects: 2 })
    net.disconnect('b')
    clock.advance(100)
    net.disconnect('c')
    clock.advance(100)
    net.disconnect('d')
    expect(fd.suspects()).toEqual(['c', 'd'])
    expect(fd.stats()).toMatchObject({ dropped: 1, suspected: 3, suspects: 2 })
    expect(net.dials[0].signal.aborted).toBe(true)
    expect(clock.pending).toBe(4) // two deadlines and two redial deadlines
    clock.advance(3_000)
    await flush()
    expect(net.reports).toEqual([['c', 7], ['d', 9]])
    expect(fd.stats().dialFailures).toBe(2) // the dropped suspect's aborted redial is not counted as a failure
    fd.stop()
  })

  it('bounds the memory of reported seqs (oldest forgotten first)', async () => {
    const { clock, net, fd } = setup({ maxReported: 2 })
    for (const id of ['b', 'c', 'd']) net.disconnect(id)
    clock.advance(3_000)
    await flush()
    expect(net.reports).toHaveLength(3)
    // b was forgotten: a new loss at the same seq is reported again (the gossip layer's down records dedupe it).
    net.connect('b')
    net.disconnect('b')
    net.connect('d')
    net.disconnect('d')
    clock.advance(3_000)
    await flush()
    expect(net.reports.map(r => r[0])).toEqual(['b', 'c', 'd', 'b'])
    fd.stop()
  })

  it('stop() clears every timer, aborts every redial, removes its listeners and reports nothing afterwards', async () => {
    const { clock, net, fd } = setup()
    const before = net.listeners
    for (const id of ['b', 'c', 'd']) net.disconnect(id)
    expect(clock.pending).toBe(6)
    fd.stop()
    expect(clock.pending).toBe(0)
    expect(net.dials.every(d => d.signal.aborted)).toBe(true)
    expect(net.listeners).toBe(before - 2)
    expect(fd.suspects()).toEqual([])
    net.connect('b')
    net.disconnect('b')
    clock.advance(10_000)
    await flush()
    expect(net.reports).toEqual([])
    expect(net.dials).toHaveLength(3)
    expect(clock.pending).toBe(0)
    // A redial that resolves after stop changes nothing.
    net.dials[1].resolve()
    await flush()
    expect(fd.stats()).toMatchObject({ recovered: 0, reported: 0 })
  })

  it('refuses bad settings with a named error', () => {
    const clock = new ManualClock()
    const net = new FakeNet()
    const bad: Array<Partial<FailureDetectorInit>> = [
      { suspectMs: 0 }, { suspectMs: Number.NaN }, { suspectMs: -1 }, { redialTimeoutMs: 4_000 },
      { suspectMs: 1_000, redialTimeoutMs: 1_001 }, { maxSuspects: 0 }, { maxSuspects: 1.5 }, { maxReported: Infinity },
      { report: undefined as unknown as FailureDetectorInit['report'] }, { dial: 3 as unknown as FailureDetectorInit['dial'] }
    ]
    for (const extra of bad) {
      expect(() => new FailureDetector(net.ports(clock, extra)), JSON.stringify(extra)).toThrow(FailureDetectorConfigError)
    }
    try {
      new FailureDetector(net.ports(clock, { suspectMs: 0 })) // eslint-disable-line no-new
    } catch (err) {
      expect((err as Error).name).toBe('FailureDetectorConfigError')
    }
    // A short suspectMs shortens the default redial deadline with it.
    expect(new FailureDetector(net.ports(clock, { suspectMs: 500 })).redialTimeoutMs).toBe(500)
  })
})
