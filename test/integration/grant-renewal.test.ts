// A node running on a grant its operator was given (`cell grant host <peer>`, 7 days by default)
// keeps its place in the fleet past that grant's end when a renewed grant is saved in
// <data>/grants/: no restart. On the old code the node read its grants once, at start: the peers
// refused its records once the first grant ended and it dropped out of their views (this test's
// last wait timed out).
import { describe, it, expect, afterAll } from 'vitest'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { loadOrCreatePeerKey } from '../../node-host/keys/peer-key-file.ts'
import { TestFleet } from './test-fleet.ts'
import { until } from './fleet-links.ts'

const GRANT_MS = 4_000

describe('a grant renewed while the node runs', () => {
  const fleet = new TestFleet()
  afterAll(async () => { await fleet.stop() })

  it('is taken from <data>/grants/ and the node stays in its peers\' views past the first grant\'s end', async () => {
    const authority = await generateAuthority()
    fleet.root = await mkdtemp(join(tmpdir(), 'cell-grant-renewal-'))
    // The operator's node holds the authority key (it grants itself); the other was given a grant.
    const operator = await fleet.node('operator', [], { authorityKeys: [authority] })
    const dir = join(fleet.root, 'given')
    await mkdir(join(dir, 'grants'), { recursive: true })
    const givenId = peerIdFromPrivateKey(await loadOrCreatePeerKey(join(dir, 'peer.key'))).toString()
    const start = Date.now()
    const first = await issueGrant(authority, { subject: givenId, roles: ['host'], notBeforeMs: start - 60_000, notAfterMs: start + GRANT_MS })
    const given = await fleet.node('given', [operator.addresses()[0]], { grants: [encodeGrantToken(first)], grantCheckMs: 200 })
    const seen = (): number => operator.mesh.view.nodes().find(n => n.nodeId === givenId)?.sentMs ?? 0
    await until(() => seen() > 0, () => 'the given node in the operator\'s view', 15_000)
    expect(given.grantWatch?.expiries()).toEqual([{ authority: authority.id, notAfterMs: first.notAfterMs, selfIssued: false }])

    // The operator saves a renewal in the node's grants directory.
    const renewal = await issueGrant(authority, { subject: givenId, roles: ['host'], notBeforeMs: Date.now() - 60_000, notAfterMs: Date.now() + 3_600_000 })
    await writeFile(join(dir, 'grants', 'renewed.grant'), encodeGrantToken(renewal) + '\n')
    await until(() => given.grantWatch?.renewed === 1, () => 'the node to take the renewal', 5_000)
    expect(given.grantWatch?.expiries()[0].notAfterMs).toBe(renewal.notAfterMs)

    // Past the first grant's end, the operator still accepts fresh records from it.
    await until(() => seen() > first.notAfterMs + 3_000, () => 'a record from the given node sent 3 s after its first grant ended', first.notAfterMs + 15_000 - Date.now())
  }, 60_000)
})
