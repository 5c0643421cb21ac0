// The call meter through a real synapse session (TCP + Noise + yamux in this process): outcomes,
// latency and in-flight calls come from the session's synchronous `settled` hook, so this fails if
// the session stops calling it or the meter stops recording there.
import { afterEach, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { acceptingAuth, createSynapseNode, testHandler, UnknownAuthorityError } from '../../test/bench/nodes.ts'
import type { SynapseNode } from '../../test/bench/nodes.ts'
import { CallCancelledError, DeadlineExceededError, SYNAPSE_ERROR_CLASSES, WireErrorRegistry } from '../../core/synapse/index.ts'
import { tracedHandler } from '../../core/telemetry/tracer.ts'
import { CallMeter } from './call-meter.ts'

const nodes: SynapseNode[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => { await n.stop() })) })

const errors = (): WireErrorRegistry => new WireErrorRegistry([...SYNAPSE_ERROR_CLASSES, UnknownAuthorityError])
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The value of one series in a text exposition; undefined when absent. */
function value (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('call meter on a real synapse session', () => {
  it('records each call\'s outcome, latency and bytes when the session answers it', async () => {
    const registry = new Registry()
    const meter = new CallMeter({ registry })
    // As a full node composes it: tracing outside, the meter inside (tracedHandler keeps `settled`).
    const tracer = { start: () => ({ traceparent: undefined, recording: false, end: () => {} }) }
    const server = await createSynapseNode({ ...acceptingAuth(), handler: tracedHandler(tracer, meter.wrap(testHandler())), errors: errors() })
    const client = await createSynapseNode({ ...acceptingAuth(), errors: errors() })
    nodes.push(server, client)
    const channel = await client.services.synapse.open(server.getMultiaddrs()[0], 'billing')

    expect((await channel.call('echo', bytes('12345'))).length).toBe(5)
    expect((await channel.call('echo', bytes('123'))).length).toBe(3)
    await expect(channel.call('fail', bytes('x'))).rejects.toBeInstanceOf(UnknownAuthorityError)
    await expect(channel.call('hang', bytes('x'), { timeoutMs: 120 })).rejects.toBeInstanceOf(DeadlineExceededError)
    const controller = new AbortController()
    const cancelled = channel.call('hang', bytes('x'), { signal: controller.signal })
    const giveUpAt = Date.now() + 5000
    while (value(await registry.metrics(), 'cell_synapse_calls_in_flight{cell="billing"}') !== 1) {
      if (Date.now() > giveUpAt) throw new Error('the pending call never showed in flight')
      await new Promise(resolve => setImmediate(resolve))
    }
    controller.abort()
    await expect(cancelled).rejects.toBeInstanceOf(CallCancelledError)
    let text = await registry.metrics()
    while (value(text, 'cell_synapse_calls_in_flight{cell="billing"}') !== 0) {
      if (Date.now() > giveUpAt) throw new Error('the cancelled call never settled')
      await new Promise(resolve => setImmediate(resolve))
      text = await registry.metrics()
    }

    expect(value(text, 'cell_synapse_calls_total{cell="billing",method="echo",outcome="ok"}')).toBe(2)
    expect(value(text, 'cell_synapse_calls_total{cell="billing",method="fail",outcome="error"}')).toBe(1)
    // The call past its deadline ends on the server by its own deadline or by the CANCEL the
    // caller sends at the same moment (a race): deadline or cancelled, with its 120 ms either way.
    const deadline = value(text, 'cell_synapse_calls_total{cell="billing",method="hang",outcome="deadline"}') ?? 0
    expect(deadline + (value(text, 'cell_synapse_calls_total{cell="billing",method="hang",outcome="cancelled"}') ?? 0)).toBe(2)
    expect(deadline).toBeLessThanOrEqual(1)
    expect(value(text, 'cell_synapse_call_duration_seconds_count{cell="billing",method="echo"}')).toBe(2)
    expect(value(text, 'cell_synapse_call_duration_seconds_count{cell="billing",method="hang"}')).toBe(2)
    // The deadline call took its 120 ms on the server: at least 0.1 s in the sum, not in the 25 ms bucket.
    expect(value(text, 'cell_synapse_call_duration_seconds_sum{cell="billing",method="hang"}')).toBeGreaterThanOrEqual(0.1)
    expect(value(text, 'cell_synapse_call_duration_seconds_bucket{le="0.025",cell="billing",method="hang"}')).toBeLessThanOrEqual(1)
    expect(value(text, 'cell_synapse_call_duration_seconds_bucket{le="+Inf",cell="billing",method="hang"}')).toBe(2)
    expect(value(text, 'cell_synapse_sent_bytes_total{cell="billing"}')).toBe(8)
    expect(value(text, 'cell_synapse_received_bytes_total{cell="billing"}')).toBe(5 + 3 + 1 + 1 + 1)
  })
})
