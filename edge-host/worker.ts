// The Worker entry: every request goes to the one Durable Object that holds the routing node (one
// libp2p identity, one set of connections, one fleet view). The node is created inside the first
// request or alarm, never at global scope (workerd forbids I/O there, and an evicted object must
// rebuild it anyway); an alarm every few seconds re-checks the connections, since outbound
// WebSockets cannot hibernate and nothing else would wake the object to re-dial.
import './workerd-shims.ts'
import { DurableObject, type DurableObjectNamespace } from 'cloudflare:workers'
import { parseEdgeConfig, type EdgeConfig, type EdgeEnv } from './config.ts'
import { EdgeRouter } from './edge-router.ts'
import { errorResponse, handleHttp, readBodyBytes, type HttpLimits } from './http-api.ts'
import { CONFIG_DEFAULTS, CONFIG_LIMITS } from './config.ts'

export interface WorkerEnv extends EdgeEnv {
  EDGE_NODE: DurableObjectNamespace
}

/** How often the alarm re-checks the node's connections. */
const ALARM_EVERY_MS = 5_000

export class EdgeNode extends DurableObject<WorkerEnv> {
  private router: Promise<EdgeRouter> | undefined
  private config: EdgeConfig | undefined

  private async node (): Promise<EdgeRouter> {
    this.router ??= (async () => {
      this.config ??= parseEdgeConfig(this.env)
      const router = await EdgeRouter.create({ config: this.config, store: this.ctx.storage })
      await router.start()
      await this.ctx.storage.setAlarm(Date.now() + ALARM_EVERY_MS)
      return router
    })()
    // A failed start (bad config) is not cached: the next request tries again and says why.
    return await this.router.catch((err: unknown) => { this.router = undefined; throw err })
  }

  private limits (): HttpLimits {
    const c = this.config
    return c !== undefined
      ? { maxBodyBytes: c.maxBodyBytes, defaultDeadlineMs: c.defaultDeadlineMs, maxDeadlineMs: c.maxDeadlineMs }
      : { ...CONFIG_DEFAULTS }
  }

  override async fetch (request: Request): Promise<Response> {
    try {
      this.config ??= parseEdgeConfig(this.env)
    } catch (err) {
      return errorResponse(err)
    }
    return await handleHttp(request, async () => await this.node(), this.limits())
  }

  override async alarm (): Promise<void> {
    try {
      const router = await this.node()
      router.alarm()
    } finally {
      await this.ctx.storage.setAlarm(Date.now() + ALARM_EVERY_MS)
    }
  }
}

/** The body limit the Worker in front enforces: MAX_BODY_BYTES when it is a sane number, else the default (the object reports a bad value by name). */
function bodyLimitOf (env: EdgeEnv): number {
  const n = Number(env.MAX_BODY_BYTES)
  return Number.isSafeInteger(n) && n >= 1 && n <= CONFIG_LIMITS.maxBodyBytes ? n : CONFIG_DEFAULTS.maxBodyBytes
}

export default {
  async fetch (request: Request, env: WorkerEnv): Promise<Response> {
    const stub = env.EDGE_NODE.get(env.EDGE_NODE.idFromName('edge'))
    if (request.body === null) return await stub.fetch(request)
    // The body is read here, bounded, and handed on whole: a body streamed on to the object and
    // refused there before it was read fails the stream in this Worker after the answer left.
    let body: Uint8Array<ArrayBuffer>
    try {
      body = await readBodyBytes(request, bodyLimitOf(env))
    } catch (err) {
      return errorResponse(err)
    }
    return await stub.fetch(new Request(request.url, { method: request.method, headers: request.headers, body }))
  }
}
