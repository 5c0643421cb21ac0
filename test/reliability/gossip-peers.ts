// Peers for the gossip attack tests: real Mesh nodes holding a grant of a test authority, and plain
// libp2p gossipsub peers (an attacker's or a stranger's) over TCP on 127.0.0.1.
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub, type GossipSub, type GossipsubOpts } from '@libp2p/gossipsub'
import { createLibp2p, type Libp2p } from 'libp2p'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { Mesh, type MeshInit } from '../../core/mesh/index.ts'
import { Credentials, encodeCertificate, type AuthorityKey } from '../../core/identity/index.ts'
import { SelfGrants } from '../../node-host/self-grants.ts'
import { makeNodeRecord } from '../../core/fleet/testing.ts'
import { systemClock } from '../../core/ports.ts'

export interface GrantedMeshOptions {
  /** Listen on a TCP port of 127.0.0.1 (default true). */
  listen?: boolean
  /** A full node (a node record with a host grant, gossiped) or, when false, a client (default true). */
  full?: boolean
  bootstrap?: string[]
  /** Anything else of MeshInit. */
  init?: Partial<MeshInit>
}

/** A started Mesh under a fresh key with a grant of `authority`, trusting it, without the DHT. */
export async function grantedMesh (authority: AuthorityKey, options: GrantedMeshOptions = {}): Promise<Mesh> {
  const key = await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: key })
  await new SelfGrants({ keys: [authority], credentials, clock: systemClock }).renew()
  const mesh = await Mesh.create({
    privateKey: key,
    transports: [tcp()],
    listen: options.listen === false ? [] : ['/ip4/127.0.0.1/tcp/0'],
    credentials,
    trusted: new Set([authority.id]),
    dht: false,
    ...(options.full === false ? {} : { localNode: () => ({ ...makeNodeRecord('x'), roles: ['full', 'host'], grants: [encodeCertificate(credentials.grantFor(authority.id)!)] }) }),
    ...(options.bootstrap !== undefined ? { bootstrap: options.bootstrap } : {}),
    ...options.init
  })
  await mesh.start()
  return mesh
}

/** A plain libp2p peer with gossipsub (StrictSign), not started listening; under `privateKey` or a fresh key. */
export async function gossipPeer (options: { privateKey?: Ed25519PrivateKey, pubsub?: Partial<GossipsubOpts> } = {}): Promise<Libp2p<{ pubsub: GossipSub }>> {
  return await createLibp2p({
    privateKey: options.privateKey ?? await generateKeyPair('Ed25519'),
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: true, ...options.pubsub }) }
  })
}
