// Real libp2p peers on 127.0.0.1 (TCP + Noise + yamux) with or without a grant, for the attack tests
// on `/cell/fleet-sync/1` and `/cell/artifact/1`.
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { Credentials, generateAuthority, issueGrant, type AuthorityKey, type Role } from '../../core/identity/index.ts'
import { PeerGrantGate } from '../../core/fleet/peer-grant.ts'

export interface GrantPeer {
  node: Libp2p<any>
  key: Ed25519PrivateKey
  credentials: Credentials
  gate: PeerGrantGate
}

/**
 * A peer trusting `trusted` and holding a grant from `grantFrom` (with `roles`), or none. `services`
 * receives the peer's credentials and trust set, so a fleet-sync service can be built around them.
 */
export async function grantPeer (init: {
  trusted: string[]
  grantFrom?: AuthorityKey
  roles?: Role[]
  services?: (parts: { credentials: Credentials, trusted: Set<string>, gate: PeerGrantGate }) => Record<string, (components: any) => unknown>
}): Promise<GrantPeer> {
  const key = await generateKeyPair('Ed25519')
  const credentials = new Credentials({ peerKey: key })
  if (init.grantFrom != null) {
    const now = Date.now()
    credentials.addGrant(await issueGrant(init.grantFrom, { subject: credentials.peerId, roles: init.roles ?? ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 3_600_000 }))
    await credentials.refresh()
  }
  const trusted = new Set(init.trusted)
  const gate = new PeerGrantGate({ trusted, credentials })
  const node = await createLibp2p({
    privateKey: key,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Every test peer dials from 127.0.0.1: lift the per-host inbound rate limit (5/s by default).
    connectionManager: { inboundConnectionThreshold: 1000 },
    services: init.services?.({ credentials, trusted, gate }) ?? {}
  })
  return { node, key, credentials, gate }
}

export async function authority (): Promise<AuthorityKey> {
  return await generateAuthority()
}

/** Waits for `promise` but fails instead of hanging past `ms`. */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
