// Shared helpers for the capsid integration tests (real processes, real sandboxes).
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { buildCell } from '../ribosome/build.ts'
import { startCapsid } from './start-capsid.ts'
import type { Capsid, CapsidInit } from './capsid.ts'

export const projectRoot = resolve(import.meta.dirname, '../..')
const enc = new TextEncoder()
const dec = new TextDecoder()
export const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))
export const unjson = (b: Uint8Array): any => b.byteLength === 0 ? undefined : JSON.parse(dec.decode(b))

/** Build `main` (relative to `dir`) into a temp dir; returns the artifact path. */
export async function buildTo (tmp: string, dir: string, main: string, name: string): Promise<string> {
  const { artifact, digest } = await buildCell(dir, { main })
  const path = join(tmp, `${name}-${digest.slice(0, 12)}.mjs`)
  await writeFile(path, artifact)
  return path
}

/** Tracks every capsid and temp dir a suite creates so afterEach/afterAll can release them all. */
export class Harness {
  tmp = ''
  private readonly capsids = new Set<Capsid>()
  /** Instances started so far; instance ids are `i<seq>`. */
  seq = 0

  async setup (): Promise<void> {
    // Short: the instance's Unix socket path lives under it.
    this.tmp = await mkdtemp('/tmp/cx-')
  }

  async start (init: Partial<CapsidInit> & { artifactPath: string, sandbox: 'bwrap' | 'process', signal?: AbortSignal }): Promise<{ capsid: Capsid, dataDir: string }> {
    const instanceId = `i${++this.seq}`
    const dataDir = join(this.tmp, 'data', instanceId)
    await mkdir(dataDir, { recursive: true })
    const { signal: _signal, ...rest } = init
    const capsid = await startCapsid({ cell: 'test', instanceId, runDir: join(this.tmp, 'run'), dataDir, startTimeoutMs: 15_000, ...rest }, { signal: init.signal ?? AbortSignal.timeout(20_000) })
    this.capsids.add(capsid)
    return { capsid, dataDir }
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.capsids].map(async c => await c.stop({ drainMs: 200, killMs: 500 })))
    this.capsids.clear()
  }

  async teardown (): Promise<void> {
    await this.stopAll()
    if (this.tmp !== '') await rm(this.tmp, { recursive: true, force: true })
  }
}

/** Resolve when the replica logs a line matching `re` (already logged lines count), else reject after timeoutMs. */
export async function waitForLog (capsid: Capsid, re: RegExp, timeoutMs = 5000): Promise<string> {
  const seen = capsid.logs().find(l => re.test(l))
  if (seen !== undefined) return seen
  return await new Promise((resolve, reject) => {
    const onLog = (e: Event): void => {
      const line = (e as CustomEvent).detail.line as string
      if (re.test(line)) { done(); resolve(line) }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; logs:\n${capsid.logs().join('\n')}`)) }, timeoutMs)
    const done = (): void => { clearTimeout(timer); capsid.removeEventListener('log', onLog) }
    capsid.addEventListener('log', onLog)
  })
}
