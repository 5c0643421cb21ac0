// The real sidecar (Deno, QUIC) between a WebTransport client and the node's bridge, without a
// browser or libp2p: Deno's own WebTransport client dials it with the certificate hash, and the node
// side echoes each stream; the client ends each with a reset, which the sidecar relays.
// A second test ends streams with FIN both ways, sequentially, far past the session's stream limit:
// each end must cross the sidecar promptly and each stream's QUIC slot must come back.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { execFile, spawn } from 'node:child_process'
import { createHash, webcrypto } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { base64url } from 'multiformats/bases/base64'
import { SidecarSupervisor, denoBinary } from './sidecar.ts'
import { generateCertificate } from './certificates.ts'
import type { BridgeSession } from './bridge.ts'

const deno = denoBinary()

const CLIENT = `
const [url, hash, count] = Deno.args
const wt = new WebTransport(url, { serverCertificateHashes: [{ algorithm: 'sha-256', value: Uint8Array.from(JSON.parse(hash)) }] })
await wt.ready
console.error('ready')
const echoed = []
for (let i = 0; i < Number(count); i++) {
  // A stream slot comes back once the sidecar has ended its side of an earlier stream: retry until then.
  let s
  for (let tries = 0; s === undefined; tries++) {
    try { s = await wt.createBidirectionalStream() } catch (err) {
      if (tries > 200) throw err
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  const w = s.writable.getWriter()
  const sent = 'hello ' + i
  await w.write(new TextEncoder().encode(sent))
  // Ends each stream with abort and cancel once the echo is in (Deno 2.9's client sends neither a
  // RESET_STREAM nor a FIN for these, see FIN_CLIENT; only its STOP_SENDING crosses): the streams end
  // on the node when the session does.
  const r = s.readable.getReader()
  let text = ''
  while (text.length < sent.length) {
    const { done, value } = await r.read()
    if (done) break
    text += new TextDecoder().decode(value)
  }
  await w.abort()
  await r.cancel()
  echoed.push(text)
  console.error('echoed', i)
}
wt.close()
await wt.closed.catch(() => {})
console.log(JSON.stringify(echoed))
Deno.exit(0)
`

// Deno 2.9's WebTransport client has the same flaw the sidecar works around (sidecar.deno.ts,
// WT_BIDI_STREAM): its streams' writable.close() never finishes the QUIC stream. The client closes the
// QUIC stream's resource itself (a FIN), through Deno's internal core, to stand in for a browser.
const FIN_CLIENT = `
const [url, hash, count] = Deno.args
const core = Deno[Deno.internal].core
const ridOf = (stream) => {
  const sym = Object.getOwnPropertySymbols(stream).find((k) => String(k) === 'Symbol([[resourceBacking]])')
  return stream[sym].rid
}
const wt = new WebTransport(url, { serverCertificateHashes: [{ algorithm: 'sha-256', value: Uint8Array.from(JSON.parse(hash)) }] })
await wt.ready
const within = (p, ms, what) => Promise.race([p, new Promise((_r, reject) => setTimeout(() => reject(new Error(what + ' took over ' + ms + ' ms')), ms))])
let slowest = 0
const answers = []
for (let i = 0; i < Number(count); i++) {
  const t0 = performance.now()
  const s = await within(wt.createBidirectionalStream({ waitUntilAvailable: true }), 5000, 'stream ' + i + ' (no slot came back)')
  const w = s.writable.getWriter()
  await w.write(new TextEncoder().encode('ping ' + i))
  await w.ready
  w.releaseLock()
  core.tryClose(ridOf(s.writable)) // FIN
  // The node answers once it saw our FIN, then ends its side: read to done.
  const r = s.readable.getReader()
  let text = ''
  while (true) {
    const { done, value } = await within(r.read(), 3000, 'the end of stream ' + i)
    if (done) break
    text += new TextDecoder().decode(value)
  }
  slowest = Math.max(slowest, performance.now() - t0)
  answers.push(text)
}
console.log(JSON.stringify({ answers, slowest }))
wt.close()
Deno.exit(0)
`

// A peer that completes QUIC handshakes and never asks for a WebTransport session (Deno's QUIC client:
// ALPN h3, the test certificate as its trust root). It holds them until its stdin ends, then closes them.
const HOLDER = `
const [port, certPem, n] = Deno.args
const results = await Promise.allSettled(Array.from({ length: Number(n) }, async () =>
  await Deno.connectQuic({ hostname: '127.0.0.1', port: Number(port), alpnProtocols: ['h3'], caCerts: [certPem], serverName: '127.0.0.1' })))
console.log(JSON.stringify(results.map(r => r.status)))
for await (const _ of Deno.stdin.readable) { /* held until stdin ends */ }
for (const r of results) if (r.status === 'fulfilled') r.value.close({ closeCode: 0, reason: 'bye' })
`

/** A certificate naming 127.0.0.1, so that a plain QUIC client can verify it (certhash clients need none). */
async function certificateFor127 (): Promise<{ cert: string, key: string }> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']) as CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=127.0.0.1',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])]
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64').replace(/.{64}/g, '$&\n')
  return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n` }
}

async function until (what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await new Promise<void>((resolve) => { setTimeout(resolve, 20) })
  }
}

describe.skipIf(deno === undefined)('WebTransport sidecar with a Deno client', () => {
  let dir = ''
  let supervisor: SidecarSupervisor | undefined
  // Every test's scripts and Deno cache go here (a test run alone, -t, must not write into the checkout).
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'cell-sidecar-')) })
  afterAll(async () => {
    await supervisor?.stop()
    if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('relays streams of one session both ways, and the session close', async () => {
    const cert = await generateCertificate(Date.now())
    const sessions: BridgeSession[] = []
    supervisor = new SidecarSupervisor({
      deno: deno!,
      host: '127.0.0.1',
      port: 0,
      limits: { maxSessions: 2, maxStreamsPerSession: 8 },
      certificate: () => ({ cert: cert.cert, key: cert.key }),
      onSession: (session) => {
        sessions.push(session)
        session.onStream((s) => {
          s.addEventListener('message', (e) => { s.send(e.data) })
        })
      },
      log: logger('cell:webtransport:test')
    })
    const port = await supervisor.start()
    const script = join(dir, 'client.ts')
    await writeFile(script, CLIENT)
    const digest = [...base64url.decode(cert.hash).subarray(2)]
    const out = await new Promise<string>((resolve, reject) => {
      execFile(deno!, ['run', '--quiet', '--no-config', '--unstable-net', '--allow-net=127.0.0.1', script, `https://127.0.0.1:${port}/.well-known/libp2p-webtransport?type=noise`, JSON.stringify(digest), '3'],
        { env: { PATH: process.env.PATH ?? '', DENO_DIR: join(dir, 'deno'), NO_COLOR: '1' }, timeout: 20_000 },
        (err, stdout, stderr) => { if (err != null) reject(new Error(`${err.message}: ${stderr}`)); else resolve(stdout) })
    })
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual(Array.from({ length: 3 }, (_, i) => `hello ${i}`))
    expect(sessions).toHaveLength(1)
    expect(supervisor.counters.streamsOpened).toBe(3)
    expect(supervisor.counters.streamsRefused).toBe(0)
    // The client closed its session: the node's session ends and holds none of the three streams.
    const deadline = Date.now() + 10_000
    while (!sessions[0].closed && Date.now() < deadline) await new Promise<void>((resolve) => { setTimeout(resolve, 20) })
    expect(sessions[0].closed).toBe(true)
    expect(sessions[0].streams.size).toBe(0)
  }, 90_000)

  it('relays FIN both ways, and 300 streams one after another fit a session of 8 stream slots', async () => {
    const cert = await generateCertificate(Date.now())
    const sessions: BridgeSession[] = []
    let finsSeen = 0
    const fin = new SidecarSupervisor({
      deno: deno!,
      host: '127.0.0.1',
      port: 0,
      limits: { maxSessions: 2, maxStreamsPerSession: 8 },
      certificate: () => ({ cert: cert.cert, key: cert.key }),
      onSession: (session) => {
        sessions.push(session)
        session.onStream((s) => {
          let text = ''
          s.addEventListener('message', (e) => { text += new TextDecoder().decode(e.data.subarray()) })
          // Answer only at the client's FIN, then end our side with FIN (close, not abort).
          s.addEventListener('remoteCloseWrite', () => {
            finsSeen++
            s.send(new TextEncoder().encode(`pong ${text}`))
            void s.close().catch(() => {})
          })
        })
      },
      log: logger('cell:webtransport:test')
    })
    try {
      const port = await fin.start()
      const script = join(dir, 'fin-client.ts')
      await writeFile(script, FIN_CLIENT)
      const digest = [...base64url.decode(cert.hash).subarray(2)]
      const count = 300
      const out = await new Promise<string>((resolve, reject) => {
        execFile(deno!, ['run', '--quiet', '--no-config', '--unstable-net', '--allow-net=127.0.0.1', script, `https://127.0.0.1:${port}/.well-known/libp2p-webtransport?type=noise`, JSON.stringify(digest), String(count)],
          { env: { PATH: process.env.PATH ?? '', DENO_DIR: join(dir, 'deno'), NO_COLOR: '1' }, timeout: 60_000 },
          (err, stdout, stderr) => { if (err != null) reject(new Error(`${err.message}: ${stderr}`)); else resolve(stdout) })
      })
      const { answers, slowest } = JSON.parse(out.trim().split('\n').pop()!) as { answers: string[], slowest: number }
      expect(answers).toEqual(Array.from({ length: count }, (_, i) => `pong ping ${i}`))
      expect(finsSeen).toBe(count)
      expect(fin.counters.streamsOpened).toBe(count)
      expect(fin.counters.streamsRefused).toBe(0)
      // Each stream ended both ways within one round of the event loop, not at a timeout.
      expect(slowest).toBeLessThan(2000)
      const deadline = Date.now() + 5000
      while (sessions[0].streams.size > 0 && Date.now() < deadline) await new Promise<void>((resolve) => { setTimeout(resolve, 20) })
      expect(sessions[0].streams.size).toBe(0)
    } finally {
      await fin.stop()
    }
  }, 90_000)

  it('holds at most 8 connections per address that never ask for a session, and takes sessions again once they go', async () => {
    // Attack: QUIC connections that finish the handshake and never send the session request, each
    // held for the 10 s upgrade deadline. Before, the sidecar kept every one (20 of 20 here); now it
    // closes those past 8 per address (and past maxSessions in all) and counts them.
    const certificate = await certificateFor127()
    const sessions: BridgeSession[] = []
    const sidecar = new SidecarSupervisor({
      deno: deno!,
      host: '127.0.0.1',
      port: 0,
      limits: { maxSessions: 16, maxStreamsPerSession: 8 },
      certificate: () => certificate,
      onSession: (session) => {
        sessions.push(session)
        session.onStream((st) => { st.addEventListener('message', (e) => { st.send(e.data) }) })
      },
      log: logger('cell:webtransport:test')
    })
    const holder = join(dir, 'holder.ts')
    await writeFile(holder, HOLDER)
    let child: ReturnType<typeof spawn> | undefined
    try {
      const port = await sidecar.start()
      child = spawn(deno!, ['run', '--quiet', '--no-config', '--unstable-net', '--allow-net=127.0.0.1', holder, String(port), certificate.cert, '20'],
        { env: { PATH: process.env.PATH ?? '', DENO_DIR: join(dir, 'deno'), NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] })
      const refused = (reason: string): number => sidecar.counters.rejected.get(reason) ?? 0
      await until('12 of 20 connections refused', () => refused('too-many-pending') >= 12, 20_000)
      expect(refused('too-many-pending')).toBe(12)
      expect(refused('not-webtransport')).toBe(0)
      // The holder lets go: its 8 held connections end without a session, and their slots come back.
      child.stdin!.end()
      await until('the 8 held connections ended', () => refused('not-webtransport') >= 8, 20_000)
      const script = join(dir, 'client-after.ts')
      await writeFile(script, CLIENT)
      const out = await new Promise<string>((resolve, reject) => {
        // A real session now: the client trusts the certificate by its hash, as browsers do.
        execFile(deno!, ['run', '--quiet', '--no-config', '--unstable-net', '--allow-net=127.0.0.1', script, `https://127.0.0.1:${port}/.well-known/libp2p-webtransport?type=noise`, JSON.stringify([...createHash('sha256').update(new Uint8Array(new x509.X509Certificate(certificate.cert).rawData)).digest()]), '1'],
          { env: { PATH: process.env.PATH ?? '', DENO_DIR: join(dir, 'deno'), NO_COLOR: '1' }, timeout: 20_000 },
          (err, stdout, stderr) => { if (err != null) reject(new Error(`${err.message}: ${stderr}`)); else resolve(stdout) })
      })
      expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual(['hello 0'])
      expect(sessions).toHaveLength(1)
    } finally {
      child?.kill('SIGKILL')
      await sidecar.stop()
    }
  }, 90_000)
})
