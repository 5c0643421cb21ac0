import { describe, it, expect } from 'vitest'
import { X509Certificate, createHash } from 'node:crypto'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { base64url } from 'multiformats/bases/base64'
import {
  generateCertificate, advancePair, defaultRotation, rotationDueMs, loadPair, savePair, reportedHashes,
  CertificateLifetimeError, MAX_CERT_LIFETIME_MS, DEFAULT_CERT_LIFETIME_MS
} from './certificates.ts'

const DAY = 24 * 3600_000

describe('WebTransport certificates', () => {
  it('makes an ECDSA P-256 certificate valid under 14 days whose certhash is the sha-256 multihash of its DER', async () => {
    const now = Date.now()
    const c = await generateCertificate(now)
    const x = new X509Certificate(c.cert)
    expect(x.publicKey.asymmetricKeyType).toBe('ec')
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    const validMs = Date.parse(x.validTo) - Date.parse(x.validFrom)
    expect(validMs).toBeLessThan(14 * DAY)
    expect(validMs).toBe(DEFAULT_CERT_LIFETIME_MS)
    expect(Date.parse(x.validFrom)).toBeLessThanOrEqual(now)
    const mh = base64url.decode(c.hash)
    expect([...mh.subarray(0, 2)]).toEqual([0x12, 0x20])
    expect(Buffer.from(mh.subarray(2)).equals(createHash('sha256').update(x.raw).digest())).toBe(true)
    expect(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(c.key))).toBe(true)
  })

  it('refuses a lifetime Chromium would refuse', async () => {
    await expect(generateCertificate(Date.now(), 14 * DAY)).rejects.toThrow(CertificateLifetimeError)
    await expect(generateCertificate(Date.now(), MAX_CERT_LIFETIME_MS + 1)).rejects.toThrow(CertificateLifetimeError)
    await expect(generateCertificate(Date.now(), 1000)).rejects.toThrow(CertificateLifetimeError)
  })

  it('rotates: the next certificate takes over at its due time, valid then, and a fresh next follows', async () => {
    const policy = defaultRotation(60_000)
    const t0 = Date.now()
    const p0 = await advancePair(undefined, t0, policy)
    expect(p0.current.hash).not.toBe(p0.next.hash)
    expect(await advancePair(p0, t0 + 1000, policy)).toBe(p0) // nothing due
    const due = rotationDueMs(p0, policy)
    const p1 = await advancePair(p0, due, policy)
    expect(p1.current).toEqual(p0.next) // the advertised next one is what is served now
    expect(p1.current.notBeforeMs).toBeLessThanOrEqual(due)
    expect(p1.current.notAfterMs).toBeGreaterThan(due + policy.renewBeforeMs)
    expect(p1.next.hash).not.toBe(p0.current.hash)
    // A node that slept through both certificates' time starts over rather than serving an expired one.
    const late = await advancePair(p0, p0.next.notAfterMs + 1, policy)
    expect([late.current.hash, late.next.hash]).not.toContain(p0.next.hash)
    expect(late.current.notAfterMs).toBeGreaterThan(p0.next.notAfterMs)
  })

  it('reports the retired certificate in Noise until the next rotation, so an address from before a rotation still dials', async () => {
    const policy = defaultRotation(60_000)
    const t0 = Date.now()
    const p0 = await advancePair(undefined, t0, policy)
    expect(p0.retiredHash).toBeUndefined()
    expect(reportedHashes(p0)).toEqual([p0.current.hash, p0.next.hash])
    const p1 = await advancePair(p0, rotationDueMs(p0, policy), policy)
    // An address taken before this rotation names p0.current and p0.next: both are reported.
    expect(p1.retiredHash).toBe(p0.current.hash)
    expect(reportedHashes(p1)).toEqual([p0.next.hash, p1.next.hash, p0.current.hash])
    const p2 = await advancePair(p1, rotationDueMs(p1, policy), policy)
    expect(reportedHashes(p2)).toEqual([p1.next.hash, p2.next.hash, p0.next.hash])
    expect(reportedHashes(p2)).not.toContain(p0.current.hash) // served two rotations ago: gone
    // Starting over (slept through both) retires nothing that an address could still reach.
    expect((await advancePair(p1, p1.next.notAfterMs + 1, policy)).retiredHash).toBeUndefined()
    // It survives a restart with the pair; a malformed one in the file is dropped.
    const dir = await mkdtemp(join(tmpdir(), 'cell-wt-retired-'))
    try {
      await savePair(dir, p1)
      expect(await loadPair(dir)).toEqual(p1)
      await writeFile(join(dir, 'webtransport-certs.json'), JSON.stringify({ ...p1, retiredHash: 'not a hash; ' + 'x'.repeat(200) }))
      expect(await loadPair(dir)).toEqual({ current: p1.current, next: p1.next })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('keeps the pair in the data directory, owner-only, and ignores a damaged file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cell-wt-certs-'))
    try {
      expect(await loadPair(dir)).toBeUndefined()
      const pair = await advancePair(undefined, Date.now(), defaultRotation())
      await savePair(join(dir, 'wt'), pair)
      expect(await loadPair(join(dir, 'wt'))).toEqual(pair)
      expect((await stat(join(dir, 'wt', 'webtransport-certs.json'))).mode & 0o777).toBe(0o600)
      await writeFile(join(dir, 'wt', 'webtransport-certs.json'), '{"current":{"cert":1}}')
      expect(await loadPair(join(dir, 'wt'))).toBeUndefined()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
