import { describe, expect, it } from 'vitest'
import { decodeFrames, FrameType } from '../wire/index.ts'
import { BackpressureError, ChannelClosedError } from './errors.ts'
import { StatsCounters } from './stats.ts'
import { FrameWriter } from './writer.ts'

/** A stream whose buffer is "full" until release() is called. */
function fakeStream (accept: boolean): { sent: Uint8Array[], release(): void, spuriousDrain(): void, send(d: Uint8Array): boolean, writableNeedsDrain: boolean, addEventListener(t: 'drain', l: () => void): void } {
  let listeners: Array<() => void> = []
  const emit = (): void => { const ls = listeners; listeners = []; for (const l of ls) l() }
  return {
    sent: [],
    writableNeedsDrain: false,
    send (d) { this.sent.push(d); if (!accept) this.writableNeedsDrain = true; return accept },
    addEventListener (_t, l) { listeners.push(l) },
    release () { accept = true; this.writableNeedsDrain = false; emit() },
    /** A connection-level drain while this stream still needs drain. */
    spuriousDrain () { emit() }
  }
}

function writer (stream: ReturnType<typeof fakeStream>, stats = new StatsCounters()): FrameWriter {
  return new FrameWriter(stream, stats, {
    maxFrameBytes: 1024 * 1024, flushBytes: 4096, highWaterBytes: 8192, maxQueuedBytes: 16_384, maxDrainWaiters: 2, onError: (err) => { throw err }
  })
}

describe('frame writer', () => {
  it('coalesces a tick of frames into one write at the microtask, or at flushBytes', async () => {
    const stream = fakeStream(true)
    const stats = new StatsCounters()
    const w = writer(stream, stats)
    for (let i = 0; i < 10; i++) { w.encoder.frame(FrameType.MESSAGE, i, new Uint8Array(10)); w.commit() }
    expect(stream.sent).toHaveLength(0)
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(stream.sent).toHaveLength(1)
    expect(decodeFrames(stream.sent[0]).map(f => f.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    for (let i = 0; i < 100; i++) { w.encoder.frame(FrameType.MESSAGE, i, new Uint8Array(100)); w.commit() }
    // 104-byte frames: a flush after every 40 (4160 ≥ 4096 bytes), twice before the tick ends
    expect(stream.sent.length).toBe(3)
    expect(stats.writes).toBe(3)
    expect(stats.framesOut).toBe(10 + 80)
  })

  it('waits a few promise reactions so answers settling a little later join the same write', async () => {
    // A sampled call's answer settles one or two reactions after the others: if it missed the
    // write, the batch split in two, and the split compounded round after round (bench: calls fell
    // to a fraction of their rate with 1 % of them traced).
    const stream = fakeStream(true)
    const w = writer(stream)
    const answer = (id: number): void => { w.encoder.frame(FrameType.RESULT, id, new Uint8Array(4)); w.commit() }
    const settled = Promise.resolve()
    for (let id = 1; id <= 3; id++) void settled.then(() => { answer(id) })
    void settled.then(() => undefined).then(() => undefined).then(() => { answer(4) })
    await new Promise(resolve => setTimeout(resolve, 0))
    expect(stream.sent).toHaveLength(1)
    expect(decodeFrames(stream.sent[0]).map(f => f.id)).toEqual([1, 2, 3, 4])
  })

  it('holds frames while the stream needs drain, bounded, and resumes on drain', async () => {
    const stream = fakeStream(false)
    const w = writer(stream)
    w.encoder.frame(FrameType.MESSAGE, 1, new Uint8Array(5000)); w.commit()
    expect(stream.sent).toHaveLength(1)
    expect(w.blocked).toBe(true)
    expect(w.writable).toBe(false)
    const drained = w.waitForDrain()
    let n = 0
    expect(() => {
      for (;;) { w.checkCapacity(); w.encoder.frame(FrameType.MESSAGE, 2, new Uint8Array(1000)); w.commit(); n++ }
    }).toThrow(BackpressureError)
    expect(n).toBe(17) // 1004-byte frames until the queue reaches the 16 KiB cap, not unbounded
    expect(stream.sent).toHaveLength(1)
    stream.spuriousDrain()
    await new Promise(resolve => setImmediate(resolve))
    expect(stream.sent).toHaveLength(1) // still needs drain: nothing more handed over
    expect(w.blocked).toBe(true)
    stream.release()
    await drained
    expect(stream.sent).toHaveLength(2)
    expect(decodeFrames(stream.sent[1])).toHaveLength(17)
    expect(w.writable).toBe(true)
  })

  it('bounds drain waiters and fails them on close', async () => {
    const stream = fakeStream(false)
    const w = writer(stream)
    w.encoder.frame(FrameType.MESSAGE, 1, new Uint8Array(5000)); w.commit()
    const a = w.waitForDrain()
    const b = w.waitForDrain()
    await expect(w.waitForDrain()).rejects.toBeInstanceOf(BackpressureError)
    w.close(new Error('gone'))
    await expect(a).rejects.toBeInstanceOf(ChannelClosedError)
    await expect(b).rejects.toBeInstanceOf(ChannelClosedError)
    expect(() => { w.checkCapacity() }).toThrow(ChannelClosedError)
  })
})
