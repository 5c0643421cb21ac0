// One in-process full node's mesh for tests that need real libp2p (gossipsub, fleet-sync, kad-dht)
// without a replica set: a fresh key, a host grant from `authority` for an hour, a node record that
// says `full`, listening on loopback TCP. Started; the caller stops it.
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { Mesh, type MeshInit } from '../../core/mesh/index.ts'
import type { LocalNodeState } from '../../core/fleet/index.ts'
import { Credentials, authorityIdOf, encodeCertificate, issueGrant, type AuthorityKey } from '../../core/identity/index.ts'
import { clientTransports } from '../../node-host/client-transports.ts'

export interface HostMesh {
  mesh: Mesh
  privateKey: Ed25519PrivateKey
  credentials: Credentials
  trusted: Set<string>
}

export async function startHostMesh (authority: AuthorityKey, bootstrap: string[], options: { libp2p?: MeshInit['libp2p'] } = {}): Promise<HostMesh> {
  const privateKey = await generateKeyPair('Ed25519') as Ed25519PrivateKey
  const credentials = new Credentials({ peerKey: privateKey })
  const now = Date.now()
  const grant = await issueGrant(authority, { subject: credentials.peerId, roles: ['host'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 })
  credentials.addGrant(grant)
  const trusted = new Set([authorityIdOf(authority.publicKey)])
  const localNode = (): LocalNodeState => ({
    addrs: mesh.libp2p.getMultiaddrs().map(a => a.toString()),
    capacity: { slots: 4, freeSlots: 4, cpuCores: 2, memoryBytes: 2 ** 30, freeMemoryBytes: 2 ** 30 },
    load: { cpuPercent: 0, memoryPercent: 0 },
    roles: ['full'],
    grants: [encodeCertificate(grant)],
    startedMs: now
  })
  const mesh: Mesh = await Mesh.create({
    privateKey, transports: clientTransports(), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, credentials, trusted, heartbeatMs: 1_000, localNode,
    ...(options.libp2p !== undefined ? { libp2p: options.libp2p } : {})
  })
  await mesh.start().catch(async (err: unknown) => { await mesh.stop().catch(() => {}); throw err })
  return { mesh, privateKey, credentials, trusted }
}
