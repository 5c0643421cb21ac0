// The log server's answer from fake replicas: start/lines/end frames in order, --tail and --since
// cut only what replicas present at the request said, a resume sends exactly what followed the
// cursor, lines the ring dropped before a slow reader got them are said as a gap, and the request
// parser refuses what is not a request.
import { describe, it, expect } from 'vitest'
import { LogRing } from '../capsid/log-ring.ts'
import { answerLogs, parseLogsRequest, type LogReplica, type LogSource } from './log-protocol.ts'
import { MalformedOperatorRequestError, type Json } from '../introspect/operator-wire.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

class FakeReplica {
  readonly ring = new LogRing(5)
  state: LogReplica['state'] = 'ready'
  exitReason?: string
  readonly instanceId: string
  constructor (instanceId: string) { this.instanceId = instanceId }
  say (...lines: string[]): void { for (const l of lines) this.ring.push('stdout', text(l + '\n'), 1000 + this.ring.lastSeq) }
  view (): LogReplica {
    return { instanceId: this.instanceId, version: '1.0.0', state: this.state, startedMs: 1, ...(this.exitReason !== undefined ? { exitReason: this.exitReason, endedMs: 9 } : {}), since: (seq, max) => this.ring.since(seq, max) }
  }
}

function source (replicas: FakeReplica[]): LogSource & { wake: () => void } {
  let listener: (() => void) | undefined
  return {
    replicas: () => replicas.map(r => r.view()),
    watch: (wake) => { listener = wake; return () => { listener = undefined } },
    wake: () => { listener?.() }
  }
}

/** Collects frames; `until` resolves once a frame matches. */
function sink (): { frames: Json[], send: (f: Json) => Promise<void>, until: (test: (f: Json) => boolean) => Promise<void> } {
  const frames: Json[] = []
  const waiters: Array<() => void> = []
  return {
    frames,
    send: async (f) => { frames.push(f); for (const w of waiters.splice(0)) w() },
    until: async (test) => {
      const deadline = Date.now() + 5_000
      while (!frames.some(test)) {
        if (Date.now() > deadline) throw new Error(`no such frame in ${JSON.stringify(frames)}`)
        await new Promise<void>(resolve => { waiters.push(resolve); setTimeout(resolve, 100) })
      }
    }
  }
}

const lines = (frames: Json[]): string[] => frames.filter(f => f.t === 'lines').flatMap(f => (f.lines as Array<[number, number, number, string]>).map(l => `${l[0]}:${l[3]}`))

describe('answerLogs', () => {
  it('not following: start, every held line, the end of an ended replica, then done', async () => {
    const a = new FakeReplica('cell-1.0.0-aaaa')
    const b = new FakeReplica('cell-1.0.0-bbbb')
    a.say('a1', 'a2')
    b.say('b1')
    b.state = 'crashed'
    b.exitReason = 'exited with code 3'
    const out = sink()
    await answerLogs(source([a, b]), { cell: 'cell', follow: false }, { out, signal: new AbortController().signal })
    expect(out.frames.map(f => f.t)).toEqual(['start', 'lines', 'start', 'lines', 'end', 'done'])
    expect(lines(out.frames)).toEqual(['1:a1', '2:a2', '1:b1'])
    expect(out.frames.find(f => f.t === 'end')).toMatchObject({ replica: 'cell-1.0.0-bbbb', reason: 'crashed: exited with code 3' })
  })

  it('--tail and --replica', async () => {
    const a = new FakeReplica('cell-1.0.0-aaaa')
    const b = new FakeReplica('cell-1.0.0-bbbb')
    a.say('a1', 'a2', 'a3')
    b.say('b1')
    const out = sink()
    await answerLogs(source([a, b]), { cell: 'cell', follow: false, tail: 2, replica: 'aaaa' }, { out, signal: new AbortController().signal })
    expect(lines(out.frames)).toEqual(['2:a2', '3:a3'])
  })

  it('following: a resume sends what followed the cursor; a slow reader hears of the lines it missed', async () => {
    const a = new FakeReplica('cell-1.0.0-aaaa')
    a.say('1', '2', '3')
    const src = source([a])
    const controller = new AbortController()
    const out = sink()
    const answering = answerLogs(src, { cell: 'cell', follow: true, cursors: { 'cell-1.0.0-aaaa': 2 } }, { out, signal: controller.signal }, { pingMs: 60_000 })
    await out.until(f => f.t === 'lines')
    // Resumed: no start frame again, only line 3.
    expect(out.frames.map(f => f.t)).toEqual(['lines'])
    expect(lines(out.frames)).toEqual(['3:3'])
    // Eight more lines into a ring of five before the reader looks: lines 4-6 are gone.
    a.say('4', '5', '6', '7', '8', '9', '10', '11')
    src.wake()
    await out.until(f => f.t === 'lines' && (f.lines as unknown[][]).some(l => l[3] === '11'))
    expect(out.frames.find(f => f.t === 'gap')).toEqual({ t: 'gap', replica: 'cell-1.0.0-aaaa', from: 4, to: 6 })
    expect(lines(out.frames)).toEqual(['3:3', '7:7', '8:8', '9:9', '10:10', '11:11'])
    a.state = 'stopped'
    src.wake()
    await out.until(f => f.t === 'end')
    controller.abort()
    await expect(answering).rejects.toThrow()
  })

  it('a resumed replica the node no longer has ends at once', async () => {
    const out = sink()
    await answerLogs(source([]), { cell: 'cell', follow: false, cursors: { 'cell-1.0.0-gone': 7 } }, { out, signal: new AbortController().signal })
    expect(out.frames).toEqual([{ t: 'end', replica: 'cell-1.0.0-gone', ts: expect.any(Number), reason: 'gone from the node (it restarted or forgot it)' }, { t: 'done' }])
  })

  it('the request parser refuses what is not a logs request', () => {
    expect(parseLogsRequest({ cell: 'x', follow: true, tail: 3, cursors: { r: 5 } })).toEqual({ cell: 'x', follow: true, tail: 3, cursors: { r: 5 } })
    for (const body of [{}, { cell: '', follow: true }, { cell: 'x', follow: 'yes' }, { cell: 'x', follow: true, tail: -1 }, { cell: 'x', follow: true, cursors: { r: 'a' } },
      { cell: 'x', follow: true, cursors: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`r${i}`, 1])) }, { cell: 'x'.repeat(256), follow: true }]) {
      expect(() => parseLogsRequest(body as Json)).toThrow(MalformedOperatorRequestError)
    }
  })
})
