// The edge's libp2p identity as the EDGE_KEY secret holds it: an ed25519 key, protobuf-encoded,
// base64. `node edge-host/keys.ts` prints a new one and its peer id (hand the peer id to
// `cell grant caller <peer id>`, and both outputs to the Worker as secrets).
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { toString } from 'uint8arrays/to-string'
import { parseEdgeKey } from './config.ts'

export async function newEdgeKey (): Promise<{ key: string, peerId: string }> {
  const privateKey = await generateKeyPair('Ed25519')
  return { key: toString(privateKeyToProtobuf(privateKey), 'base64pad'), peerId: peerIdFromPrivateKey(privateKey).toString() }
}

/** The peer id an EDGE_KEY value stands for (EdgeConfigError when it is not one). */
export function edgePeerId (key: string): string {
  return peerIdFromPrivateKey(parseEdgeKey(key)).toString()
}

if (import.meta.main === true) {
  const { key, peerId } = await newEdgeKey()
  process.stdout.write(`EDGE_KEY=${key}\n# peer id ${peerId}: cell grant caller ${peerId}\n`)
}
