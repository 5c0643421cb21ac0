// Shared by the rollout tests: staged copies of the `versioned` fixture (one artifact per tag), a
// bounded call loop that records every answer and failure, and the "only this digest runs" check.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Mesh } from '../../core/mesh/index.ts'
import { stageCell } from './stage-cell.ts'

const fixture = join(import.meta.dirname, 'fixtures', 'versioned')
export const CELL = 'versioned'

/** Bounds of the call loop: it stops at whichever comes first. */
const MAX_CALLS = 20_000
const CALL_LOOP_MS = 90_000

/** Stage a copy of the fixture whose `version()` returns `tag` (a different artifact per tag). */
export async function stageVersion (root: string, tag: string, authority: string): Promise<string> {
  const dir = await stageCell(fixture, join(root, tag), authority)
  const file = join(dir, 'cell.ts')
  const source = await readFile(file, 'utf8')
  const changed = source.replace("const VERSION = 'v1'", `const VERSION = '${tag}'`)
  if (changed === source && tag !== 'v1') throw new Error('fixture has no VERSION line to change')
  await writeFile(file, changed)
  return dir
}

/** Calls `version()` back to back until stopped; counts successes per answer and failures by name. */
export class CallLoop {
  calls = 0
  readonly answers = new Map<string, number>()
  readonly failures: string[] = []
  private stopped = false
  private readonly done: Promise<void>

  constructor (mesh: Mesh) {
    const deadline = Date.now() + CALL_LOOP_MS
    this.done = (async () => {
      while (!this.stopped && this.calls < MAX_CALLS && Date.now() < deadline) {
        this.calls++
        try {
          const v = await mesh.call<string>(CELL, 'version', null, { timeoutMs: 15_000 })
          this.answers.set(v, (this.answers.get(v) ?? 0) + 1)
        } catch (err) {
          if (this.failures.length < 100) this.failures.push(`${(err as Error).name}: ${(err as Error).message}`)
        }
        // Pace the loop a little so two CI cores still run the fleet; this is not synchronisation.
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    })()
  }

  async stop (): Promise<this> {
    this.stopped = true
    await this.done
    return this
  }
}

/** Ready replicas in `mesh`'s view, and whether anything else still runs (starting or ready). */
export function onlyRunning (mesh: Mesh, digest: string, count: number): true | undefined {
  const live = mesh.view.liveInstances(CELL).filter(i => i.state === 'starting' || i.state === 'ready')
  const ready = live.filter(i => i.state === 'ready' && i.digest === digest)
  return ready.length >= count && live.every(i => i.digest === digest) ? true : undefined
}

