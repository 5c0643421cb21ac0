// Typed calls carry JSON payloads; the synapse underneath carries bytes.
import { PayloadEncodingError } from './errors.ts'
import { utf8Bytes } from '../wire/utf8.ts'

const decoder = new TextDecoder()

export function encodeJson (value: unknown): Uint8Array {
  let text: string | undefined
  try {
    text = JSON.stringify(value ?? null)
  } catch (err) {
    throw new PayloadEncodingError('payload cannot be encoded as JSON', { cause: err })
  }
  return utf8Bytes(text ?? 'null', ASCII_BY_HAND)
}

/** Longest text encoded by hand; past it TextEncoder's per-call cost no longer matters. */
const ASCII_BY_HAND = 512


export function decodeJson (bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) return undefined
  try {
    return JSON.parse(decoder.decode(bytes))
  } catch (err) {
    throw new PayloadEncodingError('payload is not valid JSON', { cause: err })
  }
}
