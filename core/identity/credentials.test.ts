import { beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { generateAuthority, type AuthorityKey } from './authority.ts'
import { issueGrant, type Certificate } from './certificate.ts'
import { decodeChain, verifyChain } from './chain.ts'
import { Credentials } from './credentials.ts'
import { CertificateExpiredError, NoGrantError, WrongSubjectError } from './errors.ts'
import { FakeClock } from './testing.ts'

const NOW = 1_800_000_000_000
const MIN = 60_000
const DAY = 86_400_000

let authority: AuthorityKey
let nodeKey: Ed25519PrivateKey
let node: string
let grant: Certificate

beforeAll(async () => {
  authority = await generateAuthority()
  nodeKey = await generateKeyPair('Ed25519')
  node = peerIdFromPrivateKey(nodeKey).toString()
  grant = await issueGrant(authority, { subject: node, roles: ['host', 'caller'], notBeforeMs: NOW - DAY, notAfterMs: NOW + DAY })
})

describe('Credentials', () => {
  it('presents [grant, session] that verifies for this node, cached until half-life, renewed after', async () => {
    const clock = new FakeClock(NOW)
    const creds = new Credentials({ peerKey: nodeKey, clock, sessionLifetimeMs: 10 * MIN })
    creds.addGrant(grant)
    expect(creds.authorities()).toEqual([authority.id])
    const chain = await creds.chainFor(authority.id)
    const trusted = new Set([authority.id])
    const v = await verifyChain(chain, { remotePeerId: node, trusted, requiredRole: 'host', nowMs: clock.now() })
    expect(v.notAfterMs).toBe(NOW + 10 * MIN)
    clock.advance(5 * MIN - 1)
    expect(await creds.chainFor(authority.id)).toBe(chain)
    clock.advance(1)
    const [a, b] = await Promise.all([creds.chainFor(authority.id), creds.chainFor(authority.id)])
    expect(a).not.toBe(chain)
    expect(b).toBe(a) // concurrent callers share one renewal
    const links = decodeChain(a)
    expect(links[1].notBeforeMs).toBe(NOW + 5 * MIN)
    await verifyChain(a, { remotePeerId: node, trusted, requiredRole: 'caller', nowMs: clock.now() })
  })

  it('can present the bare grant', async () => {
    const creds = new Credentials({ peerKey: nodeKey, clock: new FakeClock(NOW), sessions: false })
    creds.addGrant(grant)
    expect(decodeChain(await creds.chainFor(authority.id))).toEqual([grant])
  })

  it('NoGrantError without a grant, CertificateExpiredError once it expired', async () => {
    const clock = new FakeClock(NOW)
    const creds = new Credentials({ peerKey: nodeKey, clock })
    await expect(creds.chainFor(authority.id)).rejects.toThrow(NoGrantError)
    creds.addGrant(grant)
    clock.advance(DAY)
    await expect(creds.chainFor(authority.id)).rejects.toThrow(CertificateExpiredError)
  })

  it('refuses a grant for another peer and keeps the longer of two grants', async () => {
    const other = await generateKeyPair('Ed25519')
    const creds = new Credentials({ peerKey: other, clock: new FakeClock(NOW) })
    expect(() => { creds.addGrant(grant) }).toThrow(WrongSubjectError)
    const mine = new Credentials({ peerKey: nodeKey, clock: new FakeClock(NOW) })
    const shorter = await issueGrant(authority, { subject: node, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + MIN })
    mine.addGrant(grant)
    mine.addGrant(shorter)
    expect(mine.grantFor(authority.id)).toBe(grant)
  })

  it('holds at most maxAuthorities grants, dropping the one that expires first', async () => {
    const creds = new Credentials({ peerKey: nodeKey, clock: new FakeClock(NOW), maxAuthorities: 2 })
    const ids: string[] = []
    for (const lifetime of [3 * DAY, DAY, 2 * DAY]) {
      const a = await generateAuthority()
      ids.push(a.id)
      creds.addGrant(await issueGrant(a, { subject: node, roles: ['caller'], notBeforeMs: NOW, notAfterMs: NOW + lifetime }))
    }
    expect(creds.authorities().sort()).toEqual([ids[0], ids[2]].sort())
  })

  it('currentChain is synchronous: throws until a session exists, renews in the background past half-life', async () => {
    const clock = new FakeClock(NOW)
    const creds = new Credentials({ peerKey: nodeKey, clock, sessionLifetimeMs: 10 * MIN })
    expect(() => creds.currentChain(authority.id)).toThrow(NoGrantError)
    creds.addGrant(grant)
    expect(() => creds.currentChain(authority.id)).toThrow(CertificateExpiredError)
    await creds.refresh()
    const first = creds.currentChain(authority.id)
    clock.advance(5 * MIN)
    // Still the valid current chain, while a renewal starts behind it.
    expect(creds.currentChain(authority.id)).toBe(first)
    const renewed = await creds.chainFor(authority.id)
    expect(renewed).not.toBe(first)
    expect(creds.currentChain(authority.id)).toBe(renewed)
    expect(decodeChain(renewed)[1].notBeforeMs).toBe(NOW + 5 * MIN)
  })

  it('start() renews proactively at each half-life on the injected clock; stop() cancels', async () => {
    const clock = new FakeClock(NOW)
    const creds = new Credentials({ peerKey: nodeKey, clock, sessionLifetimeMs: 10 * MIN })
    creds.addGrant(grant)
    creds.start()
    creds.start()
    clock.advance(0)
    await creds.chainFor(authority.id) // joins the in-flight issuance started by the timer
    const first = creds.currentChain(authority.id)
    expect(decodeChain(first)[1].notBeforeMs).toBe(NOW)
    expect(clock.pending).toBe(1)
    clock.advance(5 * MIN)
    const second = await creds.chainFor(authority.id)
    expect(second).not.toBe(first)
    expect(decodeChain(second)[1].notBeforeMs).toBe(NOW + 5 * MIN)
    creds.stop()
    expect(clock.pending).toBe(0)
    expect(creds.renewalFailures).toBe(0)
  })
  it('a renewed grant leaves the current chain presentable until a session under it is signed', async () => {
    const clock = new FakeClock(NOW)
    const creds = new Credentials({ peerKey: nodeKey, clock, sessionLifetimeMs: 10 * MIN })
    creds.addGrant(grant)
    await creds.refresh()
    const before = creds.currentChain(authority.id)
    const renewed = await issueGrant(authority, { subject: node, roles: ['host', 'caller'], notBeforeMs: NOW - MIN, notAfterMs: NOW + 2 * DAY })
    creds.addGrant(renewed)
    // No gap: the old chain (still valid) is presented while the new session is being signed.
    expect(creds.currentChain(authority.id)).toBe(before)
    const after = await creds.chainFor(authority.id)
    expect(decodeChain(after)[0].notAfterMs).toBe(NOW + 2 * DAY)
    expect(creds.currentChain(authority.id)).toBe(after)
  })
})
