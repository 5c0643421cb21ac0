import { CellError } from '../errors.ts'

/** A frame (announced or encoded) is larger than the configured maximum. */
export class FrameTooLargeError extends CellError { static override readonly errorName = 'FrameTooLargeError' }

/** Bytes on the wire do not form a valid frame; the stream that carried them is unusable. */
export class MalformedFrameError extends CellError { static override readonly errorName = 'MalformedFrameError' }
