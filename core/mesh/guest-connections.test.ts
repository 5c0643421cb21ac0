// GuestAdmission's decisions on stand-in connections; test/reliability/listener-garbage.test.ts
// runs the same class in a real `cell up` against real libp2p peers from ten loopback hosts.
import { describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection } from '@libp2p/interface'
import { GuestAdmission, GuestConnectionsError, guestHost, MAX_VOUCHED_CALLERS, vouchingCallers, type GuestAdmissionInit } from './guest-connections.ts'
import { hostKey, InboundSlots, oldestStale } from './inbound-failures.ts'

interface FakeConn { id: string, direction: 'inbound' | 'outbound', status: string, remoteAddr: ReturnType<typeof multiaddr>, remotePeer: { toString: () => string }, timeline: { open: number }, aborted?: Error, abort: (err: Error) => void }

function fakeLibp2p (): { conns: FakeConn[], listeners: Set<(e: CustomEvent<Connection>) => void>, open: (c: FakeConn) => void, libp2p: GuestAdmissionInit['libp2p'] } {
  const conns: FakeConn[] = []
  const listeners = new Set<(e: CustomEvent<Connection>) => void>()
  return {
    conns,
    listeners,
    open: (c) => { conns.push(c); for (const l of listeners) l(new CustomEvent('connection:open', { detail: c as unknown as Connection })) },
    libp2p: {
      getConnections: () => conns.filter(c => c.status === 'open') as unknown as Connection[],
      addEventListener: (_: string, l: (e: CustomEvent<Connection>) => void) => { listeners.add(l) },
      removeEventListener: (_: string, l: (e: CustomEvent<Connection>) => void) => { listeners.delete(l) }
    } as unknown as GuestAdmissionInit['libp2p']
  }
}

let clock = 0
function conn (addr: string, peer: string, direction: 'inbound' | 'outbound' = 'inbound'): FakeConn {
  const c: FakeConn = {
    id: `${peer}-${clock}`,
    direction,
    status: 'open',
    remoteAddr: multiaddr(addr),
    remotePeer: { toString: () => peer },
    timeline: { open: ++clock },
    abort: (err) => { c.aborted = err; c.status = 'closed' }
  }
  return c
}

describe('guestHost', () => {
  it('names IPv4 hosts, IPv6 /64 prefixes and DNS names; none for addresses without a host', () => {
    expect(guestHost(conn('/ip4/10.1.2.3/tcp/4001', 'p') as never)).toBe('10.1.2.3')
    expect(guestHost(conn('/ip6/2001:db8:0:1:aaaa::1/tcp/1', 'p') as never)).toBe('2001:db8:0:1::/64')
    expect(guestHost(conn('/ip6/2001:db8:0:1:bbbb:cccc:dddd:eeee/tcp/1', 'p') as never)).toBe('2001:db8:0:1::/64')
    expect(guestHost(conn('/ip6/2001:db8::1/tcp/1', 'p') as never)).toBe('2001:db8:0:0::/64')
    expect(guestHost(conn('/ip6/::1/tcp/1', 'p') as never)).toBe('0:0:0:0::/64')
    expect(guestHost(conn('/dns4/example.org/tcp/1', 'p') as never)).toBe('example.org')
    expect(guestHost(conn('/memory/abc', 'p') as never)).toBeUndefined()
  })
})

describe('hostKey and InboundSlots', () => {
  it('counts an IPv6 /64 as one host, an IPv4-mapped address as its IPv4 address', () => {
    expect(hostKey('192.0.2.7')).toBe('192.0.2.7')
    expect(hostKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(hostKey('2001:DB8:0:1::9')).toBe('2001:db8:0:1::/64')
    expect(hostKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
    expect(hostKey('2001:0db8:0000:0001:0000:0000:0000:0001')).toBe('2001:db8:0:1::/64')
    expect(hostKey('example.org')).toBe('example.org')
    // One subscriber's /64 takes one host's share of upgrade slots, whatever address it uses.
    const slots = new InboundSlots(2, 10)
    expect(slots.tryTake('2001:db8:0:1::1')).toBeUndefined()
    expect(slots.tryTake('2001:db8:0:1::2')).toBeUndefined()
    expect(slots.tryTake('2001:db8:0:1:ffff::3')).toBe('TooManyPendingFromHost')
    expect(slots.tryTake('2001:db8:0:2::1')).toBeUndefined()
    expect(slots.inUse('2001:db8:0:1::77')).toBe(2)
    slots.give('2001:db8:0:1::2')
    expect(slots.inUse('2001:db8:0:1::1')).toBe(1)
    expect(slots.tryTake('::ffff:10.0.0.1')).toBeUndefined()
    expect(slots.inUse('10.0.0.1')).toBe(1)
  })
})

describe('oldestStale', () => {
  it('finds the oldest entry past staleMs, of a host (by hostKey) when asked, that passes the filter', () => {
    const m = new Map([
      ['a', { host: '2001:db8:0:1::1', startedMs: 100 }],
      ['b', { host: '10.0.0.2', startedMs: 200 }],
      ['c', { host: '2001:db8:0:1::2', startedMs: 300 }],
      ['d', { host: '10.0.0.2', startedMs: 900 }]
    ])
    expect(oldestStale(m, undefined, 500, 1_000)?.[0]).toBe('a')
    expect(oldestStale(m, '10.0.0.2', 500, 1_000)?.[0]).toBe('b')
    expect(oldestStale(m, '2001:db8:0:1::99', 500, 1_000, (k) => k !== 'a')?.[0]).toBe('c')
    // 'd' is only 100 ms old: not stale, and nothing after it is looked at.
    expect(oldestStale(m, '10.0.0.2', 500, 1_000, (k) => k !== 'b')).toBeUndefined()
    expect(oldestStale(m, undefined, 1_000, 1_000)).toBeUndefined()
  })
})

describe('GuestAdmission', () => {
  it('closes a guest connection past the per-host limit as soon as it opens, and counts it', () => {
    const f = fakeLibp2p()
    const closed: string[] = []
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { perHost: 3, total: 100 }, onClosed: (reason, host, peer) => { closed.push(`${reason} ${host} ${peer}`) } })
    g.start()
    for (let i = 0; i < 5; i++) f.open(conn('/ip4/10.0.0.9/tcp/1', `x${i}`))
    expect(f.conns.filter(c => c.status === 'open').map(c => c.remotePeer.toString())).toEqual(['x0', 'x1', 'x2'])
    expect(f.conns[3].aborted).toBeInstanceOf(GuestConnectionsError)
    expect((f.conns[3].aborted as GuestConnectionsError).reason).toBe('TooManyGuestsFromHost')
    expect(f.conns[3].aborted?.name).toBe('GuestConnectionsError')
    expect(closed).toEqual(['TooManyGuestsFromHost 10.0.0.9 x3', 'TooManyGuestsFromHost 10.0.0.9 x4'])
    expect(g.stats().closed).toBe(2)
    // Another host is not held back by the first one.
    f.open(conn('/ip4/10.0.0.10/tcp/1', 'y0'))
    expect(f.conns.at(-1)!.status).toBe('open')
    // After stop, nothing is decided any more.
    g.stop()
    f.open(conn('/ip4/10.0.0.9/tcp/1', 'x5'))
    expect(f.conns.at(-1)!.status).toBe('open')
  })

  it('past the total, closes the oldest connection of the host holding the most guests', () => {
    const f = fakeLibp2p()
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { perHost: 10, total: 6 } })
    g.start()
    for (let i = 0; i < 4; i++) f.open(conn('/ip4/10.0.0.1/tcp/1', `a${i}`))
    f.open(conn('/ip4/10.0.0.2/tcp/1', 'b0'))
    f.open(conn('/ip4/10.0.0.3/tcp/1', 'c0'))
    expect(f.conns.every(c => c.status === 'open')).toBe(true)
    // A seventh guest, from a host with one: the oldest of 10.0.0.1 (four) goes, the newcomer stays.
    f.open(conn('/ip4/10.0.0.3/tcp/1', 'c1'))
    expect(f.conns.find(c => c.remotePeer.toString() === 'a0')!.status).toBe('closed')
    expect((f.conns.find(c => c.remotePeer.toString() === 'a0')!.aborted as GuestConnectionsError).reason).toBe('TooManyGuests')
    expect(f.conns.find(c => c.remotePeer.toString() === 'c1')!.status).toBe('open')
    expect(g.census().anonymous.get('10.0.0.1')!.map(c => c.remotePeer.toString())).toEqual(['a1', 'a2', 'a3'])
    expect(g.stats().anonymous).toBe(6)
  })

  it('never counts or closes members, nor connections this node dialed; membership is read at each decision', () => {
    const f = fakeLibp2p()
    const members = new Set(['m0', 'm1', 'm2'])
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: (id) => members.has(id), limits: { perHost: 2, total: 2 } })
    g.start()
    for (const id of members) f.open(conn('/ip4/10.0.0.1/tcp/1', id))
    for (let i = 0; i < 3; i++) f.open(conn('/ip4/10.0.0.1/tcp/1', `out${i}`, 'outbound'))
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n0'))
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n1'))
    expect(f.conns.every(c => c.status === 'open')).toBe(true)
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n2'))
    expect(f.conns.at(-1)!.status).toBe('closed')
    // n0's record arrives: it is a member now, so the host has room for one more guest.
    members.add('n0')
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n3'))
    expect(f.conns.at(-1)!.status).toBe('open')
    expect(g.census().anonymous.get('10.0.0.1')!.map(c => c.remotePeer.toString())).toEqual(['n1', 'n3'])
  })

  it('callers vouched for pass the per-host limit and are closed to make room only after every anonymous guest', () => {
    const f = fakeLibp2p()
    let now = 1_000
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { perHost: 2, total: 5 }, now: () => now })
    g.start()
    const peer = (id: string): FakeConn => f.conns.find(c => c.remotePeer.toString() === id)!
    // A NAT with three callers holding grants, and an anonymous one: the vouched pass the per-host limit.
    for (const id of ['v0', 'v1', 'v2']) g.vouch(id, 10_000)
    for (const id of ['v0', 'v1', 'v2', 'n0', 'n1']) f.open(conn('/ip4/10.0.0.1/tcp/1', id))
    expect(f.conns.every(c => c.status === 'open')).toBe(true)
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n2'))
    expect(peer('n2').status).toBe('closed')
    // Past the total, anonymous guests go first: the vouched callers of the same host stay.
    f.open(conn('/ip4/10.0.0.2/tcp/1', 'a0'))
    expect(peer('n0').status).toBe('closed')
    f.open(conn('/ip4/10.0.0.3/tcp/1', 'a1'))
    expect(peer('n1').status).toBe('closed')
    f.open(conn('/ip4/10.0.0.4/tcp/1', 'a2'))
    expect(peer('a0').status).toBe('closed')
    expect(['v0', 'v1', 'v2'].map(id => peer(id).status)).toEqual(['open', 'open', 'open'])
    // With no anonymous guest left, the oldest vouched of the fullest host makes room.
    f.open(conn('/ip4/10.0.0.5/tcp/1', 'v3'))
    g.vouch('v3', 10_000)
    f.open(conn('/ip4/10.0.0.5/tcp/1', 'v4'))
    g.vouch('v4', 10_000)
    // (a1 and a2, anonymous, went for v3 and v4.)
    expect([peer('a1').status, peer('a2').status]).toEqual(['closed', 'closed'])
    g.vouch('v5', 10_000)
    f.open(conn('/ip4/10.0.0.6/tcp/1', 'v5'))
    expect(peer('v0').status).toBe('closed')
    expect((peer('v0').aborted as GuestConnectionsError).reason).toBe('TooManyGuests')
    expect(g.stats()).toEqual({ anonymous: 0, vouched: 5, vouchedPeers: 6, closed: 7, limits: { perHost: 2, total: 5 } })
    // A vouch ends with the grant: v1 and v2 count as anonymous again, and the host's limit applies.
    now = 10_000
    expect(g.isVouched('v1')).toBe(false)
    expect(g.census().anonymous.get('10.0.0.1')!.map(c => c.remotePeer.toString())).toEqual(['v1', 'v2'])
    expect(g.stats()).toMatchObject({ anonymous: 5, vouched: 0, vouchedPeers: 1, closed: 7 })
    f.open(conn('/ip4/10.0.0.1/tcp/1', 'n3'))
    expect(peer('n3').status).toBe('closed')
  })

  it('remembers at most MAX_VOUCHED_CALLERS vouches, expired ones and then the oldest forgotten first', () => {
    const f = fakeLibp2p()
    let now = 0
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, now: () => now })
    g.vouch('short', 5)
    for (let i = 1; i < MAX_VOUCHED_CALLERS; i++) g.vouch(`p${i}`, 1_000)
    expect(g.stats().vouchedPeers).toBe(MAX_VOUCHED_CALLERS)
    now = 10
    g.vouch('late', 1_000)
    expect(g.stats().vouchedPeers).toBe(MAX_VOUCHED_CALLERS)
    expect(g.isVouched('p1')).toBe(true)
    g.vouch('later', 1_000)
    expect(g.stats().vouchedPeers).toBe(MAX_VOUCHED_CALLERS)
    expect(g.isVouched('p1')).toBe(false)
    expect(g.isVouched('later') && g.isVouched('late') && g.isVouched('p2')).toBe(true)
  })

  it('vouchingCallers vouches for callers under a trusted authority only, and passes refusals through', async () => {
    const vouched: Array<[string, number | undefined]> = []
    const signal = new AbortController().signal
    const req = (peer: string): never => ({ remotePeerId: peer, cell: 'billing', credentials: new Uint8Array(0) }) as never
    const port = vouchingCallers(async (r) => {
      const id = (r as unknown as { remotePeerId: string }).remotePeerId
      if (id === 'forged') throw new Error('TrustError')
      return id === 'anon' ? { peerId: id, authority: '', roles: [] } : { peerId: id, authority: 'aa', roles: ['caller'], expiresMs: 42 }
    }, (peer, until) => { vouched.push([peer, until]) })
    expect((await port(req('good'), { signal })).peerId).toBe('good')
    expect((await port(req('anon'), { signal })).authority).toBe('')
    await expect(port(req('forged'), { signal })).rejects.toThrow('TrustError')
    expect(vouched).toEqual([['good', 42]])
  })

  it('counts the new connection whether or not getConnections lists it yet', () => {
    const f = fakeLibp2p()
    const g = new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { perHost: 2, total: 10 } })
    for (let i = 0; i < 2; i++) f.conns.push(conn('/ip4/10.0.0.1/tcp/1', `x${i}`))
    // Told before libp2p's connection manager stored it: the third is still past the host's 2.
    const third = conn('/ip4/10.0.0.1/tcp/1', 'x2')
    g.admit(third as unknown as Connection)
    expect(third.status).toBe('closed')
  })

  it('refuses limits that are not positive integers', () => {
    const f = fakeLibp2p()
    expect(() => new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { perHost: 0 } })).toThrow(/guest connection limit perHost must be a positive integer/)
    expect(() => new GuestAdmission({ libp2p: f.libp2p, isMember: () => false, limits: { total: 1.5 } })).toThrow(RangeError)
  })
})
