// Issue 8 §4: a crashed replica's heartbeat carries why it ended and its last stderr lines, bounded
// and stripped of control characters, so the crash reason reaches `cell publish`, the dashboard and
// `cell status` without access to the hosting node. Fails on the old code: the instance codec had
// no such fields (decode dropped them / refused the tail as trailing bytes) and no bounding helper.
import { describe, expect, it } from 'vitest'
import { decodeInstanceBody, encodeInstanceBody } from './codec.ts'
import { MalformedFleetRecordError } from './errors.ts'
import { boundExitReason, boundStderrTail, EXIT_LIMITS } from './records.ts'
import { makeInstanceRecord } from './testing.ts'

const NODE_ID = '12D3KooWGRUVh7ZBdeMfFL9BApGqtGN5dcYq8N4dfAe8AKx2CzUN'

describe('exit report of a crashed replica', () => {
  it('round-trips exit reason and stderr tail, and keeps old records byte-identical', () => {
    const plain = makeInstanceRecord(NODE_ID, { state: 'crashed', endedMs: 5 })
    const crashed = { ...plain, exitReason: 'exited with code 1 before it was ready', stderrTail: ['Error: DATABASE_URL is not set'] }
    const bytes = encodeInstanceBody(crashed)
    expect(decodeInstanceBody(bytes)).toEqual(crashed)
    expect(encodeInstanceBody(decodeInstanceBody(bytes))).toEqual(bytes)
    expect(decodeInstanceBody(encodeInstanceBody(plain))).toEqual(plain)
    expect(encodeInstanceBody({ ...plain, stderrTail: ['only lines'] }).length).toBeGreaterThan(encodeInstanceBody(plain).length)
    // Every prefix of the record is refused by name (truncation anywhere in the tail).
    for (let n = encodeInstanceBody(plain).length + 1; n < bytes.length; n++) {
      expect(() => decodeInstanceBody(bytes.subarray(0, n))).toThrow(MalformedFleetRecordError)
    }
  })

  it('refuses oversize, empty or control-character reports on both sides', () => {
    const base = makeInstanceRecord(NODE_ID, { state: 'crashed' })
    for (const bad of [
      { exitReason: 'x'.repeat(EXIT_LIMITS.exitReasonChars + 1) },
      { exitReason: 'two\nlines' },
      { exitReason: '' },
      { stderrTail: [] },
      { stderrTail: Array.from({ length: EXIT_LIMITS.stderrLines + 1 }, () => 'l') },
      { stderrTail: ['x'.repeat(EXIT_LIMITS.stderrBytes + 1)] },
      { stderrTail: ['\x1b[31mred'] }
    ]) {
      expect(() => encodeInstanceBody({ ...base, ...bad })).toThrow(MalformedFleetRecordError)
    }
    // A hand-made tail with an empty reason and no lines is not canonical: refused.
    const ok = encodeInstanceBody(base)
    const forged = new Uint8Array([...ok, 0, 0])
    expect(() => decodeInstanceBody(forged)).toThrow(MalformedFleetRecordError)
    const tooMany = new Uint8Array([...ok, 0, EXIT_LIMITS.stderrLines + 1])
    expect(() => decodeInstanceBody(tooMany)).toThrow(MalformedFleetRecordError)
  })

  it('bounds a stderr tail: message lines kept, stack frames, blanks, escapes and footer dropped', () => {
    const stderr = [
      'file:///cell/app/main.js:3',
      '\x1b[31mthrow new Error("DATABASE_URL is not set")\x1b[39m',
      '      ^',
      '',
      'Error: DATABASE_URL is not set',
      '    at file:///cell/app/main.js:3:7',
      '    at ModuleJob.run (node:internal/modules/esm/module_job:271:25)',
      '',
      'Node.js v24.11.0'
    ]
    const tail = boundStderrTail(stderr)
    expect(tail).toEqual(['file:///cell/app/main.js:3', 'throw new Error("DATABASE_URL is not set")', '      ^', 'Error: DATABASE_URL is not set'])
    const many = boundStderrTail(Array.from({ length: 50 }, (_, i) => `line ${i} ${'é'.repeat(60)}`))
    expect(many.length).toBeLessThanOrEqual(EXIT_LIMITS.stderrLines)
    expect(many[many.length - 1]).toMatch(/^line 49/)
    expect(new TextEncoder().encode(many.join('')).length).toBeLessThanOrEqual(EXIT_LIMITS.stderrBytes)
    expect(new TextEncoder().encode(boundStderrTail(['€'.repeat(400)])[0]).length).toBeLessThanOrEqual(EXIT_LIMITS.stderrBytes)
    expect(boundExitReason('code 1\nsignal\x07 null')).toBe('code 1 signal  null')
    // Whatever it returns, a heartbeat accepts.
    const r = makeInstanceRecord(NODE_ID, { state: 'crashed', stderrTail: many, exitReason: boundExitReason('x'.repeat(999)) })
    expect(decodeInstanceBody(encodeInstanceBody(r))).toEqual(r)
  })
})
