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
  if (payload.byteLength > MAX_CALL_FRAME_BYTES) throw tooLarge(payload.byteLength, what)
  return payload
}

function tooLarge (bytes, what) {
  return new FrameTooLargeError(`${what} of ${bytes} bytes exceeds the limit of ${MAX_CALL_FRAME_BYTES} bytes per call frame; return a stream of smaller chunks instead`)
}

// Replies produced in one tick are encoded back to back into one buffer and leave in one write.
let out = new Uint8Array(16 * 1024)
let outView = new DataView(out.buffer)
let outLen = 0
let flushScheduled = false

/** Room for `bytes` more in the batch. */
function reserve (bytes) {
  if (outLen + bytes <= out.byteLength) return
  const grown = new Uint8Array(Math.max(outLen + bytes, out.byteLength * 2))
  grown.set(out.subarray(0, outLen))
  out = grown
  outView = new DataView(out.buffer)
}

function header (at, type, id, rest, metaLen) {
  outView.setUint32(at, rest)
  out[at + 4] = type
  outView.setUint32(at + 5, id)
  outView.setUint32(at + 9, metaLen)
}

/** Appends one frame to the batch; checks the size before writing any byte of it. */
function frame (type, id, meta, payload = EMPTY) {
  const metaBytes = meta === undefined ? EMPTY : enc.encode(JSON.stringify(meta))
  const rest = 9 + metaBytes.byteLength + payload.byteLength
  if (rest > MAX_FRAME_BYTES) throw new FrameTooLargeError(`reply of ${rest} bytes exceeds the ${MAX_FRAME_BYTES} byte frame limit`)
  reserve(4 + rest)
  const at = outLen
  header(at, type, id, rest, metaBytes.byteLength)
  out.set(metaBytes, at + HEADER_BYTES)
  out.set(payload, at + HEADER_BYTES + metaBytes.byteLength)
  outLen = at + 4 + rest
}

/** Strings up to this many characters are encoded straight into the batch (no buffer of their own). */
const INLINE_STRING_CHARS = 64 * 1024

/**
 * A RESULT or CHUNK frame carrying `value` as JSON, encoded in place: ASCII characters are written
 * byte by byte and the rest by encodeInto, so a small result costs no buffer of its own. Past one
 * call frame it is refused by name (FrameTooLargeError) and nothing enters the batch.
 */
function sendValue (type, id, value, what) {
  if (!socket.writable) return
  const json = value === undefined ? undefined : JSON.stringify(value)
  if (json === undefined || json.length > INLINE_STRING_CHARS) {
    send(type, id, undefined, callPayload(value, what))
    return
  }
  const len = json.length
  reserve(HEADER_BYTES + 3 * len)
  const start = outLen + HEADER_BYTES
  let n = 0
  for (; n < len; n++) {
    const c = json.charCodeAt(n)
    if (c > 0x7f) break
    out[start + n] = c
  }
  if (n < len) n += enc.encodeInto(json.slice(n), out.subarray(start + n)).written
  if (n > MAX_CALL_FRAME_BYTES) throw tooLarge(n, what)
  header(outLen, type, id, 9 + n, 0)
  outLen = start + n
  scheduleFlush()
}

function flush () {
  flushScheduled = false
  if (outLen === 0 || !socket.writable) return
  socket.write(out.subarray(0, outLen))
  outLen = 0
  // Nothing left queued: the kernel took every byte during write(), so the buffer is free again.
  // Otherwise the socket holds it until then and the next batch starts anew.
  if (socket.writableLength === 0 && out.byteLength <= 1024 * 1024) return
  out = new Uint8Array(16 * 1024)
  outView = new DataView(out.buffer)
}

// Reads land in one buffer reused for every read: every frame is handled (its meta and payload
// decoded) before the next read, and a frame split across reads is copied (buf below).
const readBuffer = Buffer.allocUnsafe(128 * 1024)
const socket = net.connect({ path: socketPath, onread: { buffer: readBuffer, callback: (n, b) => { onData(b, n) } } })
socket.on('error', (err) => { process.stderr.write(`capsid runner: socket error: ${err.message}\n`); process.exit(70) })
// The host went away (or closed us): nothing left to serve.
socket.on('close', () => process.exit(draining ? 0 : 70))

function scheduleFlush () {
  if (!flushScheduled) {
    flushScheduled = true
    process.nextTick(flush)
  }
}

function send (type, id, meta, payload) {
  if (!socket.writable) return
  frame(type, id, meta, payload)
  scheduleFlush()
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

/**
 * What a handler sees of its call (CellContext), and the runner's state of it. The signal exists
 * only once a handler asks for it (most never do): an abort before that is kept and the signal
 * starts out aborted. Deadlines share one timer per 10 ms slot (Deadlines below), not one each.
 */
class CallContext {
  #controller = undefined
  #reason = undefined
  /** Stream chunks the host will still accept. */
  #credits
  #wake = undefined
  /** The deadline slot holding this call, if any. */
  #slot = undefined

  constructor (deadlineMs, traceparent, caller, credits) {
    this.deadlineMs = deadlineMs
    this.traceparent = traceparent
    this.caller = caller
    this.#credits = credits
  }

  get signal () {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#reason !== undefined) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  static aborted (ctx) { return ctx.#reason !== undefined }
  static reason (ctx) { return ctx.#reason }

  static abort (ctx, reason) {
    if (ctx.#reason === undefined) {
      ctx.#reason = reason
      ctx.#controller?.abort(reason)
    }
    CallContext.wake(ctx)
  }

  static wake (ctx) {
    const w = ctx.#wake
    ctx.#wake = undefined
    w?.()
  }

  static credit (ctx, n) {
    ctx.#credits += n
    CallContext.wake(ctx)
  }

  /** Takes one credit, waiting for the host to grant more (or for an abort); false once aborted. */
  static async takeCredit (ctx) {
    while (ctx.#credits <= 0 && ctx.#reason === undefined) await new Promise(resolve => { ctx.#wake = resolve })
    if (ctx.#reason !== undefined) return false
    ctx.#credits--
    return true
  }

  static slot (ctx) { return ctx.#slot }
  static setSlot (ctx, slot) { ctx.#slot = slot }
}

/**
 * Deadlines in slots of 10 ms: one timer per slot that holds calls, a call aborted at most 10 ms
 * late. A slot whose calls all ended lets go of its timer, so slots and timers stay as many as the
 * 10 ms steps that calls in flight end in, however far their deadlines are.
 */
const DEADLINE_SLOT_MS = 10
/** Beyond this setTimeout cannot wait (it would fire at once): such a deadline is not watched. */
const MAX_TIMER_MS = 0x7fff_ffff
const deadlineSlots = new Map()

// The clock read once per read from the host: the calls of one read start in one synchronous run
// (clock reads cost on this kind of machine; a slot timer set a few microseconds late is harmless).
let nowCache = 0
let nowFresh = false
function readNow () {
  if (!nowFresh) {
    nowCache = Date.now()
    nowFresh = true
    queueMicrotask(staleNow)
  }
  return nowCache
}
function staleNow () { nowFresh = false }

class DeadlineSlot {
  constructor (key) {
    this.key = key
    this.calls = new Set()
    this.timer = setTimeout(expireSlot, Math.max(0, key * DEADLINE_SLOT_MS - readNow()), this)
  }
}

function watchDeadline (ctx) {
  const deadlineMs = ctx.deadlineMs
  if (!(deadlineMs - readNow() <= MAX_TIMER_MS)) return
  const key = Math.ceil(deadlineMs / DEADLINE_SLOT_MS)
  let slot = deadlineSlots.get(key)
  if (slot === undefined) {
    slot = new DeadlineSlot(key)
    deadlineSlots.set(key, slot)
  }
  slot.calls.add(ctx)
  CallContext.setSlot(ctx, slot)
}

function unwatchDeadline (ctx) {
  const slot = CallContext.slot(ctx)
  if (slot === undefined) return
  slot.calls.delete(ctx)
  if (slot.calls.size === 0 && deadlineSlots.get(slot.key) === slot) {
    clearTimeout(slot.timer)
    deadlineSlots.delete(slot.key)
  }
}

function expireSlot (slot) {
  if (deadlineSlots.get(slot.key) === slot) deadlineSlots.delete(slot.key)
  for (const ctx of slot.calls) CallContext.abort(ctx, new DeadlineExceededError('call deadline passed'))
}

/** id → CallContext for calls and streams being served. */
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

async function serve (type, id, meta, payload) {
  const method = meta.method
  if (draining) return sendError(id, new CapsidDrainingError('replica is draining'))
  if (!meta.known) return sendError(id, new UnknownMethodError(unknownMethodMessage(method)))
  const ctx = new CallContext(meta.deadlineMs, meta.traceparent, meta.caller, Number(meta.credit) || 0)
  inflight.set(id, ctx)
  watchDeadline(ctx)
  try {
    const req = decodePayload(payload)
    const result = await cell[method](req, ctx)
    if (type === T.CALL) {
      sendValue(T.RESULT, id, result, 'result')
    } else {
      if (result == null || (typeof result[Symbol.asyncIterator] !== 'function' && typeof result[Symbol.iterator] !== 'function')) {
        throw new NotAStreamError(`method "${method}" did not return an iterable`)
      }
      for await (const chunk of result) {
        // Cancelled: leaving the loop calls the generator's return(), running its finally blocks.
        if (!await CallContext.takeCredit(ctx)) break
        sendValue(T.CHUNK, id, chunk, 'stream chunk')
      }
      if (CallContext.aborted(ctx)) throw CallContext.reason(ctx)
      send(T.END, id)
    }
  } catch (err) {
    sendError(id, err)
  } finally {
    unwatchDeadline(ctx)
    inflight.delete(id)
    maybeExit()
  }
}

async function oneWay (meta, payload) {
  const method = meta?.method
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
    await cell[method](decodePayload(payload), { signal: ac.signal, deadlineMs: meta.deadlineMs ?? Infinity, traceparent: meta.traceparent, caller: meta.caller })
  } catch (err) {
    process.stderr.write(`capsid runner: message handler ${method} failed: ${err?.name ?? 'Error'}: ${err?.message ?? err}\n`)
  } finally {
    messagesInFlight--
    maybeExit()
  }
}

/** One frame from the host; `payload` is a view into the read buffer, used before this returns. */
function handle (type, id, meta, payload) {
  switch (type) {
    case T.CALLER:
      callers[id] = meta
      break
    case T.CALL:
    case T.STREAM:
      void serve(type, id, meta, payload)
      break
    case T.MESSAGE:
      void oneWay(meta, payload)
      break
    case T.CANCEL: {
      const ctx = inflight.get(id)
      if (ctx !== undefined) CallContext.abort(ctx, new CallCancelledError('caller cancelled the call'))
      break
    }
    case T.CREDIT: {
      const ctx = inflight.get(id)
      if (ctx !== undefined) CallContext.credit(ctx, Number(meta?.n) || 0)
      break
    }
    case T.DRAIN:
      draining = true
      maybeExit()
      break
    default:
      process.stderr.write(`capsid runner: unknown frame type ${type}\n`)
      process.exit(71)
  }
}

/** The host broke the framing: nothing it sends can be trusted any more. */
function protocolError (what) {
  process.stderr.write(`capsid runner: ${what}\n`)
  process.exit(71)
}

/** The cell's method names as UTF-8: a call's method is matched on its bytes, no string decoded. */
const methodBytes = methods.map(m => enc.encode(m))

/** The method named by `bytes[start, end)`: the cell's own string when it has it, else undefined. */
function knownMethod (bytes, start, end) {
  const len = end - start
  next: for (let m = 0; m < methodBytes.length; m++) { // eslint-disable-line no-labels
    const b = methodBytes[m]
    if (b.byteLength !== len) continue
    for (let i = 0; i < len; i++) if (b[i] !== bytes[start + i]) continue next // eslint-disable-line no-labels
    return methods[m]
  }
  return undefined
}

const f64Bytes = new Uint8Array(8)
const f64View = new DataView(f64Bytes.buffer)

/** A big-endian u16 at `at`. */
function u16 (bytes, at) {
  return (bytes[at] << 8) + bytes[at + 1]
}

/** A big-endian u32 at `at`. */
function u32 (bytes, at) {
  return ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3]
}

/** The binary meta of a CALL or STREAM frame (protocol.ts CALL_META) at bytes[start, end), its caller slot resolved now. */
function callMeta (bytes, start, end) {
  if (end - start < CALL_META_FIXED_BYTES) protocolError('call meta too short')
  // Read without a DataView of its own per call: the f64 goes through one scratch DataView.
  for (let i = 0; i < 8; i++) f64Bytes[i] = bytes[start + i]
  const deadlineMs = f64View.getFloat64(0)
  const slot = u32(bytes, start + 8)
  const credit = u32(bytes, start + 12)
  const methodLen = u16(bytes, start + 16)
  if (18 + methodLen + 2 > end - start) protocolError('call meta method length exceeds the meta')
  const known = knownMethod(bytes, start + 18, start + 18 + methodLen)
  const tpLen = u16(bytes, start + 18 + methodLen)
  const tpStart = start + 20 + methodLen
  if (tpStart + tpLen !== end) protocolError('call meta traceparent length does not match the meta')
  if (slot > MAX_CALLER_SLOTS || (slot !== 0 && callers[slot] === undefined)) protocolError(`call names caller slot ${slot}, which the host never filled`)
  return {
    method: known ?? dec.decode(bytes.subarray(start + 18, start + 18 + methodLen)),
    known: known !== undefined,
    deadlineMs,
    credit,
    traceparent: tpLen > 0 ? dec.decode(bytes.subarray(tpStart, tpStart + tpLen)) : undefined,
    caller: slot === 0 ? undefined : callers[slot]
  }
}

let buf = EMPTY
/** `n` bytes arrived in `chunk` (the read buffer, overwritten by the next read). */
function onData (chunk, n) {
  if (buf.byteLength > 0) {
    const joined = new Uint8Array(buf.byteLength + n)
    joined.set(buf)
    joined.set(chunk.subarray(0, n), buf.byteLength)
    chunk = joined
  }
  const end = buf.byteLength + n
  let off = 0
  while (end - off >= 4) {
    const rest = u32(chunk, off)
    if (rest > MAX_FRAME_BYTES || rest < 9) protocolError(`bad frame length ${rest}`)
    if (end - off < 4 + rest) break
    const metaLen = u32(chunk, off + 9)
    if (metaLen > rest - 9) protocolError('bad frame meta length')
    const type = chunk[off + 4]
    const id = u32(chunk, off + 5)
    const metaStart = off + HEADER_BYTES
    let meta
    if (type === T.CALL || type === T.STREAM) {
      meta = callMeta(chunk, metaStart, metaStart + metaLen)
    } else if (metaLen > 0) {
      try { meta = JSON.parse(dec.decode(chunk.subarray(metaStart, metaStart + metaLen))) } catch { protocolError('frame meta is not JSON') }
    }
    if (type === T.CALLER && (id < 1 || id > MAX_CALLER_SLOTS || meta === null || typeof meta !== 'object')) protocolError(`bad caller slot ${id}`)
    const payloadStart = metaStart + metaLen
    const payloadLen = off + 4 + rest - payloadStart
    handle(type, id, meta, payloadLen === 0 ? EMPTY : new Uint8Array(chunk.buffer, chunk.byteOffset + payloadStart, payloadLen))
    off += 4 + rest
  }
  // The unfinished tail is copied: the read buffer is reused by the next read. (Not chunk.slice:
  // on a Buffer that is a view, like subarray.)
  buf = off === end ? EMPTY : Uint8Array.prototype.slice.call(chunk, off, end)
}

// SIGTERM ends the drain grace period (process mode; under bwrap the host's SIGTERM kills bwrap
// and --die-with-parent takes the replica with it): abort every handler, then go.
process.on('SIGTERM', () => {
  for (const ctx of inflight.values()) CallContext.abort(ctx, new ReplicaStoppingError('replica is stopping'))
  setTimeout(() => process.exit(0), TERM_GRACE_MS).unref()
  draining = true
  maybeExit()
})

socket.on('connect', () => {
  send(T.READY, 0, { token, methods, idempotent, pid: process.pid })
})
