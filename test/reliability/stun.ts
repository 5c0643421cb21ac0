// A STUN binding request as a WebRTC-direct dialer sends it, with a fresh random ufrag each, for the
// tests that flood a WebRTC-direct listener (node-host/webrtc-direct-listener.test.ts and
// test/reliability/listener-garbage.test.ts).
import { createHmac, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** 32 characters the listener accepts as a ufrag (it drops anything else before native code). */
export const randomUfrag = (): string => Array.from(randomBytes(32), b => ALNUM[b % ALNUM.length]).join('')

function attr (type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(4)
  head.writeUInt16BE(type, 0)
  head.writeUInt16BE(value.length, 2)
  return Buffer.concat([head, value, Buffer.alloc((4 - value.length % 4) % 4)])
}

/** Username `ufrag:ufrag` (WebRTC-direct uses the ufrag as password too), priority, ICE-CONTROLLING, integrity and fingerprint. */
export function stunRequest (u: string = randomUfrag()): Buffer {
  const tid = randomBytes(12)
  const body = Buffer.concat([attr(0x0006, Buffer.from(`${u}:${u}`)), attr(0x0024, Buffer.from([0x6e, 0x00, 0x1e, 0xff])), attr(0x802a, randomBytes(8))])
  const header = (len: number): Buffer => {
    const h = Buffer.alloc(20)
    h.writeUInt16BE(0x0001, 0)
    h.writeUInt16BE(len, 2)
    h.writeUInt32BE(0x2112a442, 4)
    tid.copy(h, 8)
    return h
  }
  const integrity = attr(0x0008, createHmac('sha1', u).update(Buffer.concat([header(body.length + 24), body])).digest())
  const withIntegrity = Buffer.concat([header(body.length + 24 + 8), body, integrity])
  const fingerprint = Buffer.alloc(4)
  fingerprint.writeUInt32BE((crc32(withIntegrity) ^ 0x5354554e) >>> 0, 0)
  return Buffer.concat([withIntegrity, attr(0x8028, fingerprint)])
}
