// A node running on a grant its operator was given (`cell grant host <peer>`, 7 days by default)
// keeps its place in the fleet past that grant's end when a renewed grant is saved in
// <data>/grants/: no restart. On the old code the node read its grants once, at start: the peers
// refused its records once the first grant ended and it dropped out of their views (this test's
// last wait timed out). A grant file from an authority the node does not trust yet is taken the
// same way, and the node trusts that authority from then on (second case).
import { describe, it, expect, afterAll } from 'vitest'
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { loadOrCreatePeerKey } from '../../node-host/keys/peer-key-file.ts'
import { TestFleet } from './test-fleet.ts'
import { CELL, stageVersion } from './versioned.ts'
import { createClient } from '../../node-host/client.ts'
import { Publisher } from '../../node-host/publisher.ts'
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

  it('from an authority the node did not trust yet, is taken too: the node trusts it, joins the views, prepares its releases and calls its cells, no restart', async () => {
    // The node started with no grant and trusts nobody; the operator published a cell before it got
    // one. On the old code the watch said "restart the node to take it" and nothing else happened.
    const authority = await generateAuthority()
    const operator = await fleet.node('operator2', [], { authorityKeys: [authority] })
    const dir = join(fleet.root, 'newcomer')
    await mkdir(join(dir, 'grants'), { recursive: true })
    const newcomerId = peerIdFromPrivateKey(await loadOrCreatePeerKey(join(dir, 'peer.key'))).toString()
    const newcomer = await fleet.node('newcomer', [operator.addresses()[0]], { grantCheckMs: 200 })
    expect([...newcomer.trusted]).toEqual([])
    const client = await createClient({ bootstrap: [operator.addresses()[0]], authorityKey: authority })
    fleet.clients.push(client)
    const cellDir = await stageVersion(fleet.root, 'v1', authority.id)
    const toml = join(cellDir, 'Cell.toml')
    await writeFile(toml, (await readFile(toml, 'utf8')).replace('min_replicas = 2', 'min_replicas = 1').replace('max_replicas = 2', 'max_replicas = 1'))
    const published = await new Publisher(client).publish(cellDir, '1.0.0', authority, { setAuthority: true, waitReplicas: 1, timeoutMs: 60_000 })
    await until(() => newcomer.mesh.libp2p.getPeers().length > 0, () => 'the newcomer connected to the operator', 10_000)
    // Untrusted: the newcomer holds no release of the cell, and the operator's view no record of it.
    expect(newcomer.releases.latest(CELL)).toBeUndefined()
    expect(operator.mesh.view.node(newcomerId)).toBeUndefined()

    const grant = await issueGrant(authority, { subject: newcomerId, roles: ['host', 'caller'], notBeforeMs: Date.now() - 60_000, notAfterMs: Date.now() + 3_600_000 })
    await writeFile(join(dir, 'grants', 'fleet.grant'), encodeGrantToken(grant) + '\n')
    const savedMs = Date.now()
    await until(() => newcomer.trusted.has(authority.id), () => 'the newcomer to trust the authority', 5_000)
    expect(newcomer.grantWatch?.newlyTrusted).toBe(1)
    // It pulled the view at once (the pulls it made at start were refused, and their retries stop
    // after some 5 minutes): the operator's node record and the release came with it.
    await until(() => newcomer.trustCatchUps.accepted > 0, () => 'the newcomer to pull the records it did not trust before', 10_000)
    await until(() => operator.mesh.view.node(newcomerId) !== undefined, () => 'the newcomer in the operator\'s view (its record now carries a trusted host grant)', 15_000)
    await until(() => newcomer.releases.latest(CELL)?.digest === published.digest, () => 'the newcomer to fetch, verify and prepare the release it could not trust before', 15_000)
    console.log(`grant file saved → trusted, in the operator's view and release prepared after ${Date.now() - savedMs} ms`)
    expect(await newcomer.mesh.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })).toBe('v1')
  }, 90_000)
})
