// The node's end of the sidecar bridge against a hostile "sidecar" on a real Unix socket: every
// frame the node gets is checked, and a sidecar that breaks the protocol loses the bridge.
import { describe, it, expect, afterEach } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { NodeBridge, type BridgeSession } from './bridge.ts'
import { FRAME, FrameDecoder, BridgeFrameError, encodeFrame, encodeJson, encodeCredit, creditOf, jsonOf, INITIAL_CREDIT_BYTES, MAX_PAYLOAD_BYTES, NODE_STREAM_BIT, HEADER_BYTES, type Frame } from './bridge-frames.ts'
import type { BridgeStream } from './bridge-stream.ts'

interface Rig {
  bridge: NodeBridge
  sidecar: Socket
  frames: Frame[]
  sessions: BridgeSession[]
  closed: Promise<Error | undefined>
  /** Resolves once the sidecar side has received a frame matching `pred`. */
  waitFrame: (pred: (f: Frame) => boolean) => Promise<Frame>
}

let server: Server | undefined
let dir = ''
afterEach(async () => {
  server?.close()
  server = undefined
  if (dir !== '') await rm(dir, { recursive: true, force: true })
  dir = ''
})

async function rig (limits = { maxSessions: 2, maxStreamsPerSession: 3 }): Promise<Rig> {
  dir = await mkdtemp(join(tmpdir(), 'cell-bridge-'))
  const path = join(dir, 's')
  const accepted = new Promise<Socket>((resolve) => { server = createServer(resolve) })
  await new Promise<void>((resolve) => { server!.listen(path, resolve) })
  const sidecar = connect(path)
  const nodeSide = await accepted
  const frames: Frame[] = []
  const waiters = new Set<() => void>()
  const decoder = new FrameDecoder()
  sidecar.on('data', (b: Buffer) => { frames.push(...decoder.push(new Uint8Array(b))); for (const w of waiters) w() })
  const sessions: BridgeSession[] = []
  let closeResolve: (e: Error | undefined) => void = () => {}
  const closed = new Promise<Error | undefined>((resolve) => { closeResolve = resolve })
  const bridge = new NodeBridge(nodeSide, limits, { onListening: () => {}, onSession: (s) => { sessions.push(s) }, onClose: (err) => { closeResolve(err) } }, logger('cell:webtransport:test'))
  const waitFrame = async (pred: (f: Frame) => boolean): Promise<Frame> => await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error('no such frame within 5 s')) }, 5000)
    const check = (): void => {
      const f = frames.find(pred)
      if (f !== undefined) { clearTimeout(timer); waiters.delete(check); resolve(f) }
    }
    waiters.add(check)
    check()
  })
  return { bridge, sidecar, frames, sessions, closed, waitFrame }
}

const until = async (cond: () => boolean): Promise<void> => {
  const end = Date.now() + 5000
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met within 5 s')
    await new Promise<void>((resolve) => { setImmediate(resolve) })
  }
}

async function openSession (r: Rig, id = 1): Promise<BridgeSession> {
  r.sidecar.write(encodeJson(FRAME.sessionOpen, id, { remote: '127.0.0.1:5555' }))
  await until(() => r.sessions.some(s => s.id === id))
  return r.sessions.find(s => s.id === id)!
}

describe('node side of the WebTransport bridge', () => {
  it('relays a stream both ways within credit and grants credit back as bytes are taken', async () => {
    const r = await rig()
    const session = await openSession(r)
    const got: BridgeStream[] = []
    session.onStream((s) => { got.push(s) })
    r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, 1))
    await until(() => got.length === 1)
    const stream = got[0]
    const received: number[] = []
    stream.addEventListener('message', (e) => { received.push(e.data.byteLength) })
    r.sidecar.write(encodeFrame(FRAME.data, 1, 1, new Uint8Array(1000)))
    const credit = await r.waitFrame(f => f.type === FRAME.credit && f.stream === 1)
    expect(creditOf(credit)).toBe(1000)
    expect(received.reduce((a, b) => a + b, 0)).toBe(1000)

    // The node writes more than the sidecar's credit: it sends exactly the credit, in bounded frames, then waits.
    stream.send(new Uint8Array(INITIAL_CREDIT_BYTES + 100_000))
    await until(() => r.frames.filter(f => f.type === FRAME.data).reduce((n, f) => n + f.payload.byteLength, 0) >= INITIAL_CREDIT_BYTES)
    await new Promise<void>((resolve) => { setTimeout(resolve, 100) })
    const sent = (): number => r.frames.filter(f => f.type === FRAME.data).reduce((n, f) => n + f.payload.byteLength, 0)
    expect(sent()).toBe(INITIAL_CREDIT_BYTES)
    expect(r.frames.filter(f => f.type === FRAME.data).every(f => f.payload.byteLength <= MAX_PAYLOAD_BYTES)).toBe(true)
    r.sidecar.write(encodeCredit(1, 1, 100_000))
    await until(() => sent() === INITIAL_CREDIT_BYTES + 100_000)

    // FIN from the browser ends the node's reading; a node-side close sends FIN.
    r.sidecar.write(encodeFrame(FRAME.fin, 1, 1))
    await until(() => stream.remoteWriteStatus === 'closed')
    await stream.close()
    await r.waitFrame(f => f.type === FRAME.fin && f.stream === 1)
    r.bridge.close()
  })

  it('opens node streams in its own number space', async () => {
    const r = await rig()
    const session = await openSession(r)
    const s = session.openStream()
    const open = await r.waitFrame(f => f.type === FRAME.streamOpen)
    expect(open.stream).toBe(s.streamId)
    expect(open.stream & NODE_STREAM_BIT).not.toBe(0)
    r.bridge.close()
  })

  it('resets streams beyond the per-session limit and closes sessions beyond the session limit', async () => {
    const r = await rig({ maxSessions: 1, maxStreamsPerSession: 3 })
    await openSession(r)
    for (let i = 1; i <= 5; i++) r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, i))
    await r.waitFrame(f => f.type === FRAME.reset && f.stream === 5)
    expect(r.frames.filter(f => f.type === FRAME.reset).map(f => f.stream)).toEqual([4, 5])
    expect(r.bridge.counters.streamsRefused).toBe(2)
    expect(r.sessions[0].streams.size).toBe(3)
    r.sidecar.write(encodeJson(FRAME.sessionOpen, 2, { remote: '127.0.0.1:1' }))
    const refused = await r.waitFrame(f => f.type === FRAME.sessionClose && f.session === 2)
    expect(jsonOf(refused)).toMatchObject({ code: 503 })
    expect(r.sessions).toHaveLength(1)
    expect(r.bridge.counters.sessionsRefused).toBe(1)
    r.bridge.close()
  })

  it('counts sessions the sidecar refused (wrong path), by reason', async () => {
    const r = await rig()
    r.sidecar.write(encodeJson(FRAME.rejected, 0, { reason: 'wrong-path' }))
    r.sidecar.write(encodeJson(FRAME.rejected, 0, { reason: 'x'.repeat(1000) }))
    await until(() => (r.bridge.counters.rejected.get('other') ?? 0) === 1)
    expect(r.bridge.counters.rejected.get('wrong-path')).toBe(1)
    r.bridge.close()
  })

  const hostile: Array<[string, (r: Rig) => Promise<void>]> = [
    ['data beyond the credit it was given', async (r) => {
      // A paused reader takes nothing, so no credit returns: the sidecar's extra frame is over its allowance.
      await openSession(r)
      r.sessions[0].onStream((s) => { s.pause() })
      r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, 1))
      for (let sent = 0; sent <= INITIAL_CREDIT_BYTES; sent += MAX_PAYLOAD_BYTES) r.sidecar.write(encodeFrame(FRAME.data, 1, 1, new Uint8Array(MAX_PAYLOAD_BYTES)))
    }],
    ['an oversize frame header', async (r) => {
      const h = new Uint8Array(HEADER_BYTES)
      h[0] = FRAME.data
      new DataView(h.buffer).setUint32(9, 0xffff_ffff)
      r.sidecar.write(h)
    }],
    ['random garbage', async (r) => { r.sidecar.write(new Uint8Array([0x99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])) }],
    ['a stream in the node\'s number space', async (r) => {
      await openSession(r)
      r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, NODE_STREAM_BIT | 1))
    }],
    ['a session opened twice', async (r) => {
      await openSession(r)
      r.sidecar.write(encodeJson(FRAME.sessionOpen, 1, { remote: 'x' }))
    }],
    ['a frame only the node may send (config)', async (r) => { r.sidecar.write(encodeJson(FRAME.config, 0, {})) }],
    ['a listening frame without a port', async (r) => { r.sidecar.write(encodeJson(FRAME.listening, 0, { port: 'x' })) }],
    ['a credit frame of the wrong size', async (r) => {
      await openSession(r)
      r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, 1))
      r.sidecar.write(encodeFrame(FRAME.credit, 1, 1, new Uint8Array(7)))
    }],
    ['credit far beyond what was used', async (r) => {
      await openSession(r)
      r.sidecar.write(encodeFrame(FRAME.streamOpen, 1, 1))
      r.sidecar.write(encodeCredit(1, 1, 0xffff_ffff))
    }]
  ]
  for (const [what, attack] of hostile) {
    it(`closes the bridge on ${what}, ending its sessions`, async () => {
      const r = await rig()
      await attack(r)
      const err = await r.closed
      expect(err).toBeInstanceOf(BridgeFrameError)
      expect(r.sessions.every(s => s.closed)).toBe(true)
      await until(() => r.sidecar.destroyed || r.sidecar.readableEnded)
    })
  }
})
