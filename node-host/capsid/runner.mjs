// The replica side of a capsid. Runs under Node 24 inside the sandbox: imports the cell artifact,
// connects to the host's Unix socket and serves the capsid protocol (see protocol.ts for the
// frame layout; the constants below must match it). Plain JS so no type stripping is involved.
import net from 'node:net'
import { pathToFileURL } from 'node:url'

const MAX_FRAME_BYTES = 4 * 1024 * 1024
/**
 * The most one call's result (or one stream chunk) can carry: a synapse frame to the caller is at
 * most core/wire's DEFAULT_MAX_FRAME_BYTES (1 MiB). Checked here, where the cell's value is encoded,
 * so a 2 MB and a 13 MB result fail alike: FrameTooLargeError naming this limit (docs/limits.md).
 */
const MAX_CALL_FRAME_BYTES = 1024 * 1024
const HEADER_BYTES = 13
const T = { CALL: 1, STREAM: 2, MESSAGE: 3, CANCEL: 4, DRAIN: 5, CREDIT: 6, CALLER: 7, READY: 16, RESULT: 17, ERROR: 18, CHUNK: 19, END: 20 }
/** Caller slots the host may fill (1..MAX_CALLER_SLOTS); protocol.ts has the same bound. */
const MAX_CALLER_SLOTS = 4096
/** f64 deadlineMs | u32 caller slot | u32 credit | u16 method length | method | u16 traceparent length | traceparent. */
const CALL_META_FIXED_BYTES = 20
const CELL_META = '__cell'
/** One-way messages being handled at once; beyond this they are dropped and counted. */
const MAX_MESSAGES_IN_FLIGHT = 1024
/** How long handlers get to react to their aborted signal once the host sends SIGTERM. */
const TERM_GRACE_MS = 500

// The names the host reads from ERROR frames (capsid.ts remoteError): literal, like the host's own
// classes (core/errors.ts), so they survive any bundling of this file.
class NamedError extends Error {
  static errorName = 'NamedError'
  constructor (message) { super(message); this.name = new.target.errorName }
}
class UnknownMethodError extends NamedError { static errorName = 'UnknownMethodError' }
class CapsidDrainingError extends NamedError { static errorName = 'CapsidDrainingError' }
class CallCancelledError extends NamedError { static errorName = 'CallCancelledError' }
class DeadlineExceededError extends NamedError { static errorName = 'DeadlineExceededError' }
class ReplicaStoppingError extends NamedError { static errorName = 'ReplicaStoppingError' }
class FrameTooLargeError extends NamedError { static errorName = 'FrameTooLargeError' }
class NotAStreamError extends NamedError { static errorName = 'NotAStreamError' }
class PayloadDecodeError extends NamedError { static errorName = 'PayloadDecodeError' }

const env = process.env
// A strict capsid started by root: bwrap left the runner root in no user namespace with only
// CAP_SETUID/SETGID; drop to the replica's own unprivileged uid before any cell code runs (the
// switch from root clears every capability, and bwrap set no_new_privs).
if (env.CELL_CAPSID_UID !== undefined) {
  const id = Number(env.CELL_CAPSID_UID)
  process.setgroups([])
  process.setgid(id)
  process.setuid(id)
  if (process.getuid() !== id || process.geteuid() === 0 || process.getegid() === 0) {
    process.stderr.write('capsid runner: could not drop root\n')
    process.exit(72)
  }
  process.chdir(env.CELL_DATA_DIR)
}
delete env.CELL_CAPSID_UID
const socketPath = env.CELL_CAPSID_SOCKET
const artifactPath = env.CELL_CAPSID_ARTIFACT
const token = env.CELL_CAPSID_TOKEN
// The cell's own code must not see the capsid's plumbing (the token authenticates this runner).
delete env.CELL_CAPSID_SOCKET
delete env.CELL_CAPSID_ARTIFACT
delete env.CELL_CAPSID_TOKEN

// A throw here (bad artifact, top-level error in the cell) exits non-zero before READY, which the
// host reports as CapsidStartError with this stderr.
const mod = await import(pathToFileURL(artifactPath).href)
const cell = mod.default
if (cell == null || typeof cell !== 'object') throw new TypeError('cell artifact has no default export object (use defineCell)')
const methods = Object.keys(cell).filter(k => k !== CELL_META && typeof cell[k] === 'function')
const idempotent = Array.isArray(cell[CELL_META]?.idempotent) ? cell[CELL_META].idempotent.filter(m => methods.includes(m)) : []

const enc = new TextEncoder()
const dec = new TextDecoder()
const EMPTY = new Uint8Array(0)

/** A value for the caller, refused by name when no synapse frame could carry it. */
function callPayload (value, what) {
  const payload = encodeValue(value)
  if (payload.byteLength > MAX_CALL_FRAME_BYTES) {
    throw new FrameTooLargeError(`${what} of ${payload.byteLength} bytes exceeds the limit of ${MAX_CALL_FRAME_BYTES} bytes per call frame; return a stream of smaller chunks instead`)
  }
  return payload
}

// Replies produced in one tick are encoded back to back into one buffer and leave in one write.
let out = new Uint8Array(16 * 1024)
let outView = new DataView(out.buffer)
let outLen = 0
let flushScheduled = false

/** Appends one frame to the batch; checks the size before writing any byte of it. */
function frame (type, id, meta, payload = EMPTY) {
  const metaBytes = meta === undefined ? EMPTY : enc.encode(JSON.stringify(meta))
  const rest = 9 + metaBytes.byteLength + payload.byteLength
  if (rest > MAX_FRAME_BYTES) throw new FrameTooLargeError(`reply of ${rest} bytes exceeds the ${MAX_FRAME_BYTES} byte frame limit`)
  if (outLen + 4 + rest > out.byteLength) {
    const grown = new Uint8Array(Math.max(outLen + 4 + rest, out.byteLength * 2))
    grown.set(out.subarray(0, outLen))
    out = grown
    outView = new DataView(out.buffer)
  }
  const at = outLen
  outView.setUint32(at, rest)
  out[at + 4] = type
  outView.setUint32(at + 5, id)
  outView.setUint32(at + 9, metaBytes.byteLength)
  out.set(metaBytes, at + HEADER_BYTES)
  out.set(payload, at + HEADER_BYTES + metaBytes.byteLength)
  outLen = at + 4 + rest
}

function flush () {
  flushScheduled = false
  if (outLen === 0 || !socket.writable) return
  socket.write(out.subarray(0, outLen))
  // The socket may hold the written bytes until the kernel takes them: the next batch starts anew.
  out = new Uint8Array(Math.max(16 * 1024, Math.min(outLen, 1024 * 1024)))
  outView = new DataView(out.buffer)
  outLen = 0
}

const socket = net.connect(socketPath)
socket.on('error', (err) => { process.stderr.write(`capsid runner: socket error: ${err.message}\n`); process.exit(70) })
// The host went away (or closed us): nothing left to serve.
socket.on('close', () => process.exit(draining ? 0 : 70))

function send (type, id, meta, payload) {
  if (!socket.writable) return
  frame(type, id, meta, payload)
  if (!flushScheduled) {
    flushScheduled = true
    process.nextTick(flush)
  }
}

function sendError (id, err) {
  const meta = { name: typeof err?.name === 'string' ? err.name : 'Error', message: String(err?.message ?? err) }
  if (typeof err?.code === 'string') meta.code = err.code
  send(T.ERROR, id, meta)
}

function encodeValue (value) {
  return value === undefined ? EMPTY : enc.encode(JSON.stringify(value))
}

function decodePayload (payload) {
  if (payload.byteLength === 0) return undefined
  try {
    return JSON.parse(dec.decode(payload))
  } catch (err) {
    throw new PayloadDecodeError(`request payload is not JSON: ${err.message}`)
  }
}

/** id → { ac, credits, wake } for calls and streams being served. */
const inflight = new Map()
/** Caller slot → the caller the host put there (a CALLER frame), resolved when a call arrives. */
const callers = new Array(MAX_CALLER_SLOTS + 1)
let messagesInFlight = 0
let messagesDropped = 0
let draining = false

function maybeExit () {
  if (draining && inflight.size === 0 && messagesInFlight === 0) {
    // The last replies are still in the batch: they go out before the end.
    flush()
    socket.end(() => process.exit(0))
  }
}

function contextFor (meta, ac) {
  return { signal: ac.signal, deadlineMs: meta.deadlineMs, traceparent: meta.traceparent, caller: meta.caller }
}

/** Edit distance (insert, delete, substitute, swap of neighbours), for "did you mean" on a mistyped method. */
function distance (a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/** Names the nearest method when one is close (a typo), and always lists what the cell has. */
function unknownMethodMessage (method) {
  const name = typeof method === 'string' ? method.slice(0, 128) : String(method)
  let nearest
  let best = Infinity
  if (typeof method === 'string' && method.length <= 128) {
    for (const m of methods) {
      const d = distance(method.toLowerCase(), m.toLowerCase())
      if (d < best) { best = d; nearest = m }
    }
  }
  const close = nearest !== undefined && best <= Math.max(1, Math.floor(Math.max(name.length, nearest.length) / 3))
  const list = methods.length > 0 ? methods.slice(0, 64).join(', ') : 'none'
  return `cell has no method "${name}"${close ? `; did you mean "${nearest}"?` : ''} (its methods: ${list})`
}

async function serve (f) {
  const meta = f.meta ?? {}
  const method = meta.method
  if (draining) return sendError(f.id, new CapsidDrainingError('replica is draining'))
  if (typeof method !== 'string' || !methods.includes(method)) return sendError(f.id, new UnknownMethodError(unknownMethodMessage(method)))
  const ac = new AbortController()
  const entry = { ac, credits: Number(meta.credit) || 0, wake: undefined }
  inflight.set(f.id, entry)
  const remaining = (meta.deadlineMs ?? Infinity) - Date.now()
  const timer = Number.isFinite(remaining)
    ? setTimeout(() => ac.abort(new DeadlineExceededError('call deadline passed')), Math.max(0, remaining))
    : undefined
  try {
    const req = decodePayload(f.payload)
    const result = await cell[method](req, contextFor(meta, ac))
    if (f.type === T.CALL) {
      send(T.RESULT, f.id, undefined, callPayload(result, 'result'))
    } else {
      if (result == null || (typeof result[Symbol.asyncIterator] !== 'function' && typeof result[Symbol.iterator] !== 'function')) {
        throw new NotAStreamError(`method "${method}" did not return an iterable`)
      }
      for await (const chunk of result) {
        while (entry.credits <= 0 && !ac.signal.aborted) await new Promise(resolve => { entry.wake = resolve })
        // Cancelled: leaving the loop calls the generator's return(), running its finally blocks.
        if (ac.signal.aborted) break
        entry.credits--
        send(T.CHUNK, f.id, undefined, callPayload(chunk, 'stream chunk'))
      }
      if (ac.signal.aborted) throw ac.signal.reason
      send(T.END, f.id)
    }
  } catch (err) {
    sendError(f.id, err)
  } finally {
    clearTimeout(timer)
    inflight.delete(f.id)
    maybeExit()
  }
}

async function oneWay (f) {
  const method = f.meta?.method
  if (draining) return
  if (typeof method !== 'string' || !methods.includes(method)) {
    process.stderr.write(`capsid runner: message for unknown method ${JSON.stringify(method)} dropped\n`)
    return
  }
  if (messagesInFlight >= MAX_MESSAGES_IN_FLIGHT) {
    messagesDropped++
    process.stderr.write(`capsid runner: message queue full, dropped ${messagesDropped} so far\n`)
    return
  }
  messagesInFlight++
  const ac = new AbortController()
  try {
    await cell[method](decodePayload(f.payload), { signal: ac.signal, deadlineMs: f.meta.deadlineMs ?? Infinity, traceparent: f.meta.traceparent, caller: f.meta.caller })
  } catch (err) {
    process.stderr.write(`capsid runner: message handler ${method} failed: ${err?.name ?? 'Error'}: ${err?.message ?? err}\n`)
  } finally {
    messagesInFlight--
    maybeExit()
  }
}

function handle (f) {
  switch (f.type) {
    case T.CALLER:
      callers[f.id] = f.meta
      break
    case T.CALL:
    case T.STREAM:
      void serve(f)
      break
    case T.MESSAGE:
      void oneWay(f)
      break
    case T.CANCEL: {
      const entry = inflight.get(f.id)
      if (entry !== undefined) {
        entry.ac.abort(new CallCancelledError('caller cancelled the call'))
        entry.wake?.()
      }
      break
    }
    case T.CREDIT: {
      const entry = inflight.get(f.id)
      if (entry !== undefined) {
        entry.credits += Number(f.meta?.n) || 0
        entry.wake?.()
      }
      break
    }
    case T.DRAIN:
      draining = true
      maybeExit()
      break
    default:
      process.stderr.write(`capsid runner: unknown frame type ${f.type}\n`)
      process.exit(71)
  }
}

/** The host broke the framing: nothing it sends can be trusted any more. */
function protocolError (what) {
  process.stderr.write(`capsid runner: ${what}\n`)
  process.exit(71)
}

/** The binary meta of a CALL or STREAM frame (protocol.ts CALL_META), its caller slot resolved now. */
function callMeta (bytes) {
  if (bytes.byteLength < CALL_META_FIXED_BYTES) protocolError('call meta too short')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const deadlineMs = view.getFloat64(0)
  const slot = view.getUint32(8)
  const credit = view.getUint32(12)
  const methodLen = view.getUint16(16)
  if (18 + methodLen + 2 > bytes.byteLength) protocolError('call meta method length exceeds the meta')
  const method = dec.decode(bytes.subarray(18, 18 + methodLen))
  const tpLen = view.getUint16(18 + methodLen)
  const tpStart = 20 + methodLen
  if (tpStart + tpLen !== bytes.byteLength) protocolError('call meta traceparent length does not match the meta')
  if (slot > MAX_CALLER_SLOTS || (slot !== 0 && callers[slot] === undefined)) protocolError(`call names caller slot ${slot}, which the host never filled`)
  return {
    method,
    deadlineMs,
    credit,
    traceparent: tpLen > 0 ? dec.decode(bytes.subarray(tpStart, tpStart + tpLen)) : undefined,
    caller: slot === 0 ? undefined : callers[slot]
  }
}

let buf = EMPTY
socket.on('data', (chunk) => {
  if (buf.byteLength > 0) {
    const joined = new Uint8Array(buf.byteLength + chunk.byteLength)
    joined.set(buf)
    joined.set(chunk, buf.byteLength)
    chunk = joined
  }
  let off = 0
  while (chunk.byteLength - off >= 4) {
    const view = new DataView(chunk.buffer, chunk.byteOffset + off)
    const rest = view.getUint32(0)
    if (rest > MAX_FRAME_BYTES || rest < 9) protocolError(`bad frame length ${rest}`)
    if (chunk.byteLength - off < 4 + rest) break
    const metaLen = view.getUint32(9)
    if (metaLen > rest - 9) protocolError('bad frame meta length')
    const type = chunk[off + 4]
    const id = view.getUint32(5)
    const metaStart = off + HEADER_BYTES
    const metaBytes = chunk.subarray(metaStart, metaStart + metaLen)
    let meta
    if (type === T.CALL || type === T.STREAM) {
      meta = callMeta(metaBytes)
    } else if (metaLen > 0) {
      try { meta = JSON.parse(dec.decode(metaBytes)) } catch { protocolError('frame meta is not JSON') }
    }
    if (type === T.CALLER && (id < 1 || id > MAX_CALLER_SLOTS || meta === null || typeof meta !== 'object')) protocolError(`bad caller slot ${id}`)
    handle({ type, id, meta, payload: chunk.subarray(metaStart + metaLen, off + 4 + rest) })
    off += 4 + rest
  }
  buf = off === chunk.byteLength ? EMPTY : chunk.slice(off)
})

// SIGTERM ends the drain grace period (process mode; under bwrap the host's SIGTERM kills bwrap
// and --die-with-parent takes the replica with it): abort every handler, then go.
process.on('SIGTERM', () => {
  for (const entry of inflight.values()) {
    entry.ac.abort(new ReplicaStoppingError('replica is stopping'))
    entry.wake?.()
  }
  setTimeout(() => process.exit(0), TERM_GRACE_MS).unref()
  draining = true
  maybeExit()
})

socket.on('connect', () => {
  send(T.READY, 0, { token, methods, idempotent, pid: process.pid })
})
