// Calls served into a real replica through a real synapse session (TCP + Noise + yamux in this
// process, the replica a child process): a caller's cancel, the node's deadline and the channel
// closing must each reach the replica's handler. The node learns of them through the session's call
// context (ServerCall's one `onAbort` slot, no AbortController per call), and through ctx.signal
// when a wrapper hands it a context of its own; both are tested, so this fails if either path
// stops carrying the abort.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { existsSync } from 'node:fs'
import { Registry } from 'prom-client'
import { acceptingAuth, createSynapseNode, UnknownAuthorityError, type SynapseNode } from '../test/bench/nodes.ts'
import { CallCancelledError, DeadlineExceededError, SYNAPSE_ERROR_CLASSES, WireErrorRegistry, type CallContext, type SynapseHandler } from '../core/synapse/index.ts'
import { systemClock, systemRandom, type Clock } from '../core/ports.ts'
import { tracedHandler } from '../core/telemetry/tracer.ts'
import { CallMeter } from './telemetry/call-meter.ts'
import { ReplicaSet, type ReplicaInfo } from './replica-set.ts'
import { buildTo, json, unjson, waitForLog } from './capsid/test-helpers.ts'
import type { Capsid } from './capsid/capsid.ts'

let tmp = ''
let artifact = ''
beforeAll(async () => {
  tmp = await mkdtemp('/tmp/rs-')
  artifact = await buildTo(tmp, join(import.meta.dirname, 'capsid'), 'fixtures/test-cell.ts', 'test-cell')
})
afterAll(async () => { if (tmp !== '') await rm(tmp, { recursive: true, force: true }) })

const errors = (): WireErrorRegistry => new WireErrorRegistry([...SYNAPSE_ERROR_CLASSES, UnknownAuthorityError])

interface Serving {
  replicas: ReplicaSet
  info: ReplicaInfo
  capsid: Capsid
  call: (method: string, req: unknown, signal?: AbortSignal, timeoutMs?: number) => Promise<unknown>
  /** Stops the calling node: its channel closes under the calls in flight. */
  stopClient: () => Promise<void>
  stop: () => Promise<void>
}

async function serving (name: string, compose: (h: SynapseHandler) => SynapseHandler, serverClock?: Clock): Promise<Serving> {
  const replicas = new ReplicaSet({ dataDir: join(tmp, name), runDir: join(tmp, `${name}-run`), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 1 })
  const info: ReplicaInfo = await replicas.spawn({ cell: 'test', version: '1.0.0', digest: 'd', codePath: artifact, manifest: { sandbox: { require: 'process' } } }, { signal: AbortSignal.timeout(20_000) })
  const nodes: SynapseNode[] = []
  const server = await createSynapseNode({ ...acceptingAuth(), handler: compose(replicas.handler()), errors: errors(), ...(serverClock !== undefined ? { clock: serverClock } : {}) })
  nodes.push(server)
  const client = await createSynapseNode({ ...acceptingAuth(), errors: errors() })
  nodes.push(client)
  const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'test')
  return {
    replicas,
    info,
    capsid: info.capsid!,
    call: async (method, req, signal, timeoutMs = 30_000) => unjson(await channel.call(method, json(req), { ...(signal !== undefined ? { signal } : {}), timeoutMs })),
    stopClient: async () => { await client.stop() },
    stop: async () => {
      await Promise.all(nodes.map(async n => { await n.stop() }))
      await replicas.stopAll({ graceMs: 200 })
    }
  }
}

describe('replica set serving synapse calls', () => {
  const compositions: Array<[string, (h: SynapseHandler) => SynapseHandler]> = [
    // As a full node composes it: tracing outside, the call meter inside; the session's context reaches the replica set.
    ['as a full node composes it', fullNodeComposition],
    // A wrapper that hands on a context of its own (as tracing does for a sampled call): the abort
    // must still arrive, through the signal it passes on.
    ['through a context of a wrapper', (h) => ({ call: async (ctx) => await h.call(new WrappedContext(ctx)), message: (ctx) => { h.message(ctx) }, stream: (ctx) => h.stream(ctx) })]
  ]
  for (const [name, compose] of compositions) {
    it(`a caller's cancel reaches the replica's handler, ${name}`, async () => {
      const s = await serving(name.replace(/\W+/g, '-'), compose)
      try {
        // Answered calls first.
        expect(await s.call('echo', { a: 1 })).toEqual({ a: 1 })
        expect(await s.call('echo', 'two')).toBe('two')
        for (const tag of ['first', 'second']) {
          const controller = new AbortController()
          const pending = s.call('slow', { ms: 60_000, tag }, controller.signal)
          await waitForLog(s.capsid, new RegExp(`slow-start ${tag}`), 10_000)
          controller.abort()
          await expect(pending).rejects.toBeInstanceOf(CallCancelledError)
          expect(await waitForLog(s.capsid, new RegExp(`slow-aborted ${tag}`), 10_000)).toBe(`slow-aborted ${tag} CallCancelledError`)
        }
        // Three in flight: the middle one's cancel ends it alone, then the others'.
        const controllers = ['a', 'b', 'c'].map(() => new AbortController())
        const pending = ['a', 'b', 'c'].map((tag, i) => s.call('slow', { ms: 60_000, tag }, controllers[i].signal))
        for (const tag of ['a', 'b', 'c']) await waitForLog(s.capsid, new RegExp(`slow-start ${tag}`), 10_000)
        controllers[1].abort()
        await expect(pending[1]).rejects.toBeInstanceOf(CallCancelledError)
        await waitForLog(s.capsid, /slow-aborted b CallCancelledError/, 10_000)
        expect(s.capsid.logs().filter(l => /slow-aborted [ac]/.test(l))).toEqual([])
        expect(s.capsid.inFlight).toBe(2)
        controllers[0].abort()
        controllers[2].abort()
        await Promise.all([pending[0], pending[2]].map(async p => { await expect(p).rejects.toBeInstanceOf(CallCancelledError) }))
        await waitForLog(s.capsid, /slow-aborted a CallCancelledError/, 10_000)
        await waitForLog(s.capsid, /slow-aborted c CallCancelledError/, 10_000)
        // Nothing left in flight in the capsid, and the replica still answers.
        expect(await s.call('echo', 3)).toBe(3)
        expect(s.capsid.inFlight).toBe(0)
      } finally {
        await s.stop()
      }
    }, 40_000)
  }

  it('counts the calls it hands to the replica and their latencies, and is idle once every call ended', async () => {
    const s = await serving('window', fullNodeComposition)
    try {
      const before = s.info.window.calls
      const controller = new AbortController()
      const outcomes = await Promise.allSettled([
        s.call('echo', 1),
        s.call('slow', { ms: 120, tag: 'w1' }),
        s.call('fail', { message: 'no' }),
        s.call('slow', { ms: 60_000, tag: 'w2' }, controller.signal),
        (async () => { await waitForLog(s.capsid, /slow-start w2/, 10_000); controller.abort() })()
      ])
      expect(outcomes.map(o => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled'])
      expect(s.info.window.calls - before).toBe(4)
      expect(s.info.window.latency.counts.reduce((a, b) => a + b, 0)).toBe(s.info.window.calls)
      // The 120 ms call is in a bucket above 100 ms.
      expect(s.info.window.latency.quantile(1)).toBeGreaterThan(100)
      await within(s.replicas.idle(), 5_000, 'idle after every call ended')
      expect(s.capsid.inFlight).toBe(0)
    } finally {
      await s.stop()
    }
  }, 40_000)

  for (const [name, compose] of compositions) {
    it(`the node's deadline reaches the replica's handler, ${name}`, async () => {
      // The server's clock runs a minute ahead: the deadline handed to the replica is a minute after
      // the one the session keeps, so only the session's (through the node) can end the call in time,
      // and the replica hears it as the node's cancel, not as its own deadline.
      const s = await serving(`deadline-${name.replace(/\W+/g, '-')}`, compose, { ...systemClock, now: () => Date.now() + 60_000 })
      try {
        expect(await s.call('echo', 1)).toBe(1)
        await expect(s.call('slow', { ms: 60_000, tag: 'd' }, undefined, 300)).rejects.toBeInstanceOf(DeadlineExceededError)
        expect(await waitForLog(s.capsid, /slow-aborted d /, 10_000)).toBe('slow-aborted d CallCancelledError')
        expect(await s.call('echo', 2)).toBe(2)
        expect(s.capsid.inFlight).toBe(0)
      } finally {
        await s.stop()
      }
    }, 40_000)

    it(`the channel closing reaches the replica's handler, ${name}`, async () => {
      const s = await serving(`close-${name.replace(/\W+/g, '-')}`, compose)
      try {
        expect(await s.call('echo', 1)).toBe(1)
        const pending = ['x', 'y'].map(async (tag) => await s.call('slow', { ms: 60_000, tag }).catch((err: unknown) => err))
        for (const tag of ['x', 'y']) await waitForLog(s.capsid, new RegExp(`slow-start ${tag}`), 10_000)
        await s.stopClient()
        for (const err of await Promise.all(pending)) expect(err).toBeInstanceOf(Error)
        await waitForLog(s.capsid, /slow-aborted x CallCancelledError/, 10_000)
        await waitForLog(s.capsid, /slow-aborted y CallCancelledError/, 10_000)
        await waitFor(() => s.capsid.inFlight === 0, 5_000, 'the capsid has no call in flight')
      } finally {
        await s.stop()
      }
    }, 40_000)
  }
})

/** A context of a wrapper's own, its signal the session's. */
class WrappedContext implements CallContext {
  readonly cell: string
  readonly method: string
  readonly payload: Uint8Array
  readonly principal: CallContext['principal']
  readonly remotePeer: string
  readonly deadlineMs: number
  readonly traceparent: string | undefined
  private readonly inner: CallContext
  constructor (inner: CallContext) {
    this.inner = inner
    this.cell = inner.cell
    this.method = inner.method
    this.payload = inner.payload
    this.principal = inner.principal
    this.remotePeer = inner.remotePeer
    this.deadlineMs = inner.deadlineMs
    this.traceparent = inner.traceparent
  }

  get signal (): AbortSignal { return this.inner.signal }
}

function fullNodeComposition (h: SynapseHandler): SynapseHandler {
  return tracedHandler({ start: () => ({ traceparent: undefined, recording: false, end: () => {} }) }, new CallMeter({ registry: new Registry() }).wrap(h))
}

async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

async function waitFor (done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!done()) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('a replica set stopping after direct capsid calls', () => {
  it('stops: calls made straight into a capsid (not handed to it by the set) do not leave a count to wait for', async () => {
    const replicas = new ReplicaSet({ dataDir: join(tmp, 'direct'), runDir: join(tmp, 'direct-run'), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 1 })
    const info = await replicas.spawn({ cell: 'test', version: '1.0.0', digest: 'd', codePath: artifact, manifest: { sandbox: { require: 'process' } } }, { signal: AbortSignal.timeout(20_000) })
    for (let i = 0; i < 3; i++) expect(unjson(await info.capsid!.call('echo', json(i), { deadlineMs: Date.now() + 10_000 }))).toBe(i)
    // The release store keeps an artifact a replica still runs from (and only that one).
    expect(replicas.runsDigest('d')).toBe(true)
    expect(replicas.runsDigest('e')).toBe(false)
    expect(existsSync(join(replicas.runDir, info.instanceId))).toBe(true)
    // On the code before, each direct call pushed the set's count of calls being answered below zero and stopAll waited forever.
    await replicas.stopAll({ graceMs: 200, signal: AbortSignal.timeout(15_000) })
    await replicas.idle()
    expect(replicas.list().every(r => r.state === 'stopped')).toBe(true)
    expect(replicas.runsDigest('d')).toBe(false)
    // The run directory goes with the replicas (a node stopped with a fresh identity each run left one in /tmp per run).
    expect(existsSync(replicas.runDir)).toBe(false)
  }, 30_000)
})

describe('a replica set waiting for the calls it handed out', () => {
  it('idle() waits for a call it handed to a capsid, whatever calls are made straight into that capsid meanwhile', async () => {
    const replicas = new ReplicaSet({ dataDir: join(tmp, 'mixed'), runDir: join(tmp, 'mixed-run'), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 1 })
    try {
      const info = await replicas.spawn({ cell: 'test', version: '1.0.0', digest: 'd', codePath: artifact, manifest: { sandbox: { require: 'process' } } }, { signal: AbortSignal.timeout(20_000) })
      const capsid = info.capsid!
      const ctx: CallContext = { cell: 'test', method: 'slow', payload: json({ ms: 1500, tag: 'handed' }), principal: { peerId: 'p', authority: 'a'.repeat(64), roles: ['caller'], expiresMs: Date.now() + 60_000 } as unknown as CallContext['principal'], remotePeer: 'p', deadlineMs: Date.now() + 10_000, signal: new AbortController().signal }
      const handed = replicas.handler().call(ctx)
      await waitForLog(capsid, /slow-start handed/)
      // A call straight into the capsid, answered while the handed one still runs.
      expect(unjson(await capsid.call('echo', json('direct'), { deadlineMs: Date.now() + 10_000 }))).toBe('direct')
      await replicas.idle({ signal: AbortSignal.timeout(10_000) })
      // On the code before, the direct call's end was counted as the handed call's: idle() resolved
      // here with the handed call still in the replica.
      expect(capsid.inFlight).toBe(0)
      await handed
    } finally {
      await replicas.stopAll({ graceMs: 200, signal: AbortSignal.timeout(15_000) })
    }
  }, 30_000)
})
