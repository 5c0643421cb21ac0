import { describe, it, expect } from 'vitest'
import { handleHttp, statusOf, DEADLINE_HEADER, type EdgeNodeApi, type HttpLimits } from './http-api.ts'
import { NoReplicaError, UnknownCellError } from '../core/mesh/index.ts'
import { DeadlineExceededError, RemoteError, UnknownMethodError } from '../core/synapse/index.ts'
import { NoGrantError, UnknownAuthorityError, WrongCellScopeError } from '../core/identity/index.ts'
import { FleetNotJoinedError } from './errors.ts'

const LIMITS: HttpLimits = { maxBodyBytes: 64, defaultDeadlineMs: 1000, maxDeadlineMs: 5000 }

function fakeNode (answer: (cell: string, method: string, body: unknown, timeoutMs: number) => unknown): EdgeNodeApi & { calls: Array<{ cell: string, method: string, body: unknown, timeoutMs: number }> } {
  const calls: Array<{ cell: string, method: string, body: unknown, timeoutMs: number }> = []
  return {
    calls,
    async call (cell, method, body, { timeoutMs }) {
      calls.push({ cell, method, body, timeoutMs })
      return { result: await answer(cell, method, body, timeoutMs), route: { nodeId: 'n1', instanceId: 'i1', version: '1.0.0', digest: 'd'.repeat(64) } }
    },
    fleet: () => ({ nodes: [] }),
    health: () => ({ peerId: 'p', joined: true, connected: [], nodes: 0, cells: 0, starts: 1, uptimeMs: 0, grants: [], alarms: 0, reconnect: { rounds: 0, dials: 0, failures: 0, reconnects: 0, joins: 0, leaves: 0 } })
  }
}

interface Answer { error?: { name: string, message: string }, joined?: boolean, [key: string]: unknown }

async function send (node: EdgeNodeApi, path: string, init: RequestInit = {}): Promise<{ status: number, body: Answer, headers: Headers }> {
  const res = await handleHttp(new Request(`http://edge${path}`, init), async () => node, LIMITS)
  return { status: res.status, body: await res.json(), headers: res.headers }
}

describe('edge HTTP API', () => {
  it('turns POST /cells/<cell>/<method> into a call and answers the result with the route', async () => {
    const node = fakeNode((_c, _m, body) => ({ echoed: body }))
    const r = await send(node, '/cells/billing/charge', { method: 'POST', body: '{"amount":5}' })
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ echoed: { amount: 5 } })
    expect(r.headers.get('x-cell-version')).toBe('1.0.0')
    expect(node.calls).toEqual([{ cell: 'billing', method: 'charge', body: { amount: 5 }, timeoutMs: 1000 }])
  })

  it('takes the deadline from the header, clamped to the maximum; refuses a malformed one', async () => {
    const node = fakeNode(() => 1)
    expect((await send(node, '/cells/billing/charge', { method: 'POST', headers: { [DEADLINE_HEADER]: '250' } })).status).toBe(200)
    expect((await send(node, '/cells/billing/charge', { method: 'POST', headers: { [DEADLINE_HEADER]: '999999' } })).headers.get(DEADLINE_HEADER)).toBe('5000')
    expect(node.calls.map(c => c.timeoutMs)).toEqual([250, 5000])
    for (const bad of ['0', '-5', '1.5', 'soon', '9999999999']) {
      const r = await send(node, '/cells/billing/charge', { method: 'POST', headers: { [DEADLINE_HEADER]: bad } })
      expect([r.status, r.body.error?.name], bad).toEqual([400, 'BadDeadlineError'])
    }
    expect(node.calls).toHaveLength(2)
  })

  it('refuses bad JSON (400), a large body by Content-Length or by bytes read (413), unknown routes (404), wrong methods (405)', async () => {
    const node = fakeNode(() => 1)
    const cases: Array<[string, RequestInit, number, string]> = [
      ['/cells/billing/charge', { method: 'POST', body: '{nope' }, 400, 'BadJsonError'],
      ['/cells/billing/charge', { method: 'POST', body: new Uint8Array([0xff, 0xfe]) }, 400, 'BadJsonError'],
      ['/cells/billing/charge', { method: 'POST', body: JSON.stringify({ pad: 'x'.repeat(100) }) }, 413, 'BodyTooLargeError'],
      ['/cells/billing/charge', { method: 'POST', body: new ReadableStream({ start (c) { c.enqueue(new Uint8Array(40)); c.enqueue(new Uint8Array(40)); c.close() } }), duplex: 'half' } as RequestInit, 413, 'BodyTooLargeError'],
      ['/cells/Not_A_Cell/charge', { method: 'POST' }, 404, 'RouteNotFoundError'],
      ['/cells/billing/a%20b', { method: 'POST' }, 404, 'RouteNotFoundError'],
      ['/nowhere', {}, 404, 'RouteNotFoundError'],
      ['/cells/billing/charge', { method: 'GET' }, 405, 'HttpMethodNotAllowedError'],
      ['/fleet', { method: 'POST' }, 405, 'HttpMethodNotAllowedError']
    ]
    for (const [path, init, status, name] of cases) {
      const r = await send(node, path, init)
      expect([r.status, r.body.error?.name], `${path} ${String(init.method)}`).toEqual([status, name])
    }
    expect(node.calls).toEqual([])
    // An empty body is a call with null.
    expect((await send(node, '/cells/billing/charge', { method: 'POST' })).status).toBe(200)
    expect(node.calls[0]?.body).toBe(null)
  })

  it('maps failures of the call to statuses by error name, with the name in the body', async () => {
    const cases: Array<[Error, number, string]> = [
      [new UnknownCellError('x'), 404, 'UnknownCellError'],
      [new UnknownMethodError('x'), 404, 'UnknownMethodError'],
      [new NoGrantError('x'), 403, 'NoGrantError'],
      [new UnknownAuthorityError('x'), 403, 'UnknownAuthorityError'],
      [new WrongCellScopeError('x'), 403, 'WrongCellScopeError'],
      [new NoReplicaError('x'), 503, 'NoReplicaError'],
      [new FleetNotJoinedError('x'), 503, 'FleetNotJoinedError'],
      [new DeadlineExceededError('x'), 504, 'DeadlineExceededError'],
      [new RemoteError('InvalidAmountError', 'negative'), 422, 'InvalidAmountError'],
      [new TypeError('bug'), 500, 'TypeError']
    ]
    for (const [err, status, name] of cases) {
      const r = await send(fakeNode(() => { throw err }), '/cells/billing/charge', { method: 'POST', body: '{}' })
      expect([r.status, r.body.error?.name, r.body.error?.message]).toEqual([status, name, err.message])
      expect(statusOf(err)).toBe(status)
    }
  })

  it('serves /healthz and /fleet', async () => {
    const node = fakeNode(() => 1)
    expect((await send(node, '/healthz')).body.joined).toBe(true)
    expect((await send(node, '/fleet')).body).toEqual({ nodes: [] })
  })
})
