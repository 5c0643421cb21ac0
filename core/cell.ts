// The programming model: a cell's entry module default-exports `defineCell({...handlers})`.
// Callers get a typed proxy from `mesh.remote<typeof Cell>('name')` whose methods mirror the handlers.

export interface CallerInfo {
  /** Peer id the Noise channel authenticated. */
  peerId: string
  /** Hex ed25519 public key of the authority that chained the caller's certificate. */
  authority: string
  roles: string[]
  /**
   * When the server's check of the caller's chain stops holding (ms on the server's clock: the
   * chain's earliest notAfter plus the verifier's skew); the synapse closes the channel then.
   * Absent: no expiry (a public cell's anonymous caller).
   */
  expiresMs?: number
}

export interface CellContext {
  /** Aborted when the caller cancels, the deadline passes or the replica drains. */
  signal: AbortSignal
  /** Absolute deadline, ms since epoch. */
  deadlineMs: number
  /** W3C traceparent of the call, when the caller sent one. */
  traceparent?: string
  caller?: CallerInfo
}

export type Handler = (req: any, ctx: CellContext) => unknown

export interface CellOptions<H> {
  /** Methods safe to retry on another replica when the first dies mid-call. */
  idempotent?: Array<keyof H & string>
}

export const CELL_META = '__cell' as const

export type CellDefinition<H extends Record<string, Handler>> = H & {
  readonly [CELL_META]: { idempotent: string[] }
}

export function defineCell<H extends Record<string, Handler>> (handlers: H, options: CellOptions<H> = {}): CellDefinition<H> {
  for (const [name, fn] of Object.entries(handlers)) {
    if (typeof fn !== 'function') throw new TypeError(`cell handler "${name}" is not a function`)
  }
  return Object.assign(Object.create(null), handlers, {
    [CELL_META]: { idempotent: [...(options.idempotent ?? [])] }
  })
}

export interface CallOptions {
  signal?: AbortSignal
  /** Relative timeout; default comes from the mesh. */
  timeoutMs?: number
  traceparent?: string
}

type Unwrap<T> = T extends AsyncIterable<infer I> ? AsyncIterable<I> : Awaited<T>

/** The typed client of a cell: every handler becomes `(req, opts?) => Promise<result>`. */
export type Remote<T> = {
  [K in keyof T as K extends typeof CELL_META ? never : K]:
  T[K] extends (req: infer R, ctx: any) => infer O
    ? (req: R, opts?: CallOptions) => Promise<Unwrap<O>>
    : never
}
