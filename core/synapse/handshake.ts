import { encodeFields, FieldReader, MalformedFrameError } from '../wire/index.ts'

// Payloads of the control frames. Each is a fixed field sequence (see core/wire/fields.ts);
// trailing fields are optional so a later version can append without breaking this one.

export const SYNAPSE_PROTOCOL = '/cell/synapse/1'
export const SYNAPSE_VERSION = 1
const MAX_CELL_NAME_BYTES = 256
/** A release is named by its artifact digest (64 hex); the bound leaves room and refuses more. */
const MAX_RELEASE_BYTES = 128
const MAX_CREDENTIAL_BYTES = 64 * 1024
const MAX_ERROR_NAME_BYTES = 512
const MAX_ERROR_MESSAGE_BYTES = 16 * 1024

export interface Hello {
  version: number
  cell: string
  credentials: Uint8Array
  maxFrameBytes: number
  /**
   * The release (artifact digest) the caller chose for this channel's calls: the canary split is
   * the caller's, so a node running two releases of the cell serves each channel from its own.
   * Opaque to the server beyond equality with its replicas' digests; absent: any release.
   */
  release?: string
}

export function encodeHello (h: Hello): Uint8Array {
  return encodeFields(h.release === undefined ? [h.version, h.cell, h.credentials, h.maxFrameBytes] : [h.version, h.cell, h.credentials, h.maxFrameBytes, h.release])
}

export function decodeHello (payload: Uint8Array): Hello {
  const r = new FieldReader(payload)
  const version = r.varint()
  const cell = r.string(MAX_CELL_NAME_BYTES)
  const credentials = r.bytes(MAX_CREDENTIAL_BYTES).slice()
  const maxFrameBytes = r.optionalVarint(0)
  const release = r.remaining > 0 ? r.string(MAX_RELEASE_BYTES) : undefined
  return release === undefined || release === '' ? { version, cell, credentials, maxFrameBytes } : { version, cell, credentials, maxFrameBytes, release }
}

export interface HelloAck {
  version: number
  credentials: Uint8Array
  maxFrameBytes: number
}

export function encodeHelloAck (h: HelloAck): Uint8Array {
  return encodeFields([h.version, h.credentials, h.maxFrameBytes])
}

export function decodeHelloAck (payload: Uint8Array): HelloAck {
  const r = new FieldReader(payload)
  const version = r.varint()
  const credentials = r.bytes(MAX_CREDENTIAL_BYTES).slice()
  const maxFrameBytes = r.optionalVarint(0)
  return { version, credentials, maxFrameBytes }
}

/** REJECT and ERROR payloads. */
export function encodeErrorPayload (name: string, message: string): Uint8Array {
  return encodeFields([name, message])
}

export function decodeErrorPayload (payload: Uint8Array): { name: string, message: string } {
  const r = new FieldReader(payload)
  return { name: r.string(MAX_ERROR_NAME_BYTES), message: r.string(MAX_ERROR_MESSAGE_BYTES) }
}

export function encodeCredit (count: number): Uint8Array {
  return encodeFields([count])
}

export function decodeCredit (payload: Uint8Array): number {
  return new FieldReader(payload).varint()
}

/**
 * GOAWAY's payload: how many CALL and STREAM_OPEN frames the server read on the stream (modulo
 * 2^32). The client's calls sent after that many were never read: nothing ran. An empty payload
 * (a server that counts nothing) says nothing about what ran.
 */
export function encodeGoAway (callsRead: number): Uint8Array {
  return encodeFields([callsRead >>> 0])
}

export function decodeGoAway (payload: Uint8Array): number | undefined {
  if (payload.byteLength === 0) return undefined
  const read = new FieldReader(payload).varint()
  if (read > 0xffff_ffff) throw new MalformedFrameError(`GOAWAY count ${read} above 2^32 - 1`)
  return read
}
