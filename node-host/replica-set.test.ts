// Calls served into a real replica through a real synapse session (TCP + Noise + yamux in this
// process, the replica a child process): a caller's cancel must reach the replica's handler. The
// node learns of it from the session's `settled` hook once it has seen the hook work (no
// AbortController per call), and from ctx.signal when the handler is composed without the hook;
// both are tested, so this fails if either path stops carrying the cancel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { acceptingAuth, createSynapseNode, UnknownAuthorityError, type SynapseNode } from '../test/bench/nodes.ts'
import { CallCancelledError, SYNAPSE_ERROR_CLASSES, WireErrorRegistry, type SynapseHandler } from '../core/synapse/index.ts'
import { systemClock, systemRandom } from '../core/ports.ts'
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

async function serving (name: string, compose: (h: SynapseHandler) => SynapseHandler): Promise<{ capsid: Capsid, call: (method: string, req: unknown, signal?: AbortSignal) => Promise<unknown>, stop: () => Promise<void> }> {
  const replicas = new ReplicaSet({ dataDir: join(tmp, name), runDir: join(tmp, `${name}-run`), sandbox: 'process', clock: systemClock, random: systemRandom, maxReplicas: 1 })
  const info: ReplicaInfo = await replicas.spawn({ cell: 'test', version: '1.0.0', digest: 'd', codePath: artifact, manifest: { sandbox: { require: 'process' } } }, { signal: AbortSignal.timeout(20_000) })
  const nodes: SynapseNode[] = []
  const server = await createSynapseNode({ ...acceptingAuth(), handler: compose(replicas.handler()), errors: errors() })
  nodes.push(server)
  const client = await createSynapseNode({ ...acceptingAuth(), errors: errors() })
  nodes.push(client)
  const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'test')
  return {
    capsid: info.capsid!,
    call: async (method, req, signal) => unjson(await channel.call(method, json(req), { ...(signal !== undefined ? { signal } : {}), timeoutMs: 30_000 })),
    stop: async () => {
      await Promise.all(nodes.map(async n => { await n.stop() }))
      await replicas.stopAll({ graceMs: 200 })
    }
  }
}

describe('replica set serving synapse calls', () => {
  const compositions: Array<[string, (h: SynapseHandler) => SynapseHandler]> = [
    // As a full node composes it: tracing outside, the call meter inside, both passing `settled` on.
    ['with the settled hook (as a full node)', (h) => tracedHandler({ start: () => ({ traceparent: undefined, recording: false, end: () => {} }) }, new CallMeter({ registry: new Registry() }).wrap(h))],
    // A host that drops the hook: the cancel must still arrive, through ctx.signal.
    ['without the settled hook', (h) => ({ call: async (ctx) => await h.call(ctx), message: (ctx) => { h.message(ctx) }, stream: (ctx) => h.stream(ctx) })]
  ]
  for (const [name, compose] of compositions) {
    it(`a caller's cancel reaches the replica's handler, ${name}`, async () => {
      const s = await serving(name.replace(/\W+/g, '-'), compose)
      try {
        // Answered calls first: the settled hook has been seen working by the time the cancel comes.
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
})
