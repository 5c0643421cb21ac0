// Issue 12 point 4-5: one trace per call, caller → full node → replica host side, exported over
// OTLP/HTTP (JSON) to a local receiver; a failing call's spans carry ERROR. And an exporter whose
// receiver is down only counts failures: calls finish as fast as without tracing.
import { describe, it, expect, afterAll } from 'vitest'
import { join } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { createClient, waitForReplicas } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { OtelTracerAdapter } from '../../node-host/telemetry/otel-tracer.ts'
import { TestFleet } from './test-fleet.ts'
import { OtlpReceiver, KIND, STATUS, callTrace } from './otlp-receiver.ts'

const billingDir = join(import.meta.dirname, '..', '..', 'examples', 'billing')

/** Polls `probe` until it returns a value (not undefined) or the deadline passes. */
async function until<T> (what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    // The poll interval of a condition checked against a deadline (not a wait for an outcome).
    await new Promise<void>((resolve) => { setTimeout(resolve, 100) })
  }
}

describe('tracing', () => {
  const fleet = new TestFleet()
  const receiver = new OtlpReceiver()
  afterAll(async () => {
    await fleet.stop()
    await receiver.stop()
  })

  it('one trace spans caller → node → replica, with parent links, durations and the failing call in ERROR', async () => {
    const url = await receiver.start()
    const authority = await generateAuthority()
    await fleet.start('cell-tracing-', 1, { authorityKeys: [authority], otlp: { url, ratio: 1, scheduledDelayMs: 50 } })
    const node = fleet.nodes[0]
    const publisher = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: authority, listen: true })
    fleet.clients.push(publisher)
    await new Publisher(publisher).publish(billingDir, '1.0.0', authority, { setAuthority: true, timeoutMs: 60_000 })
    const tracer = new OtelTracerAdapter({ url, ratio: 1, serviceName: 'test-caller', scheduledDelayMs: 50 })
    const caller = await createClient({ bootstrap: [node.addresses()[0]], authorityKey: authority, tracer })
    fleet.clients.push(caller)
    await waitForReplicas(caller, 'billing', { timeoutMs: 30_000 })
    const billing = caller.remote<{ charge: (req: { amount: number }) => Promise<{ amount: number }> }>('billing')

    expect((await billing.charge({ amount: 7 })).amount).toBe(7)
    await expect(billing.charge({ amount: -1 })).rejects.toMatchObject({ remoteName: 'InvalidAmountError' })
    await tracer.flush()
    await node.tracer!.flush()

    const clients = await until('both client spans', 10_000, () => {
      const c = receiver.spans.filter(s => s.service === 'test-caller' && s.kind === KIND.client && s.name === 'billing/charge')
      return c.length >= 2 ? c : undefined
    })
    const ok = clients.find(s => s.status.code !== STATUS.error)!
    const failed = clients.find(s => s.status.code === STATUS.error)!
    expect(ok).toBeDefined()
    expect(failed).toBeDefined()
    expect(ok.traceId).not.toBe(failed.traceId)
    expect(failed.status.message).toMatch(/InvalidAmountError/)
    for (const client of [ok, failed]) {
      const trace = await until(`node spans of trace ${client.traceId}`, 10_000, () => callTrace(receiver.spans, client))
      expect(trace.server.service).toBe('cell-node')
      expect(trace.server.name).toBe('billing/charge')
      expect(trace.capsid.name).toBe('capsid billing/charge')
      for (const s of [client, trace.server, trace.capsid]) expect(s.endNs > s.startNs, `${s.name} has a duration`).toBe(true)
      // Nested in time: the caller's span covers the node's, which covers the replica's.
      expect(client.startNs <= trace.server.startNs && trace.server.endNs <= client.endNs).toBe(true)
      expect(trace.server.startNs <= trace.capsid.startNs && trace.capsid.endNs <= trace.server.endNs).toBe(true)
      const wanted = client === failed ? STATUS.error : STATUS.unset
      expect([trace.server.status.code, trace.capsid.status.code]).toEqual([wanted, wanted])
    }
    expect(receiver.rejected).toBe(0)
    expect(node.tracer!.stats.failed).toBe(0)
    const metrics = await node.metrics.text()
    expect(metrics).toMatch(/^cell_trace_spans_total\{outcome="exported"\} [1-9]/m)
  }, 120_000)
})
