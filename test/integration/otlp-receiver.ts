// A tiny OTLP/HTTP (JSON) trace receiver for tests: collects the spans POSTed to /v1/traces and
// answers CORS preflight, so a browser tab's OTLP exporter can send to it too.
import { createServer, type Server } from 'node:http'

export interface ReceivedSpan {
  service: string
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  kind: number
  startNs: bigint
  endNs: bigint
  status: { code: number, message?: string }
}

interface OtlpJson {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string, value?: { stringValue?: string } }> }
    scopeSpans?: Array<{ spans?: Array<{ traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number, startTimeUnixNano: string | number, endTimeUnixNano: string | number, status?: { code?: number, message?: string } }> }>
  }>
}

const MAX_BODY = 4 * 1024 * 1024

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = []
  /** Requests that were not a parseable OTLP JSON export. */
  rejected = 0
  private server: Server | undefined
  url = ''

  async start (host = '127.0.0.1'): Promise<string> {
    this.server = createServer((req, res) => {
      res.setHeader('Access-Control-Allow-Origin', '*')
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS')
      res.setHeader('Access-Control-Allow-Headers', '*')
      if (req.method === 'OPTIONS') { res.writeHead(204).end(); return }
      if (req.method !== 'POST' || req.url !== '/v1/traces') { res.writeHead(404).end(); return }
      const chunks: Buffer[] = []
      let size = 0
      req.on('data', (c: Buffer) => { size += c.length; if (size <= MAX_BODY) chunks.push(c) })
      req.on('end', () => {
        try {
          this.collect(JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpJson)
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
        } catch {
          this.rejected++
          res.writeHead(400).end()
        }
      })
    })
    await new Promise<void>((resolve) => { this.server!.listen(0, host, resolve) })
    this.url = `http://${host}:${(this.server.address() as { port: number }).port}/v1/traces`
    return this.url
  }

  async stop (): Promise<void> {
    this.server?.closeAllConnections()
    await new Promise<void>((resolve) => { if (this.server === undefined) resolve(); else this.server.close(() => { resolve() }) })
  }

  private collect (body: OtlpJson): void {
    for (const rs of body.resourceSpans ?? []) {
      const service = rs.resource?.attributes?.find(a => a.key === 'service.name')?.value?.stringValue ?? ''
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            service,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? '',
            name: s.name,
            kind: s.kind,
            startNs: BigInt(s.startTimeUnixNano),
            endNs: BigInt(s.endTimeUnixNano),
            status: { code: s.status?.code ?? 0, ...(s.status?.message !== undefined ? { message: s.status.message } : {}) }
          })
        }
      }
    }
  }
}

/** OTLP span kinds. */
export const KIND = { internal: 1, server: 2, client: 3 } as const
/** OTLP status codes. */
export const STATUS = { unset: 0, ok: 1, error: 2 } as const

/** The node's server span (child of `client`) and the replica-host child span of one call's trace. */
export function callTrace (spans: ReceivedSpan[], client: ReceivedSpan): { server: ReceivedSpan, capsid: ReceivedSpan } | undefined {
  const server = spans.find(s => s.traceId === client.traceId && s.kind === KIND.server && s.parentSpanId === client.spanId)
  if (server === undefined) return undefined
  const capsid = spans.find(s => s.traceId === client.traceId && s.kind === KIND.internal && s.parentSpanId === server.spanId)
  return capsid === undefined ? undefined : { server, capsid }
}
