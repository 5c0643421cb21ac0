// Attack: the records a node keeps across restarts (<data>/fleet-intent.json) are edited on disk:
// a release signed by an authority the node does not trust, a trusted release with one byte of its
// signature flipped, bytes that are no record at all, a desired record whose seq is below the kept
// floor (a replay), a desired record far in the future, and older releases (kept for falling back
// after a halt) signed by the untrusted authority or tampered with. On start every one of them goes through
// the fleet view's verification again: only the genuine release comes back, the rest are dropped
// (untrusted, bad signature, stale, future) and the node starts anyway.
// On the code before the intent store nothing was restored at all (the genuine release was lost too,
// the first expectation fails); a loader that trusted its own file would restore the forged ones
// (the expectations on the rival and the tampered record fail).
import { describe, it, expect, afterAll } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf, signRelease, signDesiredVersion, encodeRelease, encodeDesiredVersion } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64')

describe('a tampered fleet-intent file', () => {
  let root = ''
  let node: FullNode | undefined
  afterAll(async () => {
    await node?.stop()
    if (root !== '') await rm(root, { recursive: true, force: true })
  })

  it('restores only records that verify against the trusted authorities, and starts', async () => {
    root = await mkdtemp(join(tmpdir(), 'cell-intent-attack-'))
    const [owner, rival] = [await generateAuthority(), await generateAuthority()]
    const [idOwner, idRival] = [authorityIdOf(owner.publicKey), authorityIdOf(rival.publicKey)]
    const now = Date.now()
    const genuine = encodeRelease(await signRelease({ cell: 'billing', version: '1.0.0', digest: 'a'.repeat(64), seq: now - 5_000, createdMs: now - 5_000 }, owner))
    const untrusted = encodeRelease(await signRelease({ cell: 'ledger', version: '6.6.6', digest: 'b'.repeat(64), seq: now - 4_000, createdMs: now - 4_000 }, rival))
    const tampered = encodeRelease(await signRelease({ cell: 'versioned', version: '1.0.0', digest: 'c'.repeat(64), seq: now - 3_000, createdMs: now - 3_000 }, owner))
    tampered[tampered.length - 1] ^= 1
    const replayed = encodeDesiredVersion(await signDesiredVersion({ cell: 'billing', version: '0.9.0', digest: 'd'.repeat(64), seq: now - 9_000, reason: 'old', createdMs: now - 9_000 }, owner))
    const future = encodeDesiredVersion(await signDesiredVersion({ cell: 'sleepy', version: '9.9.9', digest: 'e'.repeat(64), seq: Number.MAX_SAFE_INTEGER, reason: 'lock', createdMs: now }, owner))
    const dataDir = join(root, 'n1')
    await mkdir(dataDir, { recursive: true })
    await writeFile(join(dataDir, 'fleet-intent.json'), JSON.stringify({
      version: 1,
      floors: { release: [], desired: [[`${idOwner} billing`, now - 1_000]] },
      records: {
        release: [[`${idOwner} billing`, b64(genuine)], [`${idOwner} ledger`, b64(untrusted)], [`${idOwner} versioned`, b64(tampered)], [`${idOwner} junk`, b64(new Uint8Array([1, 2, 3]))]],
        desired: [[`${idOwner} billing`, b64(replayed)], [`${idOwner} sleepy`, b64(future)]],
        // Older releases go to the release store directly: verified against the trusted authorities too.
        prepared: [[`${idRival} ledger ${'b'.repeat(64)}`, b64(untrusted)], [`${idOwner} versioned ${'c'.repeat(64)}`, b64(tampered)]]
      },
      halts: [],
      listen: {},
      peers: []
    }))

    node = await FullNode.create({ dataDir, authorityKeys: [owner], heartbeatMs: 500, tickMs: 250, listen: { webrtc: false } })
    await node.start()
    const view = node.mesh.view
    expect(view.releaseOf(idOwner, 'billing')?.version).toBe('1.0.0')
    expect(view.releaseOf(idRival, 'ledger')).toBeUndefined()
    expect(view.claimants('ledger')).toEqual([])
    expect(view.releaseOf(idOwner, 'versioned')).toBeUndefined()
    expect(view.desiredOf(idOwner, 'billing')).toBeUndefined()
    expect(view.desiredOf(idOwner, 'sleepy')).toBeUndefined()
    const { accepted, dropped } = view.stats()
    expect(accepted.release).toBe(1)
    expect(accepted.desired).toBe(0)
    expect(dropped['bad-signature']).toBeGreaterThanOrEqual(3)
    expect(dropped.stale).toBe(1)
    expect(dropped.future).toBe(1)
    // The older releases that failed verification are forgotten, not kept for the next start (the
    // genuine release is kept among the prepared ones too).
    await node.stop()
    node = undefined
    const kept = JSON.parse(await readFile(join(dataDir, 'fleet-intent.json'), 'utf8')) as { records: Record<string, Array<[string, string]>> }
    expect(kept.records.prepared.map(([k]) => k)).toEqual([`${idOwner} billing ${'a'.repeat(64)}`])
    expect(kept.records.release.map(([k]) => k)).toEqual([`${idOwner} billing`])
  }, 60_000)
})
