import { describe, expect, it } from 'vitest'
import { CellError, type RetryRule } from '../errors.ts'
import * as identityErrors from '../identity/errors.ts'
import { SYNAPSE_ERROR_CLASSES, WireErrorRegistry, DuplicateErrorNameError, RemoteError, type WireErrorClass } from '../synapse/index.ts'
import { MESH_ERROR_CLASSES } from './errors.ts'
import { mayRetry } from './retry.ts'

// What a production bundle makes of `class NoReplicaError extends CellError {…}`: a class whose
// constructor name is a minified identifier. Only the literal errorName may identify it.
const DG = class extends CellError {
  static override readonly errorName = 'DrainingLikeError'
  static override readonly retry: RetryRule = 'nothing-ran'
}
const zW = class extends CellError { static override readonly errorName = 'RefusalLikeError' }

function registry (): WireErrorRegistry {
  const identity = (Object.values(identityErrors) as unknown[]).filter((v): v is WireErrorClass => typeof v === 'function')
  return new WireErrorRegistry([...SYNAPSE_ERROR_CLASSES, ...identity, ...MESH_ERROR_CLASSES, DG, zW])
}

/** An error as a caller sees it: sent by the server as { name, message }, rebuilt by the registry. */
function fromServer (name: string): Error {
  return registry().fromWire(name, `${name} from the server`)
}

describe('retry rules', () => {
  it('a minified class keeps its literal name and is rebuilt from the wire by it', () => {
    expect(DG.name).toBe('DG')
    expect(new DG('x').name).toBe('DrainingLikeError')
    expect(fromServer('DrainingLikeError')).toBeInstanceOf(DG)
    expect(mayRetry(fromServer('DrainingLikeError'), { opened: true, idempotent: false })).toBe(true)
    expect(mayRetry(fromServer('RefusalLikeError'), { opened: false, idempotent: true })).toBe(false)
  })

  it('retries where nothing ran, on any method', () => {
    for (const name of ['NoReplicaError', 'CapsidDrainingError', 'CapsidBusyError', 'TooManyInflightError']) {
      expect(mayRetry(fromServer(name), { opened: true, idempotent: false }), name).toBe(true)
    }
  })

  it('retries a failure that may have run only for idempotent methods', () => {
    for (const name of ['ChannelClosedError', 'ReplicaCrashedError', 'CapsidStoppedError']) {
      expect(mayRetry(fromServer(name), { opened: true, idempotent: false }), name).toBe(false)
      expect(mayRetry(fromServer(name), { opened: true, idempotent: true }), name).toBe(true)
    }
  })

  it('never retries a refusal or a failure that would repeat, even before the channel opened', () => {
    for (const name of ['UnknownAuthorityError', 'WrongRoleError', 'NoGrantError', 'UnknownMethodError', 'DeadlineExceededError', 'FrameTooLargeError']) {
      expect(mayRetry(fromServer(name), { opened: false, idempotent: true }), name).toBe(false)
    }
  })

  it('a name nobody registered is a RemoteError and never retried', () => {
    const err = fromServer('SomeHandlerError')
    expect(err).toBeInstanceOf(RemoteError)
    expect(mayRetry(err, { opened: false, idempotent: true })).toBe(false)
    expect(mayRetry(err, { opened: true, idempotent: true })).toBe(false)
  })

  it('a failure that is no CellError (a dial error) is retried only before the channel opened', () => {
    expect(mayRetry(new Error('dial failed'), { opened: false, idempotent: false })).toBe(true)
    expect(mayRetry(fromServer('HandshakeTimeoutError'), { opened: false, idempotent: false })).toBe(true)
    expect(mayRetry(new Error('stream reset'), { opened: true, idempotent: true })).toBe(false)
  })
})

describe('wire error registry names', () => {
  it('keys on errorName and refuses a second class of one name', () => {
    const r = registry()
    r.register(DG)
    expect(() => { r.register(class extends CellError { static override readonly errorName = 'DrainingLikeError' }) }).toThrow(DuplicateErrorNameError)
  })
})
