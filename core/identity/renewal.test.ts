import { beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { generateAuthority } from './authority.ts'
import { issueGrant, issueSession, type Certificate } from './certificate.ts'
import { needsRenewal, renewAtMs, SessionRenewer } from './renewal.ts'
import { FakeClock } from './testing.ts'

const NOW = 1_800_000_000_000
const MIN = 60_000

let hostKey: Ed25519PrivateKey
let host: string
let grant: Certificate

/** Resolves with the next event of `type`, or rejects after a real-time deadline. */
async function next<T> (target: EventTarget, type: string, deadlineMs = 2_000): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no ${type} event within ${deadlineMs} ms`)) }, deadlineMs)
    target.addEventListener(type, (e) => { clearTimeout(timer); resolve((e as CustomEvent<T>).detail) }, { once: true })
  })
}

beforeAll(async () => {
  const authority = await generateAuthority()
  hostKey = await generateKeyPair('Ed25519')
  host = peerIdFromPrivateKey(hostKey).toString()
  grant = await issueGrant(authority, { subject: host, roles: ['host'], notBeforeMs: NOW - MIN, notAfterMs: NOW + 86_400_000 })
})

describe('needsRenewal', () => {
  it('is false before half-life, true from half-life on, true with no cert', () => {
    const cert = { notBeforeMs: NOW, notAfterMs: NOW + 10 * MIN }
    expect(renewAtMs(cert)).toBe(NOW + 5 * MIN)
    expect(needsRenewal(cert, NOW)).toBe(false)
    expect(needsRenewal(cert, NOW + 5 * MIN - 1)).toBe(false)
    expect(needsRenewal(cert, NOW + 5 * MIN)).toBe(true)
    expect(needsRenewal(undefined, NOW)).toBe(true)
  })
})

describe('SessionRenewer', () => {
  function renewer (clock: FakeClock, fail: { count: number } = { count: 0 }, initial?: Certificate): { r: SessionRenewer, calls: number[] } {
    const calls: number[] = []
    const r = new SessionRenewer({
      clock,
      initial,
      retryMs: 10_000,
      renew: async (options) => {
        calls.push(clock.now())
        if (fail.count > 0) { fail.count--; throw new Error('signer unavailable') }
        return await issueSession(hostKey, grant, { subject: host, roles: ['host'], notBeforeMs: clock.now(), notAfterMs: clock.now() + 10 * MIN }, options)
      }
    })
    return { r, calls }
  }

  it('renews exactly at half-life on the injected clock, then again at the new half-life', async () => {
    const clock = new FakeClock(NOW)
    const first = await issueSession(hostKey, grant, { subject: host, roles: ['host'], notBeforeMs: NOW, notAfterMs: NOW + 10 * MIN })
    const { r, calls } = renewer(clock, undefined, first)
    r.start()
    r.start() // idempotent: still one timer
    expect(clock.pending).toBe(1)
    clock.advance(5 * MIN - 1)
    expect(calls).toEqual([])
    const renewed = next<Certificate>(r, 'renewed')
    clock.advance(1)
    const cert = await renewed
    expect(calls).toEqual([NOW + 5 * MIN])
    expect(cert.notBeforeMs).toBe(NOW + 5 * MIN)
    expect(r.current).toBe(cert)
    const again = next<Certificate>(r, 'renewed')
    clock.advance(5 * MIN)
    await again
    expect(calls).toEqual([NOW + 5 * MIN, NOW + 10 * MIN])
    r.stop()
    r.stop()
    expect(clock.pending).toBe(0)
    expect(r.running).toBe(false)
  })

  it('renews immediately when started without a certificate', async () => {
    const clock = new FakeClock(NOW)
    const { r, calls } = renewer(clock)
    const renewed = next<Certificate>(r, 'renewed')
    r.start()
    clock.advance(0)
    await renewed
    expect(calls).toEqual([NOW])
    r.stop()
  })

  it('retries a failed renewal after retryMs and counts the failure', async () => {
    const clock = new FakeClock(NOW)
    const { r, calls } = renewer(clock, { count: 1 })
    const failed = next<Error>(r, 'renewal-failed')
    r.start()
    clock.advance(0)
    expect((await failed).message).toBe('signer unavailable')
    expect(r.failures).toBe(1)
    const renewed = next<Certificate>(r, 'renewed')
    clock.advance(10_000)
    await renewed
    expect(calls).toEqual([NOW, NOW + 10_000])
    r.stop()
  })
})
