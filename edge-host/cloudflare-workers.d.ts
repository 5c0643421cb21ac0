// The few types of workerd's `cloudflare:workers` module the edge uses (the full set is in
// @cloudflare/workers-types, whose globals clash with the DOM lib the rest of the project checks with).
declare module 'cloudflare:workers' {
  export interface DurableObjectStorage {
    get<T = unknown>(key: string): Promise<T | undefined>
    put(key: string, value: unknown): Promise<void>
    delete(key: string): Promise<boolean>
    getAlarm(): Promise<number | null>
    setAlarm(scheduledTimeMs: number | Date): Promise<void>
    deleteAlarm(): Promise<void>
  }
  export interface DurableObjectState {
    readonly id: { toString(): string }
    readonly storage: DurableObjectStorage
    waitUntil(promise: Promise<unknown>): void
    blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>
  }
  export interface DurableObjectStub { fetch(request: Request): Promise<Response> }
  export interface DurableObjectNamespace {
    idFromName(name: string): unknown
    get(id: unknown): DurableObjectStub
  }
  export abstract class DurableObject<Env = unknown> {
    protected ctx: DurableObjectState
    protected env: Env
    constructor (ctx: DurableObjectState, env: Env)
    fetch?(request: Request): Promise<Response>
    alarm?(): Promise<void>
  }
}
