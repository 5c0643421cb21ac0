// Synapse frame layout (all varints are unsigned LEB128, ≤ 32 bits):
//
//   varint  bodyBytes          length of everything below; checked against maxFrameBytes first,
//                              so a decoder never buffers more than the limit for one frame
//   u8      type               FrameType
//   u8      flags              which optional header fields follow (FrameFlag)
//   varint  id                 call / stream id; 0 for channel-level frames (HELLO, MESSAGE…)
//   [varint method]            FLAG_METHOD: method id interned per channel
//   [varint len, utf8 name]    FLAG_METHOD_NAME: method name; binds `method` → name when id ≠ 0
//   [varint timeoutMs]         FLAG_TIMEOUT: relative deadline (relative so peers' clocks may differ)
//   [varint len, traceparent]  FLAG_TRACE: W3C traceparent
//                              FLAG_TRACE_REPEAT (no bytes): the traceparent of the last frame on
//                              this stream that had one; a caller's unsampled traceparent repeats
//                              call after call, so it crosses the wire once, not 56 bytes per call
//   payload                    the rest of the body, opaque bytes
//
// Length-first means a streaming decoder needs only the prefix to know how much to wait for,
// and the common case (whole frames inside one chunk) is parsed with subarray and no copy.

export const FrameType = {
  HELLO: 1,
  HELLO_ACK: 2,
  REJECT: 3,
  CALL: 4,
  RESULT: 5,
  ERROR: 6,
  CANCEL: 7,
  MESSAGE: 8,
  STREAM_OPEN: 9,
  STREAM_DATA: 10,
  STREAM_END: 11,
  CREDIT: 12,
  GOAWAY: 13
} as const
export type FrameType = typeof FrameType[keyof typeof FrameType]
export const MAX_FRAME_TYPE = 13

export const FLAG_METHOD = 0x01
export const FLAG_METHOD_NAME = 0x02
export const FLAG_TIMEOUT = 0x04
export const FLAG_TRACE = 0x08
export const FLAG_TRACE_REPEAT = 0x10
/** Bits not assigned yet; a frame that sets one is malformed (no silent misreads across versions). */
export const RESERVED_FLAGS = 0xe0

export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
export const MAX_METHOD_NAME_BYTES = 256
export const MAX_TRACEPARENT_BYTES = 256
/** Method ids a sender may bind per channel; beyond it names travel inline with id 0. */
export const MAX_METHODS_PER_CHANNEL = 1024

/**
 * A decoded frame. The decoder reuses one Frame object per callback, so copy fields you need
 * after the callback returns; `payload` is a view that stays valid (its buffer is never reused).
 */
export interface Frame {
  type: number
  flags: number
  id: number
  /** Method id, or -1 when the frame carries none. */
  method: number
  methodName: string | undefined
  /** Relative deadline in ms, or -1 when absent. */
  timeoutMs: number
  traceparent: string | undefined
  payload: Uint8Array
}

/** What a sender hands the encoder; omitted optional fields are simply not written. */
export interface FrameInit {
  type: number
  id?: number
  method?: number
  methodName?: string
  timeoutMs?: number
  traceparent?: string
  payload?: Uint8Array
}

export function frameTypeName (type: number): string {
  for (const [name, value] of Object.entries(FrameType)) {
    if (value === type) return name
  }
  return `UNKNOWN(${type})`
}
