// A node's private directories for Unix sockets (replicas' capsid sockets, the WebTransport
// sidecar's bridge). They live under /tmp, not in the data dir, because a socket's path must stay
// under 108 bytes. Each start makes a fresh one with an unpredictable name (mkdtemp: mode 0700, made
// by this process, so another local user cannot create it first or point it elsewhere: the node
// runs as root and writes, copies and chowns files there). Its path is written in the data dir, so
// that the next start removes what a killed process (SIGKILL, OOM, power loss) left behind: a node
// restarted in a crash loop would otherwise leave one per start.
import { lstat, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { logger } from '@libp2p/logger'

const log = logger('cell:run-dir')

/** Where the paths of the current run directories are recorded, inside the data dir. */
const RECORD_DIR = 'run'

export interface RunDir {
  readonly path: string
  /** Removes the directory and its record (idempotent). */
  remove: () => Promise<void>
}

export interface RunDirOptions {
  /** Where the directory is made (default /tmp: short paths for sockets). */
  parent?: string
}

/**
 * Opens `cell-<name>-XXXXXX` under /tmp for the node whose data dir is `dataDir`, after removing the
 * one a previous process of this node recorded and did not remove. A recorded path is removed only
 * if it is what this code makes: directly in `parent`, named `cell-<name>-` and six characters, a
 * directory (not a link) owned by this process's user. Anything else in the record is ignored.
 */
export async function openRunDir (dataDir: string, name: string, options: RunDirOptions = {}): Promise<RunDir> {
  if (!/^[a-z]{1,16}$/.test(name)) throw new Error(`run dir name must be 1-16 lowercase letters: ${name}`)
  const parent = options.parent ?? '/tmp'
  const prefix = `cell-${name}-`
  const recordDir = join(dataDir, RECORD_DIR)
  const record = join(recordDir, `${name}.path`)
  const left = await readFile(record, 'utf8').catch(() => undefined)
  if (left !== undefined) await removeLeftover(left.trim(), parent, prefix)
  const path = await mkdtemp(join(parent, prefix))
  await mkdir(recordDir, { recursive: true, mode: 0o700 })
  const tmp = `${record}.${process.pid}.tmp`
  await writeFile(tmp, path + '\n', { mode: 0o600 })
  await rename(tmp, record)
  let removed = false
  return {
    path,
    remove: async () => {
      if (removed) return
      removed = true
      await rm(path, { recursive: true, force: true })
      // Only this run's record: a newer process of the same node may have written its own since.
      if ((await readFile(record, 'utf8').catch(() => '')).trim() === path) await rm(record, { force: true })
    }
  }
}

async function removeLeftover (path: string, parent: string, prefix: string): Promise<void> {
  if (dirname(path) !== parent || !basename(path).startsWith(prefix) || basename(path).length !== prefix.length + 6) {
    log.error('ignoring a run dir record that names %s (not a directory this node makes under %s)', path, parent)
    return
  }
  const st = await lstat(path).catch(() => undefined)
  if (st === undefined) return
  if (!st.isDirectory() || st.isSymbolicLink() || st.uid !== process.getuid?.()) {
    log.error('not removing %s left by a previous run: not a directory of this user', path)
    return
  }
  await rm(path, { recursive: true, force: true })
  log('removed %s, left by a previous run of this node', path)
}
