export { FrameTooLargeError, MalformedFrameError } from './errors.ts'
export {
  FrameType, FLAG_METHOD, FLAG_METHOD_NAME, FLAG_TIMEOUT, FLAG_TRACE, FLAG_TRACE_REPEAT, RESERVED_FLAGS,
  DEFAULT_MAX_FRAME_BYTES, MAX_METHOD_NAME_BYTES, MAX_TRACEPARENT_BYTES, MAX_METHODS_PER_CHANNEL,
  frameTypeName
} from './frame.ts'
export type { Frame, FrameInit } from './frame.ts'
export { FrameEncoder } from './encoder.ts'
export type { FrameEncoderInit } from './encoder.ts'
export { FrameDecoder, decodeFrames } from './decoder.ts'
export type { FrameDecoderInit, Chunk } from './decoder.ts'
export { encodeFields, FieldReader } from './fields.ts'
export type { Field } from './fields.ts'
export { varintLength, writeVarint, MAX_U32 } from './varint.ts'
