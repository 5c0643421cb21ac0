// The claim acceptor's durable state: `<data>/claims/acceptor.json`, written to a temp file, fsynced
// and renamed before `save` resolves, so a voter that restarts never forgets a promise it made (two
// owners of one epoch would become possible). Saves are serialised; an unreadable file fails the
// load by name rather than starting from nothing.
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { CellError } from '../../core/errors.ts'
import type { AcceptorState, AcceptorStore } from '../../core/claims/index.ts'

/** The acceptor state file exists but is not what this node wrote: voting from nothing would be unsafe. */
export class AcceptorStateCorruptError extends CellError { static override readonly errorName = 'AcceptorStateCorruptError' }

const MAX_STATE_BYTES = 16 * 1024 * 1024

export class FileAcceptorStore implements AcceptorStore {
  private readonly file: string
  private tail: Promise<void> = Promise.resolve()

  constructor (dataDir: string) {
    this.file = join(dataDir, 'claims', 'acceptor.json')
  }

  async load (): Promise<AcceptorState | null> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw err
    }
    if (text.length > MAX_STATE_BYTES) throw new AcceptorStateCorruptError(`${this.file} is larger than ${MAX_STATE_BYTES} bytes`)
    try {
      const state = JSON.parse(text) as AcceptorState
      if (state === null || typeof state !== 'object' || typeof state.claims !== 'object' || state.claims === null) throw new Error('no claims table')
      return state
    } catch (err) {
      throw new AcceptorStateCorruptError(`${this.file} is not an acceptor state: ${(err as Error).message} (move it away only if this node never voted)`, { cause: err })
    }
  }

  async save (state: AcceptorState): Promise<void> {
    const text = JSON.stringify(state)
    const run = this.tail.then(async () => {
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 })
      const tmp = `${this.file}.tmp`
      const fh = await open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(text)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, this.file)
    })
    this.tail = run.catch(() => {})
    await run
  }
}
