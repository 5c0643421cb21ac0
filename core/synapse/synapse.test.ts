import { afterEach, describe, expect, it } from 'vitest'
import {
  acceptingAuth, countingWrites, createSynapseNode, DUMMY_CREDENTIALS, testHandler, UnknownAuthorityError
} from '../../test/bench/nodes.ts'
import type { SynapseNode } from '../../test/bench/nodes.ts'
import { FrameEncoder, FrameTooLargeError, FrameType, MalformedFrameError } from '../wire/index.ts'
import { retryRuleOf } from '../errors.ts'
import {
  CallCancelledError, ChannelClosedError, DeadlineExceededError, HandshakeTimeoutError, RemoteError,
  SYNAPSE_ERROR_CLASSES, ServerCall, ServerGoingAwayError, SynapseNotStartedError, SynapseProtocolError, TooManyInflightError, WireErrorRegistry
} from './index.ts'
import type { HandshakeRequest, SynapseComponents, SynapseHandler, SynapseInit } from './index.ts'
import type { Stream } from '@libp2p/interface'

const nodes: SynapseNode[] = []

afterEach(async () => {
  await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
})

function registry (): WireErrorRegistry {
  return new WireErrorRegistry([...SYNAPSE_ERROR_CLASSES, UnknownAuthorityError])
}

async function pair (server: Partial<SynapseInit> = {}, client: Partial<SynapseInit> = {}, writes?: { writes: number }): Promise<{ server: SynapseNode, client: SynapseNode, handler: ReturnType<typeof testHandler> }> {
  const handler = testHandler()
  const s = await createSynapseNode({ ...acceptingAuth(), handler, errors: registry(), ...server })
  const c = await createSynapseNode({ ...acceptingAuth(), errors: registry(), ...client }, writes === undefined ? undefined : countingWrites(writes))
  nodes.push(s, c)
  return { server: s, client: c, handler }
}

/** Waits for `promise` but fails the test instead of hanging past `ms`. */
async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves once `check()` holds; re-checks on each macrotask turn, bounded by `ms`. */
async function until (check: () => boolean, ms: number, what: string): Promise<void> {
  await within((async () => { while (!check()) await new Promise(resolve => setImmediate(resolve)) })(), ms, what)
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('synapse over TCP + Noise + yamux', () => {
  it('completes the handshake with both ports seeing the other side', async () => {
    const seen: HandshakeRequest[] = []
    const { server, client } = await pair(
      { authenticate: async (req) => { seen.push(req); return { peerId: req.remotePeerId, authority: 'a', roles: ['caller'] } } },
      { authenticateServer: async (req) => { seen.push(req); return { peerId: req.remotePeerId, authority: 'a', roles: ['host'] } } }
    )
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    expect(channel.isOpen).toBe(true)
    expect(seen).toHaveLength(2)
    expect(seen[0]).toMatchObject({ remotePeerId: client.peerId.toString(), cell: 'billing' })
    expect([...seen[0].credentials]).toEqual([...DUMMY_CREDENTIALS])
    expect(seen[1]).toMatchObject({ remotePeerId: server.peerId.toString(), cell: 'billing' })
    expect(channel.serverPrincipal).toMatchObject({ roles: ['host'] })
    expect(server.services.synapse.stats().server.channels).toBe(1)
  })

  it('hands the release the caller named in HELLO to every call, message and stream of that channel, and none to a channel that named none', async () => {
    const seen: Array<string | undefined> = []
    const handler: SynapseHandler = {
      async call (ctx) { seen.push(ctx.release); return ctx.payload.slice() },
      message (ctx) { seen.push(ctx.release) },
      async * stream (ctx) { seen.push(ctx.release); yield ctx.payload.slice() }
    }
    const { server, client } = await pair({ handler })
    const digest = 'ab'.repeat(32)
    const named = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing', { release: digest })
    const plain = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    expect(named.release).toBe(digest)
    await named.call('echo', bytes('x'))
    named.send('tick', bytes('y'))
    for await (const _ of named.stream('items', bytes('z'))) { /* one item */ }
    await plain.call('echo', bytes('x'))
    await until(() => seen.length === 4, 5_000, 'four handler calls')
    expect(seen).toEqual([digest, digest, digest, undefined])
  })

  it('rejects the handshake with the error class the server named', async () => {
    const { server, client } = await pair({
      authenticate: async () => { throw new UnknownAuthorityError('authority 0xabc is not trusted for billing') }
    })
    const err = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnknownAuthorityError)
    expect((err as Error).message).toBe('authority 0xabc is not trusted for billing')
    await until(() => server.services.synapse.stats().server.rejected === 1, 5000, 'rejection counted')
  })

  it('turns an unregistered error name into RemoteError with remoteName', async () => {
    const { server, client } = await pair({
      authenticate: async () => { const e = new Error('nope'); e.name = 'SomethingExoticError'; throw e }
    })
    const err = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RemoteError)
    expect((err as RemoteError).remoteName).toBe('SomethingExoticError')
  })

  it('fails the handshake with HandshakeTimeoutError when the server never answers', async () => {
    const { server, client } = await pair(
      { authenticate: async (_req, { signal }) => await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }) }), handshakeTimeoutMs: 60_000 },
      { handshakeTimeoutMs: 300 }
    )
    const err = await within(client.services.synapse.open(server.getMultiaddrs()[0], 'billing').catch((e: unknown) => e), 5000, 'handshake timeout')
    expect(err).toBeInstanceOf(HandshakeTimeoutError)
  })

  it('answers calls, pipelined, and preserves handler error names', async () => {
    const { server, client } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const results = await Promise.all(Array.from({ length: 500 }, async (_, i) => await channel.call('echo', bytes(`n${i}`))))
    expect(results.map(r => new TextDecoder().decode(r))).toEqual(Array.from({ length: 500 }, (_, i) => `n${i}`))
    const err = await channel.call('fail', bytes('0xdef')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UnknownAuthorityError)
    expect((err as Error).message).toBe('no trust for 0xdef')
    const stats = channel.stats()
    expect(stats.calls).toBe(501)
    expect(stats.errors).toBe(1)
    expect(stats.inflight).toBe(0)
    expect(stats.writes).toBeLessThan(stats.framesOut)
  })

  it('delivers one-way messages, all of them, in order', async () => {
    const { server, client, handler } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const count = 20_000
    for (let i = 0; i < count; i++) {
      const p = new Uint8Array(8)
      new DataView(p.buffer).setUint32(0, i)
      if (!channel.send('tick', p)) await channel.onDrain()
    }
    await until(() => handler.messages.length === count, 10_000, 'all messages delivered')
    const order = handler.messages.map(m => new DataView(m.buffer, m.byteOffset).getUint32(0))
    expect(order).toEqual(Array.from({ length: count }, (_, i) => i))
  })

  it('streams N items through the credit window', async () => {
    const { server, client } = await pair({}, { streamWindow: 16 })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const n = 1000
    const req = new Uint8Array(4)
    new DataView(req.buffer).setUint32(0, n)
    const got: number[] = []
    for await (const item of channel.stream('count', req)) got.push(new DataView(item.buffer, item.byteOffset).getUint32(0))
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(channel.inflight).toBe(0)
  })

  it('fails a call at its deadline and aborts the handler', async () => {
    const { server, client, handler } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const started = Date.now()
    const err = await channel.call('hang', bytes('x'), { timeoutMs: 200 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DeadlineExceededError)
    expect(Date.now() - started).toBeGreaterThanOrEqual(190)
    await until(() => handler.aborted.length === 1, 5000, 'server handler aborted')
    expect(handler.aborted[0].reason).toBeInstanceOf(Error)
    expect(channel.inflight).toBe(0)
  })

  it('cancels a call through its AbortSignal and aborts the handler', async () => {
    const { server, client, handler } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const controller = new AbortController()
    const pending = channel.call('hang', bytes('x'), { signal: controller.signal })
    await until(() => server.services.synapse.stats().server.inflight === 1, 5000, 'call reached the server')
    controller.abort()
    await expect(pending).rejects.toBeInstanceOf(CallCancelledError)
    await until(() => handler.aborted.length === 1, 5000, 'server handler aborted')
    expect((handler.aborted[0].reason as Error).name).toBe('CallCancelledError')
  })

  it('fails pending calls with ChannelClosedError quickly when the remote node stops', async () => {
    const { server, client } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const pending = channel.call('hang', bytes('x'), { timeoutMs: 60_000 })
    await until(() => server.services.synapse.stats().server.inflight === 1, 5000, 'call reached the server')
    await server.stop()
    const err = await within(pending.catch((e: unknown) => e), 3000, 'pending call failed')
    expect(err).toBeInstanceOf(ChannelClosedError)
    expect(channel.isOpen).toBe(false)
    await expect(channel.call('echo', bytes('late'))).rejects.toBeInstanceOf(ChannelClosedError)
  })

  it('rejects frames above the size limit without killing the channel', async () => {
    const { server, client } = await pair({ maxFrameBytes: 64 * 1024 })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    // Locally over 1 MiB, and over the 64 KiB the server announced.
    await expect(channel.call('echo', new Uint8Array(2 * 1024 * 1024))).rejects.toBeInstanceOf(FrameTooLargeError)
    await expect(channel.call('echo', new Uint8Array(100 * 1024))).rejects.toBeInstanceOf(FrameTooLargeError)
    const ok = await channel.call('echo', new Uint8Array(32 * 1024).fill(3))
    expect(ok.length).toBe(32 * 1024)
  })

  it('fails calls beyond maxInflight with TooManyInflightError in throw mode', async () => {
    const { server, client } = await pair({}, { maxInflight: 4, inflightOverflow: 'throw' })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const hanging = Array.from({ length: 4 }, () => channel.call('hang', bytes('x'), { timeoutMs: 2000 }).catch((e: unknown) => e))
    await expect(channel.call('echo', bytes('y'))).rejects.toBeInstanceOf(TooManyInflightError)
    await channel.close()
    for (const e of await Promise.all(hanging)) expect(e).toBeInstanceOf(ChannelClosedError)
  })

  it('queues calls beyond maxInflight in wait mode', async () => {
    const { server, client } = await pair({}, { maxInflight: 2 })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => await channel.call('echo', bytes(String(i)))))
    expect(results).toHaveLength(50)
    expect(channel.stats().calls).toBe(50)
  })

  it('coalesces frames produced in one tick into few transport writes', async () => {
    const counter = { writes: 0 }
    const { server, client, handler } = await pair({}, {}, counter)
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const before = counter.writes
    const payload = new Uint8Array(64)
    for (let i = 0; i < 10_000; i++) channel.send('tick', payload)
    const calls = Array.from({ length: 200 }, async () => await channel.call('echo', payload))
    await Promise.all(calls)
    await until(() => handler.messages.length === 10_000, 10_000, 'messages delivered')
    const writes = counter.writes - before
    // 10 200 frames of ~70 bytes: a 64 KiB flush threshold means ~12 batches, not 10 200 writes.
    expect(writes).toBeGreaterThan(0)
    expect(writes).toBeLessThan(40)
    expect(channel.stats().framesOut - channel.stats().writes).toBeGreaterThan(10_000)
  })

  it('tells handler.settled once per call how it was answered (result, error, deadline, cancel, close), never for streams', async () => {
    const settled: Array<{ method: string, result: number | undefined, error: string | undefined, elapsedMs: number }> = []
    const handler = testHandler()
    handler.settled = (ctx, result, error, elapsedMs) => {
      settled.push({ method: ctx.method, result: result?.length, error: error === undefined ? undefined : (error as Error).name, elapsedMs })
    }
    const s = await createSynapseNode({ ...acceptingAuth(), handler, errors: registry() })
    const c = await createSynapseNode({ ...acceptingAuth(), errors: registry() })
    nodes.push(s, c)
    const channel = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
    expect((await channel.call('echo', bytes('abc'))).length).toBe(3)
    await expect(channel.call('fail', bytes('x'))).rejects.toBeInstanceOf(UnknownAuthorityError)
    await expect(channel.call('hang', bytes('x'), { timeoutMs: 200 })).rejects.toBeInstanceOf(DeadlineExceededError)
    const controller = new AbortController()
    const cancelled = channel.call('hang', bytes('x'), { signal: controller.signal })
    await until(() => s.services.synapse.stats().server.inflight === 1, 5000, 'call reached the server')
    controller.abort()
    await expect(cancelled).rejects.toBeInstanceOf(CallCancelledError)
    const items = new Uint8Array(4)
    new DataView(items.buffer).setUint32(0, 3)
    for await (const _item of channel.stream('count', items)) { /* drain */ }
    const pending = channel.call('hang', bytes('x'), { timeoutMs: 60_000 }).catch((e: unknown) => e)
    await until(() => s.services.synapse.stats().server.inflight === 1, 5000, 'last call reached the server')
    await channel.close()
    await pending
    await until(() => settled.length === 5, 5000, 'five calls settled')
    // The call past its deadline ends on the server by its own deadline or by the CANCEL the caller
    // sends at that moment (a race): either way after its 200 ms.
    expect(['DeadlineExceededError', 'CallCancelledError']).toContain(settled[2].error)
    settled[2].error = 'DeadlineExceededError'
    expect(settled.map(({ method, result, error }) => ({ method, result, error }))).toEqual([
      { method: 'echo', result: 3, error: undefined },
      { method: 'fail', result: undefined, error: 'UnknownAuthorityError' },
      { method: 'hang', result: undefined, error: 'DeadlineExceededError' },
      { method: 'hang', result: undefined, error: 'CallCancelledError' },
      { method: 'hang', result: undefined, error: 'ChannelClosedError' }
    ])
    expect(settled[2].elapsedMs).toBeGreaterThanOrEqual(150)
    for (const e of settled) expect(e.elapsedMs).toBeGreaterThanOrEqual(0)
    // A handler that throws synchronously is settled too, and a throwing hook does not break the call.
    handler.call = () => { throw new UnknownAuthorityError('sync') }
    const again = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
    await expect(again.call('echo', bytes('y'))).rejects.toBeInstanceOf(UnknownAuthorityError)
    expect(settled.at(-1)).toMatchObject({ method: 'echo', error: 'UnknownAuthorityError' })
    handler.settled = () => { throw new Error('hook broke') }
    handler.call = async (ctx) => ctx.payload.slice()
    expect((await again.call('echo', bytes('z'))).length).toBe(1)
    expect(settled).toHaveLength(6)
  })

  it("calls a call's one onAbort listener once, on CANCEL, the deadline and the channel closing; never for an answered call", async () => {
    const aborted: Array<{ tag: string, reason: string }> = []
    const handler = testHandler()
    const hang = handler.call
    handler.call = async (ctx) => {
      const tag = new TextDecoder().decode(ctx.payload)
      expect(ctx).toBeInstanceOf(ServerCall)
      const call = ctx as ServerCall
      expect(call.aborted).toBe(false)
      // Function and object listeners; the last one set is the one called.
      call.onAbort = () => { aborted.push({ tag: `${tag} (replaced)`, reason: '' }) }
      if (tag.startsWith('object')) call.onAbort = { callAborted: (reason) => { aborted.push({ tag, reason: reason.name }) } }
      else if (tag.startsWith('throws')) call.onAbort = (reason) => { aborted.push({ tag, reason: reason.name }); throw new Error('listener broke') }
      else call.onAbort = (reason) => { aborted.push({ tag, reason: reason.name }) }
      if (tag === 'answered') return ctx.payload.slice()
      return await hang(ctx)
    }
    const s = await createSynapseNode({ ...acceptingAuth(), handler, errors: registry() })
    const c = await createSynapseNode({ ...acceptingAuth(), errors: registry() })
    nodes.push(s, c)
    const channel = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
    expect((await channel.call('hang', bytes('answered'))).length).toBe(8)
    const controller = new AbortController()
    const cancelled = channel.call('hang', bytes('cancel'), { signal: controller.signal })
    await until(() => s.services.synapse.stats().server.inflight === 1, 5000, 'call reached the server')
    controller.abort()
    await expect(cancelled).rejects.toBeInstanceOf(CallCancelledError)
    await until(() => aborted.length === 1, 5000, 'cancel heard')
    await expect(channel.call('hang', bytes('object deadline'), { timeoutMs: 200 })).rejects.toBeInstanceOf(DeadlineExceededError)
    await until(() => aborted.length === 2, 5000, 'deadline heard')
    const pending = ['throws close', 'close'].map(async (tag) => await channel.call('hang', bytes(tag), { timeoutMs: 60_000 }).catch((e: unknown) => e))
    await until(() => s.services.synapse.stats().server.inflight === 2, 5000, 'calls reached the server')
    await channel.close()
    for (const err of await Promise.all(pending)) expect(err).toBeInstanceOf(ChannelClosedError)
    await until(() => aborted.length === 4, 5000, 'close heard by both')
    // The call past its deadline ends on the server by its own deadline or by the CANCEL the caller
    // sends at that moment (a race).
    expect(['DeadlineExceededError', 'CallCancelledError']).toContain(aborted[1].reason)
    aborted[1].reason = 'DeadlineExceededError'
    expect(aborted).toEqual([
      { tag: 'cancel', reason: 'CallCancelledError' },
      { tag: 'object deadline', reason: 'DeadlineExceededError' },
      { tag: 'throws close', reason: 'ChannelClosedError' },
      { tag: 'close', reason: 'ChannelClosedError' }
    ])
    // A listener's throw is the session's to log: the service still answers.
    const again = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
    expect((await again.call('hang', bytes('answered'))).length).toBe(8)
    expect(aborted).toHaveLength(4)
  })

  it('cancels the server side when a stream consumer stops early, and close() ends the server session', async () => {
    const { server, client } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const req = new Uint8Array(4)
    new DataView(req.buffer).setUint32(0, 1_000_000)
    let seen = 0
    for await (const _item of channel.stream('count', req)) {
      if (++seen === 5) break
    }
    expect(channel.inflight).toBe(0)
    await until(() => server.services.synapse.stats().server.inflight === 0, 5000, 'server stream cancelled')
    expect(server.services.synapse.stats().server.framesOut).toBeLessThan(200) // window-bounded, not a million items
    await channel.close()
    expect(channel.isOpen).toBe(false)
    await until(() => server.services.synapse.stats().server.channels === 0, 5000, 'server session closed')
  })
})

/** A handler whose 'gate' calls wait until `open()`; counts the calls it ran. */
function gatedHandler (): SynapseHandler & { ran: string[], open: () => void } {
  const base = testHandler()
  const ran: string[] = []
  let release: () => void = () => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  return {
    ...base,
    ran,
    open: () => { release() },
    async call (ctx) {
      ran.push(ctx.method)
      if (ctx.method === 'gate') { await gate; return bytes('through') }
      return await base.call(ctx)
    }
  }
}

/** The server's inbound synapse streams, as they are opened (to write raw frames into them). */
function capturingStreams (streams: Stream[]): (components: SynapseComponents) => SynapseComponents {
  return (components) => ({
    connectionManager: components.connectionManager,
    logger: components.logger,
    registrar: {
      handle: async (protocol, handler, options) => {
        await components.registrar.handle(protocol, (stream, connection) => { streams.push(stream); return handler(stream, connection) }, options)
      },
      unhandle: async (protocol, options) => { await components.registrar.unhandle(protocol, options) }
    }
  })
}

function rawFrame (type: number, payload: Uint8Array): Uint8Array {
  const enc = new FrameEncoder()
  enc.frame(type, 0, payload)
  return enc.take()
}

describe('planned stop: GOAWAY with the count of calls read', () => {
  it('answers the calls read; a call sent after them fails ServerGoingAwayError (nothing ran), so does a new one', async () => {
    const handler = gatedHandler()
    const { server, client } = await pair({ handler })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    expect(await channel.call('echo', bytes('warm'))).toEqual(bytes('warm'))
    const first = channel.call('gate', bytes('a'), { timeoutMs: 30_000 })
    await until(() => server.services.synapse.stats().server.inflight === 1, 5000, 'the gated call reached the server')
    // GOAWAY leaves the server now; a call sent in the same turn is on the wire before the client
    // can have read it: the server never reads it as a call.
    const leaving = server.services.synapse.goAway({ graceMs: 30_000 })
    const late = channel.call('echo', bytes('late'), { timeoutMs: 30_000 }).catch((e: unknown) => e)
    const lateErr = await within(late, 5000, 'the unread call failed')
    expect(lateErr).toBeInstanceOf(ServerGoingAwayError)
    expect(retryRuleOf(lateErr)).toBe('nothing-ran')
    expect(channel.goingAway).toBe(true)
    expect(client.services.synapse.current(channel)).toBe(false)
    await expect(channel.call('echo', bytes('after'))).rejects.toBeInstanceOf(ServerGoingAwayError)
    expect(() => channel.send('tick', bytes('after'))).toThrow(ServerGoingAwayError)
    // New channels are refused while the server is leaving.
    await expect(client.services.synapse.open(server.getMultiaddrs()[0], 'billing')).rejects.toBeInstanceOf(SynapseNotStartedError)
    // The call it read is still answered, then the session closes and goAway resolves.
    handler.open()
    expect(await within(first, 5000, 'the gated call answered')).toEqual(bytes('through'))
    await within(leaving, 5000, 'goAway resolved')
    await until(() => !channel.isOpen, 5000, 'the channel closed')
    expect(handler.ran).toEqual(['echo', 'gate'])
    expect(client.services.synapse.stats().client.unread).toBe(1)
    expect(server.services.synapse.stats().server.unread).toBe(1)
    expect(server.services.synapse.stats().server.channels).toBe(0)
  })

  it('cuts what outlasts the grace (ChannelClosedError: it may have run) and ends server streams', async () => {
    const { server, client } = await pair({}, { streamWindow: 4 })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const hanging = channel.call('hang', bytes('x'), { timeoutMs: 60_000 }).catch((e: unknown) => e)
    const req = new Uint8Array(4)
    new DataView(req.buffer).setUint32(0, 1_000_000)
    const items = channel.stream('count', req)[Symbol.asyncIterator]()
    expect((await items.next()).done).toBe(false)
    await until(() => server.services.synapse.stats().server.inflight === 2, 5000, 'call and stream in flight')
    const startedMs = Date.now()
    await within(server.services.synapse.goAway({ graceMs: 300 }), 5000, 'goAway resolved')
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(290)
    const err = await within(hanging, 5000, 'the hanging call failed')
    expect(err).toBeInstanceOf(ChannelClosedError)
    expect(err).not.toBeInstanceOf(ServerGoingAwayError)
    // The stream's items already sent are delivered, then it ends by name.
    const streamErr = await within((async () => { for (;;) { const r = await items.next(); if (r.done === true) return 'done' } })().catch((e: unknown) => e), 5000, 'the stream ended')
    expect(streamErr).toBeInstanceOf(SynapseNotStartedError)
    expect(channel.stats().unread).toBe(0)
  })

  it('aborting the signal ends the grace at once (a second Ctrl-C)', async () => {
    const { server, client } = await pair()
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const hanging = channel.call('hang', bytes('x'), { timeoutMs: 60_000 }).catch((e: unknown) => e)
    await until(() => server.services.synapse.stats().server.inflight === 1, 5000, 'the call reached the server')
    const force = new AbortController()
    let done = false
    const leaving = server.services.synapse.goAway({ graceMs: 60_000, signal: force.signal }).then(() => { done = true })
    await until(() => channel.goingAway, 5000, 'the GOAWAY arrived')
    expect(done).toBe(false)
    force.abort()
    await within(leaving, 5000, 'goAway resolved after the abort')
    expect(await within(hanging, 5000, 'the call failed')).toBeInstanceOf(ChannelClosedError)
  })

  it('a stop without grace still tells the caller which calls were never read', async () => {
    const handler = gatedHandler()
    const { server, client } = await pair({ handler })
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')
    const read = channel.call('gate', bytes('a'), { timeoutMs: 30_000 }).catch((e: unknown) => e)
    await until(() => server.services.synapse.stats().server.inflight === 1, 5000, 'the call reached the server')
    void server.services.synapse.goAway()
    const unread = Array.from({ length: 10 }, async () => await channel.call('echo', bytes('late'), { timeoutMs: 30_000 }).catch((e: unknown) => e))
    for (const e of await within(Promise.all(unread), 5000, 'unread calls failed')) expect(e).toBeInstanceOf(ServerGoingAwayError)
    expect(await within(read, 5000, 'the read call failed')).toBeInstanceOf(ChannelClosedError)
  })

  it('a hostile GOAWAY fails the channel as a protocol error, never as calls that did not run', async () => {
    for (const [what, payload, cause] of [
      ['a count above the calls sent', new Uint8Array([5]), SynapseProtocolError],
      ['a truncated varint', new Uint8Array([0x80]), MalformedFrameError],
      ['a count above 2^32 - 1', new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7f]), MalformedFrameError]
    ] as const) {
      const streams: Stream[] = []
      const handler = gatedHandler()
      const s = await createSynapseNode({ ...acceptingAuth(), handler, errors: registry() }, capturingStreams(streams))
      const c = await createSynapseNode({ ...acceptingAuth(), errors: registry() })
      nodes.push(s, c)
      const channel = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
      const pending = Array.from({ length: 3 }, async () => await channel.call('gate', bytes('x'), { timeoutMs: 30_000 }).catch((e: unknown) => e))
      await until(() => s.services.synapse.stats().server.inflight === 3, 5000, 'three calls read')
      expect(streams).toHaveLength(1)
      streams[0].send(rawFrame(FrameType.GOAWAY, payload))
      for (const err of await within(Promise.all(pending), 5000, `calls failed after ${what}`)) {
        expect(err, what).toBeInstanceOf(ChannelClosedError)
        expect((err as Error).cause, what).toBeInstanceOf(cause)
      }
      expect(channel.isOpen).toBe(false)
      expect(channel.stats().unread, what).toBe(0)
    }
    // A second GOAWAY from a server that already sent one.
    const streams: Stream[] = []
    const s = await createSynapseNode({ ...acceptingAuth(), handler: gatedHandler(), errors: registry() }, capturingStreams(streams))
    const c = await createSynapseNode({ ...acceptingAuth(), errors: registry() })
    nodes.push(s, c)
    const channel = await c.services.synapse.open(s.getMultiaddrs()[0], 'billing')
    const pending = channel.call('gate', bytes('x'), { timeoutMs: 30_000 }).catch((e: unknown) => e)
    await until(() => s.services.synapse.stats().server.inflight === 1, 5000, 'the call read')
    streams[0].send(rawFrame(FrameType.GOAWAY, new Uint8Array([1])))
    await until(() => channel.goingAway, 5000, 'the first GOAWAY arrived')
    streams[0].send(rawFrame(FrameType.GOAWAY, new Uint8Array([0])))
    const err = await within(pending, 5000, 'the call failed after a second GOAWAY')
    expect(err).toBeInstanceOf(ChannelClosedError)
    expect((err as Error).cause).toBeInstanceOf(SynapseProtocolError)
  })
})
