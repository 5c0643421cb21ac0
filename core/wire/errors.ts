import { CellError } from '../errors.ts'

/** A frame (announced or encoded) is larger than the configured maximum. */
export class FrameTooLargeError extends CellError {}

/** Bytes on the wire do not form a valid frame; the stream that carried them is unusable. */
export class MalformedFrameError extends CellError {}
