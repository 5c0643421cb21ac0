// The peers `npm run bench` compares synapse with: nats-server (Debian's binary) with nats.js, and
// grpc-js unary. Their serving ends (the nats subscriber and responder, the gRPC server) run in the
// bench server process (bench-server.ts), so like synapse every figure crosses two processes; this
// process publishes, requests and calls. A peer missing here is reported as skipped with a reason.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import { connect, type NatsConnection } from 'nats'
import { closedLoop } from './closed-loop.ts'

export const NATS_ONEWAY = 'bench.oneway'
export const NATS_COUNT = 'bench.count'
export const NATS_ECHO = 'bench.echo'

export interface PeerFigure {
  name: string
  ops: number
  ms: number
  perSec: number
  confirmed: number
}

export interface Skipped { skipped: string }

export const isSkipped = (x: unknown): x is Skipped => typeof x === 'object' && x !== null && 'skipped' in x

/** An identity-coded unary method, so neither side pays for protobuf: bytes in, same bytes out. */
const identity = (b: Buffer): Buffer => b
export const GRPC_SERVICE: grpc.ServiceDefinition = {
  echo: {
    path: '/cell.bench.Bench/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity
  }
}

/** gRPC server (h2c, no TLS) answering Echo; resolves with its port. */
export async function startGrpcServer (): Promise<{ port: number, stop: () => void }> {
  const server = new grpc.Server()
  server.addService(GRPC_SERVICE, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => { callback(null, call.request) }
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err != null) reject(err); else resolve(p) })
  })
  return { port, stop: () => { server.forceShutdown() } }
}

/** The serving side of the nats figures: count one-way messages, answer the count, echo requests. */
export async function startNatsServing (url: string): Promise<NatsConnection> {
  const nc = await connect({ servers: url })
  let messages = 0
  nc.subscribe(NATS_ONEWAY, { callback: () => { messages++ } })
  nc.subscribe(NATS_COUNT, {
    callback: (_err, m) => {
      const out = new Uint8Array(8)
      new DataView(out.buffer).setFloat64(0, messages)
      messages = 0
      m.respond(out)
    }
  })
  nc.subscribe(NATS_ECHO, { callback: (_err, m) => { m.respond(m.data) } })
  await nc.flush()
  return nc
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export interface NatsServer { url: string, version: string, stop: () => void }

/** nats-server on a free loopback port, or why it cannot run here. */
export async function startNatsServer (): Promise<NatsServer | Skipped> {
  const probe = spawnSync('nats-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) return { skipped: 'no nats-server on PATH (Debian package nats-server)' }
  const version = probe.stdout.trim()
  const port = await freePort()
  const child: ChildProcess = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => { resolve(false) }, 10_000)
    child.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000)
      if (/Server is ready/.test(err)) { clearTimeout(timer); resolve(true) }
    })
    child.once('exit', () => { clearTimeout(timer); resolve(false) })
  })
  if (!ready) {
    child.kill('SIGKILL')
    return { skipped: `nats-server did not start: ${err.split('\n').filter(l => l !== '').at(-1) ?? 'no output'}` }
  }
  return { url: `nats://127.0.0.1:${port}`, version, stop: () => { child.kill('SIGTERM') } }
}

const now = (): number => performance.now()

/** Publish 64-byte messages for the duration (a flush every 16,384 so nats.js's buffer stays bounded); the subscriber's count confirms. */
export async function natsOneway (url: string, o: { quick: boolean, durationMs: number, payloadBytes: number }, count: number): Promise<PeerFigure> {
  const nc = await connect({ servers: url })
  try {
    const payload = new Uint8Array(o.payloadBytes).fill(5)
    const start = now()
    const end = start + o.durationMs
    let sent = 0
    while (o.quick ? sent < count : now() < end) {
      for (let i = 0; i < 16_384; i++) { nc.publish(NATS_ONEWAY, payload); sent++ }
      await nc.flush()
    }
    const reply = await nc.request(NATS_COUNT, new Uint8Array(0), { timeout: 30_000 })
    const ms = now() - start
    const delivered = new DataView(reply.data.buffer, reply.data.byteOffset).getFloat64(0)
    return { name: 'nats one-way', ops: sent, ms, perSec: sent / (ms / 1000), confirmed: delivered }
  } finally {
    await nc.close()
  }
}

/** Request/reply with `window` requests in flight. */
export async function natsRequests (url: string, o: { quick: boolean, durationMs: number, payloadBytes: number }, window: number, count: number): Promise<PeerFigure> {
  const nc = await connect({ servers: url })
  try {
    const payload = new Uint8Array(o.payloadBytes).fill(6)
    const { issued, confirmed, ms } = await closedLoop(o, window, count, async () => (await nc.request(NATS_ECHO, payload, { timeout: 30_000 })).data.byteLength === payload.byteLength)
    return { name: `nats request/reply, ${window} in flight`, ops: issued, ms, perSec: issued / (ms / 1000), confirmed }
  } finally {
    await nc.close()
  }
}

interface EchoClient extends grpc.Client {
  echo: (req: Buffer, callback: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall
}

/** grpc-js unary Echo with `window` calls in flight (h2c on loopback, no TLS). */
export async function grpcUnary (port: number, o: { quick: boolean, durationMs: number, payloadBytes: number }, window: number, count: number): Promise<PeerFigure> {
  const Client = grpc.makeGenericClientConstructor(GRPC_SERVICE, 'Bench') as unknown as new (address: string, credentials: grpc.ChannelCredentials) => EchoClient
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  try {
    const payload = Buffer.alloc(o.payloadBytes, 7)
    const call = async (): Promise<Buffer> => await new Promise<Buffer>((resolve, reject) => {
      client.echo(payload, (err, res) => { if (err != null || res === undefined) reject(err ?? new Error('no answer')); else resolve(res) })
    })
    const { issued, confirmed, ms } = await closedLoop(o, window, count, async () => (await call()).byteLength === payload.byteLength)
    return { name: `grpc-js unary, ${window} in flight`, ops: issued, ms, perSec: issued / (ms / 1000), confirmed }
  } finally {
    client.close()
  }
}
