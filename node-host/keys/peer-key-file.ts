// The node's persistent libp2p identity: an ed25519 private key in libp2p's protobuf encoding,
// mode 0600. Ed25519 only, because certificate chains derive issuer keys from peer ids.
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { KeyFileExistsError, KeyFileNotFoundError, MalformedKeyFileError } from './errors.ts'
import { readSecretFile, writeSecretFile } from './secret-file.ts'

export async function readPeerKey (path: string, options: { signal?: AbortSignal } = {}): Promise<Ed25519PrivateKey> {
  const bytes = await readSecretFile(path, options)
  let key
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new MalformedKeyFileError(`${path} does not hold a libp2p private key`, { cause: err })
  }
  if (key.type !== 'Ed25519') throw new MalformedKeyFileError(`${path} holds a ${key.type} key; Cell peers use Ed25519`)
  return key
}

/** Reads the node's key, or creates it on first start (safe against two processes racing). */
export async function loadOrCreatePeerKey (path: string, options: { signal?: AbortSignal } = {}): Promise<Ed25519PrivateKey> {
  try {
    return await readPeerKey(path, options)
  } catch (err) {
    if (!(err instanceof KeyFileNotFoundError)) throw err
  }
  const key = await generateKeyPair('Ed25519')
  try {
    await writeSecretFile(path, privateKeyToProtobuf(key), { signal: options.signal })
  } catch (err) {
    // Another process created it between our read and write: use theirs so both agree.
    if (err instanceof KeyFileExistsError) return await readPeerKey(path, options)
    throw err
  }
  return key
}
