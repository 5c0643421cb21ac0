// The WebTransport sidecar: a Deno process (Node has no QUIC) that a full node starts with
//   deno run --unstable-net --allow-net=<host> --allow-read=<socket> --allow-write=<socket> sidecar.deno.ts <socket>
// It terminates QUIC/HTTP3/WebTransport with the certificate the node hands it, accepts sessions on
// the libp2p path only, and relays every bidirectional stream to the node over the Unix socket
// (bridge-frames.ts). It holds no identity key: Noise and everything above run in the node.
import {
  FRAME, FrameDecoder, BridgeFrameError, encodeFrame, encodeJson, encodeCredit, creditOf, jsonOf,
  INITIAL_CREDIT_BYTES, MAX_PAYLOAD_BYTES, NODE_STREAM_BIT, type Frame, type SidecarConfig
} from './bridge-frames.ts'

// The slice of Deno's API used here (the file is type-checked by the project's tsc, which has no Deno types).
interface DenoConn { readable: ReadableStream<Uint8Array>, writable: WritableStream<Uint8Array>, close: () => void }
/** A raw QUIC bidirectional stream: closing its writable sends FIN, its readable ends (done) at the peer's FIN. */
interface QuicBidi { readable: ReadableStream<Uint8Array>, writable: WritableStream<Uint8Array> }
interface QuicConn {
  closed: Promise<unknown>
  close: (info?: { closeCode: number, reason: string }) => void
  remoteAddr: { hostname: string, port: number }
  incomingBidirectionalStreams: ReadableStream<QuicBidi>
  createBidirectionalStream: (o?: { waitUntilAvailable?: boolean }) => Promise<QuicBidi>
}
interface QuicIncoming { accept: () => Promise<QuicConn>, refuse: () => void }
interface QuicListener extends AsyncIterable<QuicIncoming> { stop: () => void }
interface QuicEndpoint { addr: { port: number }, listen: (o: { cert: string, key: string, alpnProtocols: string[], maxConcurrentBidirectionalStreams?: number, maxConcurrentUnidirectionalStreams?: number, maxIdleTimeout?: number, keepAliveInterval?: number }) => QuicListener, close: () => void }
type ServerWebTransport = WebTransport & { url: string }
interface DenoApi {
  args: string[]
  connect: (o: { transport: 'unix', path: string }) => Promise<DenoConn>
  QuicEndpoint: new (o: { hostname: string, port: number }) => QuicEndpoint
  upgradeWebTransport: (conn: QuicConn) => Promise<ServerWebTransport>
  exit: (code: number) => never
}
declare const Deno: DenoApi

const LIBP2P_PATH = '/.well-known/libp2p-webtransport'
const DEBUG = Deno.args[1] === 'debug'
function debug (...parts: unknown[]): void { if (DEBUG) console.error(parts.map(String).join(' ')) }
const UPGRADE_TIMEOUT_MS = 10_000
/** How long a browser-opened stream may take to send its WebTransport header (type and session id). */
const HEADER_TIMEOUT_MS = 10_000

// WebTransport over HTTP/3 (draft-ietf-webtrans-http3): every bidirectional stream of a session starts
// with the varint 0x41 and the varint session id (the id of the CONNECT stream).
//
// Streams are read and written as raw QUIC streams (QuicConn.incomingBidirectionalStreams and
// createBidirectionalStream), not through the WebTransport object's streams: Deno 2.9's
// WebTransportBidirectionalStream wraps the QUIC stream's resource without owning it, so closing or
// aborting its writable never finishes the QUIC stream (no FIN ever reaches the peer) and the QUIC
// stream is only released when the whole connection closes, so the peer never gets the stream's slot
// back (its MAX_STREAMS credit). The raw QUIC streams send FIN on close and are released once both
// directions ended. The WebTransport object still does the session's handshake, URL and close.
const WT_BIDI_STREAM = 0x41

function encodeVarint (n: number): Uint8Array {
  if (n < 0x40) return Uint8Array.of(n)
  if (n < 0x4000) return Uint8Array.of(0x40 | (n >> 8), n & 0xff)
  if (n < 0x40000000) return Uint8Array.of(0x80 | (n >>> 24), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff)
  throw new RangeError('varint too large for a stream id here')
}

/** A varint at `at` in `buf`: [value, next offset], or undefined if `buf` ends first. */
function decodeVarint (buf: Uint8Array, at: number): [number, number] | undefined {
  if (at >= buf.byteLength) return undefined
  const len = 1 << (buf[at] >> 6)
  if (at + len > buf.byteLength) return undefined
  let v = buf[at] & 0x3f
  for (let i = 1; i < len; i++) v = v * 256 + buf[at + i]
  return [v, at + len]
}

function concatBytes (a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.byteLength + b.byteLength)
  c.set(a, 0)
  c.set(b, a.byteLength)
  return c
}

/**
 * Reads the WebTransport header of a browser-opened stream: its session id and the bytes after it,
 * or undefined if the stream ends, fails or times out first, or is not a WebTransport stream.
 */
async function readStreamHeader (reader: ReadableStreamDefaultReader<Uint8Array>): Promise<{ sessionId: number, rest: Uint8Array } | undefined> {
  let buf: Uint8Array = new Uint8Array(0)
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, HEADER_TIMEOUT_MS) })
  try {
    while (true) {
      const type = decodeVarint(buf, 0)
      const sid = type === undefined ? undefined : decodeVarint(buf, type[1])
      if (type !== undefined && type[0] !== WT_BIDI_STREAM) return undefined
      if (sid !== undefined) return { sessionId: sid[0], rest: buf.subarray(sid[1]) }
      if (buf.byteLength >= 16) return undefined
      const r = await Promise.race([reader.read(), timeout])
      if (r === undefined || r.done) return undefined
      buf = concatBytes(buf, r.value)
    }
  } catch {
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

const bridge = await Deno.connect({ transport: 'unix', path: Deno.args[0] })
const bridgeWriter = bridge.writable.getWriter()
/** Frames to the node go out in order; a write awaits the socket, so a slow node slows the pumps. */
async function send (frame: Uint8Array): Promise<void> {
  if (DEBUG) debug('→node', frame[0].toString(16), new DataView(frame.buffer, frame.byteOffset).getUint32(1), new DataView(frame.buffer, frame.byteOffset).getUint32(5), frame.byteLength - 13)
  await bridgeWriter.write(frame)
}
function fatal (err: unknown): never {
  console.error(`webtransport sidecar: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`)
  Deno.exit(1)
}

interface StreamState {
  id: number
  writer: WritableStreamDefaultWriter<Uint8Array> | undefined
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined
  /** Bytes the node still accepts on this stream. */
  sendCredit: number
  creditWaiter: (() => void) | undefined
  /** Writes to the browser, in order (after the stream exists); credit goes back to the node as each completes. */
  writes: Promise<void>
  /** Bytes the node may still send (its credit with us); a frame beyond it is a protocol error. */
  recvCredit: number
  done: boolean
  /** The browser finished its side (FIN relayed), and the node finished its side (FIN written). */
  readEnded: boolean
  writeEnded: boolean
}
interface SessionState {
  id: number
  wt: ServerWebTransport
  conn: QuicConn
  /** The WebTransport session id (its CONNECT stream's id), learnt from the first browser stream. */
  wtSessionId: number | undefined
  streams: Map<number, StreamState>
  nextStream: number
}

let config: SidecarConfig | undefined
let endpoint: QuicEndpoint | undefined
let listener: QuicListener | undefined
const sessions = new Map<number, SessionState>()
/** Connections not yet sessions (at most maxSessions), and those past the QUIC handshake per address. */
let pending = 0
const upgradingByHost = new Map<string, number>()
const MAX_PENDING_PER_HOST = 8
let nextSession = 1

function listen (cert: string, key: string): void {
  if (endpoint === undefined || config === undefined) return
  listener?.stop()
  const current = endpoint.listen({
    cert,
    key,
    alpnProtocols: ['h3'],
    // The browser may open this many streams at once (QUIC flow control stops it beyond).
    maxConcurrentBidirectionalStreams: config.maxStreamsPerSession,
    maxConcurrentUnidirectionalStreams: 4,
    maxIdleTimeout: 60_000,
    keepAliveInterval: 15_000
  })
  listener = current
  void acceptLoop(current)
}

async function acceptLoop (l: QuicListener): Promise<void> {
  try {
    for await (const incoming of l) {
      if (config === undefined || sessions.size >= config.maxSessions) {
        incoming.refuse()
        await send(encodeJson(FRAME.rejected, 0, { reason: 'too-many-sessions' }))
        continue
      }
      // Connections between their first packet and a WebTransport session (the QUIC handshake, then
      // up to UPGRADE_TIMEOUT_MS for the session request) are bounded too: at most maxSessions in all,
      // and MAX_PENDING_PER_HOST per address once the handshake says who it is (accept). (Reading an
      // incoming connection's remoteAddr before accept() spoils it in Deno 2.9: BadResource.)
      if (pending >= config.maxSessions) {
        incoming.refuse()
        await send(encodeJson(FRAME.rejected, 0, { reason: 'too-many-pending' }))
        continue
      }
      pending++
      const settle = once(() => { pending-- })
      void accept(incoming, settle).catch(() => {}).finally(settle)
    }
  } catch {
    // The listener stopped (rotation or shutdown).
  }
}

/** `fn` on the first call only (a slot given back once, whichever path ends first). */
function once (fn: () => void): () => void {
  let done = false
  return () => { if (!done) { done = true; fn() } }
}

/** Accepts one connection as a session; calls `settle` once it is a session or refused. */
async function accept (incoming: QuicIncoming, settle: () => void): Promise<void> {
  const conn = await incoming.accept()
  const host = conn.remoteAddr.hostname
  const fromHost = upgradingByHost.get(host) ?? 0
  if (fromHost >= MAX_PENDING_PER_HOST) {
    conn.close({ closeCode: 0x100, reason: 'too many pending connections' })
    await send(encodeJson(FRAME.rejected, 0, { reason: 'too-many-pending' }))
    return
  }
  upgradingByHost.set(host, fromHost + 1)
  // Done upgrading (a session now, or refused): the address may start another.
  const release = once(() => {
    const n = (upgradingByHost.get(host) ?? 1) - 1
    if (n <= 0) upgradingByHost.delete(host)
    else upgradingByHost.set(host, n)
  })
  try {
    await upgrade(conn, () => { release(); settle() })
  } finally {
    release()
  }
}

/** Waits for the session request on `conn`; a session once it is one (settle), else closed. */
async function upgrade (conn: QuicConn, settle: () => void): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const wt = await Promise.race([
    Deno.upgradeWebTransport(conn),
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('upgrade timeout')) }, UPGRADE_TIMEOUT_MS) })
  ]).finally(() => { clearTimeout(timer) }).catch(async (err: unknown) => {
    conn.close({ closeCode: 0x100, reason: 'no webtransport session' })
    await send(encodeJson(FRAME.rejected, 0, { reason: 'not-webtransport' }))
    throw err
  })
  let url: URL | undefined
  try { url = new URL(wt.url) } catch { url = undefined }
  if (url === undefined || url.pathname !== LIBP2P_PATH || url.search !== '?type=noise') {
    wt.close({ closeCode: 404, reason: 'not found' })
    await send(encodeJson(FRAME.rejected, 0, { reason: 'wrong-path' }))
    return
  }
  if (config === undefined || sessions.size >= config.maxSessions) {
    wt.close({ closeCode: 503, reason: 'busy' })
    await send(encodeJson(FRAME.rejected, 0, { reason: 'too-many-sessions' }))
    return
  }
  const session: SessionState = { id: nextSession++, wt, conn, wtSessionId: undefined, streams: new Map(), nextStream: 1 }
  sessions.set(session.id, session)
  settle()
  await send(encodeJson(FRAME.sessionOpen, session.id, { remote: `${conn.remoteAddr.hostname}:${conn.remoteAddr.port}` }))
  void wt.closed.catch(() => {}).finally(() => { void endSession(session, true) })
  // libp2p uses bidirectional streams only: refuse unidirectional ones rather than let them sit.
  void (async () => {
    const uni = wt.incomingUnidirectionalStreams.getReader()
    while (true) {
      const { done, value } = await uni.read()
      if (done) return
      void value.cancel().catch(() => {})
    }
  })().catch(() => {})
  // Raw QUIC streams (see WT_BIDI_STREAM): each starts with its WebTransport header, read before the
  // node hears of the stream. Headers are read concurrently, so one slow stream holds up no other.
  const incomingStreams = conn.incomingBidirectionalStreams.getReader()
  try {
    while (true) {
      const { done, value } = await incomingStreams.read()
      if (done) break
      if (session.streams.size >= (config?.maxStreamsPerSession ?? 0)) {
        refuseStream(value)
        continue
      }
      void acceptStream(session, value)
    }
  } catch {
    // The session closed.
  }
}

function refuseStream (stream: QuicBidi): void {
  void stream.writable.abort().catch(() => {})
  void stream.readable.cancel().catch(() => {})
}

async function acceptStream (session: SessionState, stream: QuicBidi): Promise<void> {
  const reader = stream.readable.getReader()
  const header = await readStreamHeader(reader)
  if (header === undefined || (session.wtSessionId !== undefined && header.sessionId !== session.wtSessionId)) {
    void reader.cancel().catch(() => {})
    void stream.writable.abort().catch(() => {})
    return
  }
  session.wtSessionId ??= header.sessionId
  if (!sessions.has(session.id) || session.streams.size >= (config?.maxStreamsPerSession ?? 0)) {
    void reader.cancel().catch(() => {})
    void stream.writable.abort().catch(() => {})
    return
  }
  const id = session.nextStream++
  if (id >= NODE_STREAM_BIT) { await endSession(session, false); return }
  const s = newStream(session, id)
  await send(encodeFrame(FRAME.streamOpen, session.id, id))
  attach(session, s, stream.writable.getWriter(), reader, header.rest)
}

function newStream (session: SessionState, id: number): StreamState {
  const s: StreamState = {
    id,
    writer: undefined,
    reader: undefined,
    sendCredit: INITIAL_CREDIT_BYTES,
    creditWaiter: undefined,
    writes: Promise.resolve(),
    recvCredit: INITIAL_CREDIT_BYTES,
    done: false,
    readEnded: false,
    writeEnded: false
  }
  session.streams.set(id, s)
  return s
}

/** A stream finished in both directions leaves the session's map (the map bounds open streams). */
function maybeForget (session: SessionState, s: StreamState): void {
  if (s.readEnded && s.writeEnded && session.streams.get(s.id) === s) {
    s.done = true
    session.streams.delete(s.id)
  }
}

function attach (session: SessionState, s: StreamState, writer: WritableStreamDefaultWriter<Uint8Array>, reader: ReadableStreamDefaultReader<Uint8Array>, first: Uint8Array): void {
  s.writer = writer
  s.reader = reader
  if (s.done) {
    void s.writer.abort().catch(() => {})
    void s.reader.cancel().catch(() => {})
    return
  }
  void pump(session, s, first)
}

/** Browser → node: read the stream, send it on in bounded frames as the node's credit allows. */
async function pump (session: SessionState, s: StreamState, first: Uint8Array): Promise<void> {
  const reader = s.reader
  if (reader === undefined) return
  let pending: Uint8Array | undefined = first.byteLength > 0 ? first : undefined
  try {
    while (true) {
      const { done, value } = pending !== undefined ? { done: false as const, value: pending } : await reader.read()
      pending = undefined
      if (done) {
        await send(encodeFrame(FRAME.fin, session.id, s.id))
        s.readEnded = true
        maybeForget(session, s)
        return
      }
      let at = 0
      while (at < value.byteLength) {
        while (s.sendCredit <= 0) {
          await new Promise<void>((resolve) => { s.creditWaiter = resolve })
          if (s.done) return
        }
        const n = Math.min(value.byteLength - at, MAX_PAYLOAD_BYTES, s.sendCredit)
        s.sendCredit -= n
        await send(encodeFrame(FRAME.data, session.id, s.id, value.subarray(at, at + n)))
        at += n
      }
    }
  } catch {
    if (!s.done) await resetStream(session, s, true)
  }
}

/**
 * Ends a stream at once. Deno 2.9 has no RESET_STREAM for a QUIC send stream: aborting the writable
 * finishes it (FIN) and cancelling the readable sends STOP_SENDING, so the browser sees its read side
 * end and its writes fail.
 */
async function resetStream (session: SessionState, s: StreamState, tellNode: boolean): Promise<void> {
  if (s.done) return
  s.done = true
  session.streams.delete(s.id)
  s.creditWaiter?.()
  void s.writer?.abort().catch(() => {})
  void s.reader?.cancel().catch(() => {})
  if (tellNode && sessions.has(session.id)) await send(encodeFrame(FRAME.reset, session.id, s.id))
}

async function endSession (session: SessionState, tellNode: boolean): Promise<void> {
  if (!sessions.delete(session.id)) return
  for (const s of session.streams.values()) await resetStream(session, s, false)
  try { session.wt.close() } catch { /* closed already */ }
  if (tellNode) await send(encodeJson(FRAME.sessionClose, session.id, { code: 0, reason: 'closed' }))
}

/** Node → browser. */
async function onFrame (f: Frame): Promise<void> {
  debug('node→', f.type.toString(16), f.session, f.stream, f.payload.byteLength)
  switch (f.type) {
    case FRAME.config: {
      const c = jsonOf(f) as unknown as SidecarConfig
      if (config !== undefined) throw new BridgeFrameError('a second config frame')
      config = c
      endpoint = new Deno.QuicEndpoint({ hostname: c.host, port: c.port })
      listen(c.cert, c.key)
      await send(encodeJson(FRAME.listening, 0, { port: endpoint.addr.port }))
      return
    }
    case FRAME.certs: {
      const c = jsonOf(f)
      if (typeof c.cert !== 'string' || typeof c.key !== 'string') throw new BridgeFrameError('certs frame without cert and key')
      listen(c.cert, c.key)
      return
    }
    case FRAME.sessionClose: {
      const session = sessions.get(f.session)
      if (session !== undefined) await endSession(session, false)
      return
    }
    default: break
  }
  const session = sessions.get(f.session)
  if (session === undefined) return // ended meanwhile; the node learns from our sessionClose
  if (f.type === FRAME.streamOpen) {
    if ((f.stream & NODE_STREAM_BIT) === 0 || session.streams.has(f.stream)) throw new BridgeFrameError(`node opened stream ${f.stream} outside its numbers`)
    if (session.streams.size >= (config?.maxStreamsPerSession ?? 0)) { await send(encodeFrame(FRAME.reset, session.id, f.stream)); return }
    // Not awaited here: the browser may take a while to give stream credit, and frames for every other
    // stream keep flowing meanwhile. Frames for this one queue on its `writes` until it exists.
    const s = newStream(session, f.stream)
    const created = session.conn.createBidirectionalStream({ waitUntilAvailable: true }).then(async (stream) => {
      const writer = stream.writable.getWriter()
      await writer.write(concatBytes(encodeVarint(WT_BIDI_STREAM), encodeVarint(session.wtSessionId ?? 0)))
      attach(session, s, writer, stream.readable.getReader(), new Uint8Array(0))
    })
    s.writes = created.catch(async () => { await resetStream(session, s, true); throw new Error('stream not created') })
    return
  }
  const s = session.streams.get(f.stream)
  if (s === undefined) return // reset meanwhile
  switch (f.type) {
    case FRAME.data: {
      s.recvCredit -= f.payload.byteLength
      if (s.recvCredit < 0) throw new BridgeFrameError(`node overran its credit on stream ${f.stream}`)
      const bytes = f.payload
      s.writes = s.writes.then(async () => {
        await s.writer!.write(bytes)
        s.recvCredit += bytes.byteLength
        if (!s.done) await send(encodeCredit(session.id, s.id, bytes.byteLength))
      }).catch(async () => { await resetStream(session, s, true) })
      return
    }
    case FRAME.fin:
      s.writes = s.writes.then(async () => {
        await s.writer!.close()
        s.writeEnded = true
        maybeForget(session, s)
      }).catch(() => {})
      return
    case FRAME.reset:
      await resetStream(session, s, false)
      return
    case FRAME.credit:
      s.sendCredit += creditOf(f)
      if (s.sendCredit > 16 * INITIAL_CREDIT_BYTES) throw new BridgeFrameError(`node granted too much credit on stream ${f.stream}`)
      s.creditWaiter?.()
      s.creditWaiter = undefined
      return
    default:
      throw new BridgeFrameError(`frame 0x${f.type.toString(16)} is not for the sidecar`)
  }
}

const decoder = new FrameDecoder()
try {
  const reader = bridge.readable.getReader()
  while (true) {
    const { done, value } = await reader.read()
    if (done) break
    for (const f of decoder.push(value)) await onFrame(f)
  }
} catch (err) {
  fatal(err)
}
// The node went away: so does the sidecar.
endpoint?.close()
Deno.exit(0)
