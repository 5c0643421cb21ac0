// One WebTransport bidirectional stream as the node sees it: a libp2p stream whose bytes travel as
// bridge frames to the sidecar. Sending stops when the sidecar's credit for the stream is spent
// (it grants more as the browser takes the bytes); received bytes are granted back to the sidecar
// once libp2p has taken them, so a reader that pauses stops the browser at the QUIC layer.
import { AbstractStream, type AbstractStreamInit, type SendResult } from '@libp2p/utils'

type SendList = Parameters<AbstractStream['sendData']>[0]
import { BridgeFrameError, INITIAL_CREDIT_BYTES, MAX_PAYLOAD_BYTES } from './bridge-frames.ts'

/** What a stream needs from the bridge it belongs to. */
export interface StreamLink {
  data: (bytes: Uint8Array) => void
  fin: () => void
  reset: () => void
  credit: (bytes: number) => void
  /** The stream is done in both directions: forget it. */
  release: () => void
  /** The Unix socket holds more unsent bytes than it should: wait for `whenUncongested`. */
  congested: () => boolean
  whenUncongested: (resume: () => void) => void
}

export class BridgeStream extends AbstractStream {
  readonly streamId: number
  private readonly link: StreamLink
  private sendCredit = INITIAL_CREDIT_BYTES
  /** Bytes taken from the sidecar while paused, granted back on resume. */
  private owed = 0
  /** Bytes the sidecar may still send before we grant more; beyond it is a protocol error. */
  private recvAllowance = INITIAL_CREDIT_BYTES

  constructor (init: AbstractStreamInit & { streamId: number, link: StreamLink }) {
    super(init)
    this.streamId = init.streamId
    this.link = init.link
    this.addEventListener('close', () => { this.link.release() })
  }

  sendData (data: SendList): SendResult {
    let sent = 0
    // Credit bounds each stream; the socket's own buffer bounds them all together.
    if (this.link.congested()) {
      this.link.whenUncongested(() => { if (this.writableNeedsDrain) this.safeDispatchEvent('drain') })
      return { sentBytes: 0, canSendMore: false }
    }
    while (sent < data.byteLength && this.sendCredit > 0) {
      const n = Math.min(data.byteLength - sent, MAX_PAYLOAD_BYTES, this.sendCredit)
      this.link.data(data.subarray(sent, sent + n))
      this.sendCredit -= n
      sent += n
    }
    // Out of credit with bytes left: wait for a credit frame ('drain'). All sent: more may come (the
    // next call sends what the credit allows, possibly nothing, and then waits).
    return { sentBytes: sent, canSendMore: sent === data.byteLength }
  }

  sendReset (): void { this.link.reset() }
  sendPause (): void {}
  sendResume (): void {
    if (this.owed > 0) { this.grant(this.owed); this.owed = 0 }
  }

  private grant (bytes: number): void {
    this.recvAllowance += bytes
    this.link.credit(bytes)
  }

  async sendCloseWrite (): Promise<void> { this.link.fin() }
  // The frames have no "stop sending": bytes that still arrive are dropped by onData and granted back.
  async sendCloseRead (): Promise<void> {}

  /** Bytes from the browser. */
  onBridgeData (bytes: Uint8Array): void {
    if (bytes.byteLength > this.recvAllowance) throw new BridgeFrameError(`sidecar overran its credit on stream ${this.streamId}`)
    this.recvAllowance -= bytes.byteLength
    this.onData(bytes)
    if (this.readStatus === 'paused') this.owed += bytes.byteLength
    else if (this.status === 'open') this.grant(bytes.byteLength)
  }

  /** The sidecar grants more bytes; resumes a writer that ran out. */
  onBridgeCredit (bytes: number): void {
    this.sendCredit += bytes
    if (this.sendCredit > 16 * INITIAL_CREDIT_BYTES) throw new BridgeFrameError(`sidecar granted too much credit on stream ${this.streamId}`)
    if (this.writableNeedsDrain) this.safeDispatchEvent('drain')
  }

  /** The browser ended its side of the stream. */
  onBridgeFin (): void { this.onRemoteCloseWrite() }
  onBridgeReset (): void { this.onRemoteReset() }
}
