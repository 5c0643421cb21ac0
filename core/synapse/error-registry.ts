import { CellError } from '../errors.ts'
import { FrameTooLargeError, MalformedFrameError } from '../wire/index.ts'
import {
  BackpressureError, CallCancelledError, ChannelClosedError, ChannelExpiredError, ServerGoingAwayError, SynapseNotStartedError, DeadlineExceededError, HandshakeTimeoutError,
  RemoteError, SynapseProtocolError, TooManyChannelsError, TooManyHandshakesError, TooManyInflightError, UnknownMethodError
} from './errors.ts'

// Errors cross the wire as { name, message } and are rebuilt here, so callers can match on the
// class (`instanceof UnknownAuthorityError`) no matter which side threw. Modules register their
// error classes; a name nobody registered becomes a RemoteError carrying the name.

/** A class the registry can rebuild: constructible from a message, named by its literal `errorName`. */
export type WireErrorClass = (new (message: string) => Error) & { readonly errorName: string }

/** Two different classes were registered under one errorName (the project keeps one class per name). */
export class DuplicateErrorNameError extends CellError { static override readonly errorName = 'DuplicateErrorNameError' }

const MAX_REGISTERED = 512
const MAX_NAME_CHARS = 128
const MAX_MESSAGE_CHARS = 4096

export class WireErrorRegistry {
  private readonly classes = new Map<string, WireErrorClass>()

  constructor (initial: WireErrorClass[] = []) {
    for (const c of initial) this.register(c)
  }

  /**
   * Registers a class under its literal `errorName` (never the constructor's name, which bundlers
   * rename). Registering the same class again is a no-op; another class with that name throws.
   */
  register (errorClass: WireErrorClass): void {
    const name = errorClass.errorName
    const known = this.classes.get(name)
    if (known === errorClass) return
    if (known !== undefined) throw new DuplicateErrorNameError(`two error classes are named "${name}"`)
    if (this.classes.size >= MAX_REGISTERED) {
      throw new RangeError(`wire error registry is full (${MAX_REGISTERED} classes)`)
    }
    this.classes.set(name, errorClass)
  }

  has (name: string): boolean {
    return this.classes.has(name)
  }

  /** Rebuilds an error sent by a peer. */
  fromWire (name: string, message: string): Error {
    const errorClass = this.classes.get(name)
    if (errorClass !== undefined) {
      try {
        const err = new errorClass(message)
        // Classes whose constructor formats the message still report the peer's text and name.
        err.message = message
        err.name = name
        return err
      } catch {
        // A constructor that needs more than a message cannot be rebuilt; fall through.
      }
    }
    return new RemoteError(name, message)
  }

  /** What goes on the wire for a local error: its name (RemoteError keeps the original) and message. */
  toWire (err: unknown): { name: string, message: string } {
    if (err instanceof RemoteError) return { name: err.remoteName, message: clip(err.message, MAX_MESSAGE_CHARS) }
    if (err instanceof Error) return { name: clip(err.name, MAX_NAME_CHARS), message: clip(err.message, MAX_MESSAGE_CHARS) }
    return { name: 'Error', message: clip(String(err), MAX_MESSAGE_CHARS) }
  }
}

function clip (s: string, max: number): string {
  return s.length > max ? s.slice(0, max) : s
}

export const SYNAPSE_ERROR_CLASSES: WireErrorClass[] = [
  HandshakeTimeoutError, SynapseProtocolError, DeadlineExceededError, CallCancelledError, ChannelClosedError, ChannelExpiredError,
  ServerGoingAwayError, TooManyInflightError, BackpressureError, TooManyChannelsError, TooManyHandshakesError, UnknownMethodError,
  SynapseNotStartedError,
  FrameTooLargeError, MalformedFrameError
]

/**
 * The process-wide registry the service uses unless its init passes another. It is the one
 * shared registry on purpose: error classes are static program facts, like the classes themselves.
 */
export const defaultWireErrors = new WireErrorRegistry(SYNAPSE_ERROR_CLASSES)

export function registerWireError (errorClass: WireErrorClass): void {
  defaultWireErrors.register(errorClass)
}

export function errorFromWire (name: string, message: string): Error {
  return defaultWireErrors.fromWire(name, message)
}
