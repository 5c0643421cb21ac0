// The frames of `/cell/claim/1`: a small binary envelope around strictly validated, bounded JSON.
//   frame   = version:u8 (1) type:u8 chainLength:u16be chain body
//   type    = 1 request (proposer → voter), 2 answer (voter → proposer), 3 refused (body = code:u8)
//   chain   = the sender's credential chain (core/identity), so either side checks the other's host grant
//   body    = UTF-8 JSON, at most MAX_BODY_BYTES, exactly the keys below and nothing else
// Anything else (cut short, too long, unknown keys, wrong types, out-of-range numbers) is a
// MalformedClaimFrameError; the protocol adapter closes the stream on it.
import { MAX_CHAIN_BYTES } from '../identity/index.ts'
import { MalformedClaimFrameError } from './errors.ts'
import {
  isClaimId, isFinalTag, isPeerIdString, MAX_VOTERS, MIN_LEASE_MS, MAX_LEASE_MS,
  type Ballot, type ClaimValue, type AcceptedValue, type ClaimNext, type ClaimOrigin
} from './register.ts'

export const CLAIM_PROTOCOL = '/cell/claim/1'
export const CLAIM_WIRE_VERSION = 1
export const MAX_BODY_BYTES = 2048
export const MAX_CLAIM_FRAME_BYTES = 4 + MAX_CHAIN_BYTES + MAX_BODY_BYTES
const TYPE_REQUEST = 1
const TYPE_ANSWER = 2
const TYPE_REFUSED = 3
/** Largest epoch / ballot counter on the wire (exact in a double). */
const MAX_COUNTER = Number.MAX_SAFE_INTEGER
const MAX_WAIT_MS = 2 * MAX_LEASE_MS
/** Largest claim generation on the wire: a claim moves when a voter is gone for good, a few times in its life. */
export const MAX_GEN = 1_000_000_000

/**
 * Every request carries a fresh random nonce and every answer echoes it with the claim and ballot.
 * A request to a claim's generation above 0 (`gen`, absent for 0) carries the move that made it (`origin`).
 */
export type ClaimRequest =
  | { kind: 'prepare', claimId: string, ballot: Ballot, nonce: string, voters: string[], gen?: number, origin?: ClaimOrigin }
  | { kind: 'accept', claimId: string, ballot: Ballot, nonce: string, voters: string[], value: ClaimValue, gen?: number, origin?: ClaimOrigin }

export type RejectReason = 'ballot' | 'voters' | 'lease-held' | 'owner' | 'capacity' | 'not-voter' | 'moved'

export type ClaimAnswer =
  | { kind: 'promise', claimId: string, ballot: Ballot, nonce: string, accepted: AcceptedValue | null, waitMs: number }
  | { kind: 'accepted', claimId: string, ballot: Ballot, nonce: string }
  | {
    kind: 'reject'
    claimId: string
    ballot: Ballot
    nonce: string
    phase: 'prepare' | 'accept'
    reason: RejectReason
    promised?: Ballot
    voters?: string[]
    holder?: string
    epoch?: number
    waitMs?: number
    /** With `moved`: the generation this voter is in (newer than the request's), its `voters` and its `origin`. */
    gen?: number
    origin?: ClaimOrigin
  }

export type ClaimFrame =
  | { type: 'request', chain: Uint8Array, request: ClaimRequest }
  | { type: 'answer', chain: Uint8Array, answer: ClaimAnswer }
  | { type: 'refused', code: number }

// ---------------------------------------------------------------------------------------------

export function encodeClaimRequest (request: ClaimRequest, chain: Uint8Array): Uint8Array {
  const body: Record<string, unknown> = {
    t: request.kind,
    claim: request.claimId,
    ballot: ballotJson(request.ballot),
    n: request.nonce,
    voters: request.voters
  }
  if ((request.gen ?? 0) > 0) {
    body.gen = request.gen
    body.origin = request.origin
  }
  if (request.kind === 'accept') body.value = valueJson(request.value)
  return envelope(TYPE_REQUEST, chain, body)
}

export function encodeClaimAnswer (answer: ClaimAnswer, chain: Uint8Array): Uint8Array {
  const body: Record<string, unknown> = { t: answer.kind, claim: answer.claimId, ballot: ballotJson(answer.ballot), n: answer.nonce }
  if (answer.kind === 'promise') {
    body.accepted = answer.accepted == null ? null : { ballot: ballotJson(answer.accepted.ballot), value: { ...valueJson(answer.accepted.value), voters: answer.accepted.value.voters } }
    body.waitMs = answer.waitMs
  } else if (answer.kind === 'reject') {
    body.phase = answer.phase
    body.reason = answer.reason
    if (answer.promised != null) body.promised = ballotJson(answer.promised)
    if (answer.voters != null) body.voters = answer.voters
    if (answer.holder != null) body.holder = answer.holder
    if (answer.epoch != null) body.epoch = answer.epoch
    if (answer.waitMs != null) body.waitMs = answer.waitMs
    if (answer.gen != null) body.gen = answer.gen
    if (answer.origin != null) body.origin = answer.origin
  }
  return envelope(TYPE_ANSWER, chain, body)
}

export function encodeClaimRefusal (code: number): Uint8Array {
  return Uint8Array.of(CLAIM_WIRE_VERSION, TYPE_REFUSED, 0, 0, code & 0xff)
}

function envelope (type: number, chain: Uint8Array, body: Record<string, unknown>): Uint8Array {
  if (chain.length > MAX_CHAIN_BYTES) throw new MalformedClaimFrameError(`chain of ${chain.length} bytes exceeds ${MAX_CHAIN_BYTES}`)
  const json = new TextEncoder().encode(JSON.stringify(body))
  if (json.length > MAX_BODY_BYTES) throw new MalformedClaimFrameError(`body of ${json.length} bytes exceeds ${MAX_BODY_BYTES}`)
  const out = new Uint8Array(4 + chain.length + json.length)
  out[0] = CLAIM_WIRE_VERSION
  out[1] = type
  out[2] = chain.length >>> 8
  out[3] = chain.length & 0xff
  out.set(chain, 4)
  out.set(json, 4 + chain.length)
  return out
}

function ballotJson (b: Ballot): [number, string] {
  return [b.counter, b.proposer]
}

function valueJson (v: ClaimValue): Record<string, unknown> {
  return { owner: v.owner, epoch: v.epoch, leaseMs: v.leaseMs, state: v.state, ...(v.final !== undefined ? { final: v.final } : {}), ...(v.next !== undefined ? { next: { gen: v.next.gen, voters: v.next.voters } } : {}) }
}

// ---------------------------------------------------------------------------------------------

export function decodeClaimFrame (bytes: Uint8Array): ClaimFrame {
  if (!(bytes instanceof Uint8Array)) throw new MalformedClaimFrameError('not bytes')
  if (bytes.length > MAX_CLAIM_FRAME_BYTES) throw new MalformedClaimFrameError(`frame of ${bytes.length} bytes exceeds ${MAX_CLAIM_FRAME_BYTES}`)
  if (bytes.length < 4) throw new MalformedClaimFrameError('frame cut short')
  if (bytes[0] !== CLAIM_WIRE_VERSION) throw new MalformedClaimFrameError(`wire version ${bytes[0]}, expected ${CLAIM_WIRE_VERSION}`)
  const type = bytes[1]
  const chainLength = (bytes[2] << 8) | bytes[3]
  if (type === TYPE_REFUSED) {
    if (chainLength !== 0 || bytes.length !== 5) throw new MalformedClaimFrameError('refusal of the wrong length')
    return { type: 'refused', code: bytes[4] }
  }
  if (type !== TYPE_REQUEST && type !== TYPE_ANSWER) throw new MalformedClaimFrameError(`unknown frame type ${type}`)
  if (chainLength > MAX_CHAIN_BYTES) throw new MalformedClaimFrameError(`chain of ${chainLength} bytes exceeds ${MAX_CHAIN_BYTES}`)
  if (bytes.length < 4 + chainLength + 2) throw new MalformedClaimFrameError('frame cut short')
  const chain = bytes.subarray(4, 4 + chainLength)
  const bodyBytes = bytes.subarray(4 + chainLength)
  if (bodyBytes.length > MAX_BODY_BYTES) throw new MalformedClaimFrameError(`body of ${bodyBytes.length} bytes exceeds ${MAX_BODY_BYTES}`)
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bodyBytes))
  } catch (err) {
    throw new MalformedClaimFrameError('body is not UTF-8 JSON', { cause: err })
  }
  return type === TYPE_REQUEST ? { type: 'request', chain, request: parseRequest(body) } : { type: 'answer', chain, answer: parseAnswer(body) }
}

function fail (what: string): never {
  throw new MalformedClaimFrameError(what)
}

function record (x: unknown, what: string, required: readonly string[], optional: readonly string[] = []): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail(`${what} is not an object`)
  const obj = x as Record<string, unknown>
  for (const key of Object.keys(obj)) if (!required.includes(key) && !optional.includes(key)) fail(`${what} has unknown key "${key.slice(0, 40)}"`)
  for (const key of required) if (!Object.hasOwn(obj, key)) fail(`${what} lacks "${key}"`)
  return obj
}

function int (x: unknown, what: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) fail(`${what} is not an integer in [${min}, ${max}]`)
  return x
}

function peer (x: unknown, what: string): string {
  if (typeof x !== 'string' || !isPeerIdString(x)) fail(`${what} is not a peer id`)
  return x
}

const NONCE = /^[0-9a-f]{16}$/

function nonce (x: unknown): string {
  if (typeof x !== 'string' || !NONCE.test(x)) fail('n is not a 16-digit hex nonce')
  return x
}

function claimId (x: unknown): string {
  if (typeof x !== 'string' || !isClaimId(x)) fail('claim is not a claim id')
  return x
}

function ballot (x: unknown, what: string): Ballot {
  if (!Array.isArray(x) || x.length !== 2) fail(`${what} is not [counter, proposer]`)
  return { counter: int(x[0], `${what} counter`, 1, MAX_COUNTER), proposer: peer(x[1], `${what} proposer`) }
}

function voters (x: unknown, what: string): string[] {
  if (!Array.isArray(x) || x.length === 0 || x.length > MAX_VOTERS) fail(`${what} is not 1 to ${MAX_VOTERS} peer ids`)
  const out = x.map((v, i) => peer(v, `${what}[${i}]`))
  for (let i = 1; i < out.length; i++) if (out[i - 1] >= out[i]) fail(`${what} is not sorted and unique`)
  return out
}

function next (x: unknown, what: string): ClaimNext {
  const n = record(x, what, ['gen', 'voters'])
  return { gen: int(n.gen, `${what} gen`, 1, MAX_GEN), voters: voters(n.voters, `${what} voters`) }
}

function origin (x: unknown, what: string): ClaimOrigin {
  const o = record(x, what, ['owner', 'epoch', 'leaseMs'])
  return { owner: peer(o.owner, `${what} owner`), epoch: int(o.epoch, `${what} epoch`, 1, MAX_COUNTER), leaseMs: int(o.leaseMs, `${what} leaseMs`, MIN_LEASE_MS, MAX_LEASE_MS) }
}

/** `gen` and `origin` of a request: both absent (generation 0) or both there. */
function place (b: Record<string, unknown>): { gen?: number, origin?: ClaimOrigin } {
  if (b.gen === undefined && b.origin === undefined) return {}
  if (b.gen === undefined || b.origin === undefined) fail('gen and origin come together')
  return { gen: int(b.gen, 'gen', 1, MAX_GEN), origin: origin(b.origin, 'origin') }
}

function value (x: unknown, what: string, fixedVoters: string[] | undefined): ClaimValue {
  const v = record(x, what, fixedVoters == null ? ['owner', 'epoch', 'leaseMs', 'state', 'voters'] : ['owner', 'epoch', 'leaseMs', 'state'], ['final', 'next'])
  if (v.state !== 'held' && v.state !== 'released') fail(`${what} state is not held or released`)
  // Only a release hands a final snapshot over.
  if (v.final !== undefined && (v.state !== 'released' || !isFinalTag(v.final))) fail(`${what} final is not a snapshot tag of a released claim`)
  return {
    owner: peer(v.owner, `${what} owner`),
    epoch: int(v.epoch, `${what} epoch`, 1, MAX_COUNTER),
    leaseMs: int(v.leaseMs, `${what} leaseMs`, MIN_LEASE_MS, MAX_LEASE_MS),
    state: v.state,
    voters: fixedVoters ?? voters(v.voters, `${what} voters`),
    ...(v.final !== undefined ? { final: v.final as string } : {}),
    ...(v.next !== undefined ? { next: next(v.next, `${what} next`) } : {})
  }
}

function parseRequest (body: unknown): ClaimRequest {
  const kind = (body as { t?: unknown } | null)?.t
  if (kind === 'prepare') {
    const b = record(body, 'prepare', ['t', 'claim', 'ballot', 'n', 'voters'], ['gen', 'origin'])
    return { kind, claimId: claimId(b.claim), ballot: ballot(b.ballot, 'ballot'), nonce: nonce(b.n), voters: voters(b.voters, 'voters'), ...place(b) }
  }
  if (kind === 'accept') {
    const b = record(body, 'accept', ['t', 'claim', 'ballot', 'n', 'voters', 'value'], ['gen', 'origin'])
    const vs = voters(b.voters, 'voters')
    return { kind, claimId: claimId(b.claim), ballot: ballot(b.ballot, 'ballot'), nonce: nonce(b.n), voters: vs, value: value(b.value, 'value', vs), ...place(b) }
  }
  return fail('request is neither prepare nor accept')
}

function parseAnswer (body: unknown): ClaimAnswer {
  const kind = (body as { t?: unknown } | null)?.t
  if (kind === 'promise') {
    const b = record(body, 'promise', ['t', 'claim', 'ballot', 'n', 'accepted', 'waitMs'])
    let accepted: AcceptedValue | null = null
    if (b.accepted !== null) {
      const a = record(b.accepted, 'accepted', ['ballot', 'value'])
      accepted = { ballot: ballot(a.ballot, 'accepted ballot'), value: value(a.value, 'accepted value', undefined) }
    }
    return { kind, claimId: claimId(b.claim), ballot: ballot(b.ballot, 'ballot'), nonce: nonce(b.n), accepted, waitMs: int(b.waitMs, 'waitMs', 0, MAX_WAIT_MS) }
  }
  if (kind === 'accepted') {
    const b = record(body, 'accepted', ['t', 'claim', 'ballot', 'n'])
    return { kind, claimId: claimId(b.claim), ballot: ballot(b.ballot, 'ballot'), nonce: nonce(b.n) }
  }
  if (kind === 'reject') {
    const b = record(body, 'reject', ['t', 'claim', 'ballot', 'n', 'phase', 'reason'], ['promised', 'voters', 'holder', 'epoch', 'waitMs', 'gen', 'origin'])
    if (b.phase !== 'prepare' && b.phase !== 'accept') fail('phase is not prepare or accept')
    const reasons: readonly RejectReason[] = ['ballot', 'voters', 'lease-held', 'owner', 'capacity', 'not-voter', 'moved']
    if (!reasons.includes(b.reason as RejectReason)) fail('unknown reject reason')
    const out: ClaimAnswer = { kind, claimId: claimId(b.claim), ballot: ballot(b.ballot, 'ballot'), nonce: nonce(b.n), phase: b.phase, reason: b.reason as RejectReason }
    if (b.promised !== undefined) out.promised = ballot(b.promised, 'promised')
    if (b.voters !== undefined) out.voters = voters(b.voters, 'voters')
    if (b.holder !== undefined) out.holder = peer(b.holder, 'holder')
    if (b.epoch !== undefined) out.epoch = int(b.epoch, 'epoch', 1, MAX_COUNTER)
    if (b.waitMs !== undefined) out.waitMs = int(b.waitMs, 'waitMs', 0, MAX_WAIT_MS)
    if (b.gen !== undefined) out.gen = int(b.gen, 'gen', 0, MAX_GEN)
    if (b.origin !== undefined) out.origin = origin(b.origin, 'origin')
    return out
  }
  return fail('answer is not promise, accepted or reject')
}
