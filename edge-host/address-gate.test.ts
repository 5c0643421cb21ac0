import { describe, it, expect } from 'vitest'
import { denyDial, hostOf, isPrivateHost } from './address-gate.ts'

describe('edge address gate', () => {
  it('knows private hosts', () => {
    for (const h of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.1.1', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', 'localhost', 'a.localhost']) expect(isPrivateHost(h), h).toBe(true)
    for (const h of ['8.8.8.8', '172.32.0.1', '100.128.0.1', '2001:db8::1', 'example.com']) expect(isPrivateHost(h), h).toBe(false)
  })

  it('dials public hosts, and private ones only when ALLOW_HOSTS lists them', () => {
    const allow = new Set(['127.0.0.1'])
    expect(hostOf('/ip4/127.0.0.1/tcp/1/ws/p2p/x')).toBe('127.0.0.1')
    expect(denyDial('/ip4/127.0.0.1/tcp/1/ws', allow)).toBe(false)
    expect(denyDial('/ip4/10.0.0.1/tcp/1/ws', allow)).toBe(true)
    expect(denyDial('/dns4/localhost/tcp/1/ws', allow)).toBe(true)
    expect(denyDial('/dns4/fleet.example.com/tcp/443/tls/ws', allow)).toBe(false)
    expect(denyDial('/ip4/127.0.0.1/tcp/1/ws', new Set())).toBe(true)
    expect(denyDial('/p2p-circuit', allow)).toBe(true)
  })
})
