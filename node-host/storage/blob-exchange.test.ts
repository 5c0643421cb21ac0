// `/cell/snapshot-blob/1` between real libp2p peers (TCP + Noise + yamux on 127.0.0.1): only a host
// grant for the cell from its authority is served; a stranger, a caller-only peer, a rogue
// authority's host and a host scoped to another cell are refused by name; a blob that does not
// hash right (forged or truncated by a malicious holder) is refused by digest, never lands in the
// layout, and is fetched from the honest holder instead.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TruncatedChainError, UnknownAuthorityError, WrongCellScopeError, WrongRoleError, type AuthorityKey } from '../../core/identity/index.ts'
import { authority, grantPeer, within, type GrantPeer } from '../../test/security/grant-peers.ts'
import {
  SNAPSHOT_BLOB_PROTOCOL, SnapshotBlobFetchError, SnapshotBlobNotFoundError, SnapshotBlobUnavailableError,
  ProviderPenalties, decodeSnapshotBlobRequest, fetchSnapshotBlob, fetchSnapshotBlobs, serveSnapshotBlobs, type SnapshotBlobServer
} from './blob-exchange.ts'
import { SnapshotCorruptError } from './errors.ts'
import { OciLayout } from './oci-layout.ts'
import { layoutDirFor } from './snapshots.ts'

const CLAIM = 'ledger/0'
const peers: GrantPeer[] = []
let root: string
let fleet: AuthorityKey
let rogue: AuthorityKey
let honest: GrantPeer
let server: SnapshotBlobServer
let blob: Uint8Array
let digest: string
let small: string

afterAll(async () => {
  await Promise.all(peers.map(async p => await p.node.stop()))
  await rm(root, { recursive: true, force: true })
})

async function peer (grantFrom?: AuthorityKey, roles?: Array<'host' | 'caller'>, cells?: string[]): Promise<GrantPeer> {
  const p = await grantPeer({ trusted: [fleet.id], grantFrom, roles })
  if (cells !== undefined && grantFrom !== undefined) {
    // Re-issue the grant scoped to `cells`.
    const { issueGrant } = await import('../../core/identity/index.ts')
    const now = Date.now()
    p.credentials.addGrant(await issueGrant(grantFrom, { subject: p.credentials.peerId, roles: roles ?? ['host'], cells, notBeforeMs: now - 60_000, notAfterMs: now + 3_600_001 }))
    await p.credentials.refresh()
  }
  peers.push(p)
  return p
}

async function chainOf (p: GrantPeer): Promise<Uint8Array> {
  const a = p.credentials.authorities()[0]
  return a === undefined ? new Uint8Array(0) : await p.credentials.chainFor(a)
}

async function freshLayout (name: string): Promise<OciLayout> {
  return OciLayout.open(join(root, name, 'snapshots', 'ledger', '0'))
}

async function tmpFiles (layout: OciLayout): Promise<string[]> {
  return (await readdir(join(layout.dir, 'blobs'))).filter(n => n.startsWith('.tmp-'))
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'cell-blob-exchange-'))
  fleet = await authority()
  rogue = await authority()
  honest = await peer(fleet, ['host'])
  // The honest holder's layout: one 3 MiB blob (many stream chunks) and a small one.
  const layout = OciLayout.open(layoutDirFor(join(root, 'honest'), { cell: 'ledger', ordinal: 0 }))
  blob = randomBytes(3 * 1024 * 1024)
  digest = (await layout.putBlob(blob, 'application/octet-stream')).digest
  small = (await layout.putBlob(new TextEncoder().encode('{"hello":1}'), 'application/json')).digest
  server = await serveSnapshotBlobs(honest.node, { view: { claimants: cell => cell === 'ledger' ? [fleet.id] : [] }, trusted: new Set([fleet.id, rogue.id]), dataDir: join(root, 'honest') })
})

describe('/cell/snapshot-blob/1', () => {
  it('serves a host of the cell: the blob lands in the layout, verified, no temp file left', async () => {
    const host = await peer(fleet, ['host'])
    await host.node.dial(honest.node.getMultiaddrs()[0])
    const layout = await freshLayout('host')
    const got = await within(fetchSnapshotBlob(host.node, honest.node.peerId, { claimId: CLAIM, digest, layout, chain: await chainOf(host) }), 20_000, 'fetch')
    expect(got.bytes).toBe(blob.length)
    await layout.verifyBlob(digest, blob.length)
    expect(await tmpFiles(layout)).toEqual([])
    expect(server.stats.served).toBeGreaterThanOrEqual(1)
    // A blob the holder does not have is "not found", by name.
    await expect(fetchSnapshotBlob(host.node, honest.node.peerId, { claimId: CLAIM, digest: 'sha256:' + '0'.repeat(64), layout, chain: await chainOf(host) }))
      .rejects.toBeInstanceOf(SnapshotBlobNotFoundError)
    // A holder announcing more than the bound is refused before a byte is written.
    const bounded = await freshLayout('bounded')
    await expect(fetchSnapshotBlob(host.node, honest.node.peerId, { claimId: CLAIM, digest, layout: bounded, chain: await chainOf(host), maxBytes: 1024 }))
      .rejects.toBeInstanceOf(SnapshotBlobFetchError)
    expect(await bounded.hasBlob(digest)).toBe(false)
  })

  it('refuses a stranger, a caller-only peer, a rogue authority\'s host and a host of another cell, by name', async () => {
    const cases: Array<[GrantPeer, new (...args: never[]) => Error]> = [
      [await peer(), TruncatedChainError],
      [await peer(fleet, ['caller']), WrongRoleError],
      [await peer(rogue, ['host']), UnknownAuthorityError],
      [await peer(fleet, ['host'], ['billing']), WrongCellScopeError]
    ]
    const before = server.stats.refused
    for (const [p, error] of cases) {
      await p.node.dial(honest.node.getMultiaddrs()[0])
      const layout = await freshLayout(`refused-${peers.indexOf(p)}`)
      const err = await fetchSnapshotBlob(p.node, honest.node.peerId, { claimId: CLAIM, digest: small, layout, chain: await chainOf(p) }).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(error)
      expect(await layout.hasBlob(small)).toBe(false)
    }
    expect(server.stats.refused).toBe(before + cases.length)
  })

  it('refuses forged and truncated bytes by digest and fetches the blob from the honest holder', async () => {
    // Malicious holders: they answer "found" with the right size and then wrong bytes, or too few.
    const forger = await peer(fleet, ['host'])
    const truncator = await peer(fleet, ['host'])
    for (const [evil, mode] of [[forger, 'forge'], [truncator, 'truncate']] as const) {
      await evil.node.handle(SNAPSHOT_BLOB_PROTOCOL, async (stream) => {
        const parts: Uint8Array[] = []
        for await (const c of stream) parts.push(c instanceof Uint8Array ? c : c.subarray())
        decodeSnapshotBlobRequest(Buffer.concat(parts))
        const header = new Uint8Array(9)
        new DataView(header.buffer).setBigUint64(1, BigInt(blob.length))
        stream.send(header)
        const body = mode === 'forge' ? new Uint8Array(blob) : blob.subarray(0, blob.length - 10)
        if (mode === 'forge') body[1000] ^= 1
        for (let at = 0; at < body.length; at += 64 * 1024) if (!stream.send(body.subarray(at, at + 64 * 1024))) await stream.onDrain()
        await stream.close()
      })
    }
    const host = await peer(fleet, ['host'])
    for (const p of [forger, truncator, honest]) await host.node.dial(p.node.getMultiaddrs()[0])
    const direct = await freshLayout('direct')
    for (const evil of [forger, truncator]) {
      await expect(fetchSnapshotBlob(host.node, evil.node.peerId, { claimId: CLAIM, digest, layout: direct, chain: await chainOf(host) })).rejects.toBeInstanceOf(SnapshotCorruptError)
      expect(await direct.hasBlob(digest)).toBe(false)
    }
    expect(await tmpFiles(direct)).toEqual([])

    const layout = await freshLayout('resumed')
    const penalties = new ProviderPenalties()
    const result = await within(fetchSnapshotBlobs(host.node, {
      claimId: CLAIM, digests: [digest, small], layout, chain: await chainOf(host),
      holders: [forger, truncator, honest].map(p => p.node.peerId.toString()), useDht: false, penalties
    }), 30_000, 'fetch from holders')
    // Each malicious holder is caught once: after that it is tried last, so the second blob comes from the honest one at once.
    expect(result.corrupt.map(c => c.peer)).toEqual([forger, truncator].map(p => p.node.peerId.toString()))
    expect(penalties.has(forger.node.peerId.toString())).toBe(true)
    expect(result.fetched).toBe(2)
    await layout.verifyBlob(digest, blob.length)
    await layout.verifyBlob(small)
    // Everything present: nothing is fetched again.
    expect(await fetchSnapshotBlobs(host.node, { claimId: CLAIM, digests: [digest, small], layout, chain: await chainOf(host), holders: [], useDht: false })).toMatchObject({ fetched: 0, present: 2 })
    // Only malicious holders: the blob is unavailable, by name, and nothing is written.
    const none = await freshLayout('none')
    await expect(fetchSnapshotBlobs(host.node, { claimId: CLAIM, digests: [digest], layout: none, chain: await chainOf(host), holders: [forger.node.peerId.toString()], useDht: false }))
      .rejects.toBeInstanceOf(SnapshotBlobUnavailableError)
    expect(await none.hasBlob(digest)).toBe(false)
  })
})
