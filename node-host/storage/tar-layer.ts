// The plain image's layer: a volume's files as one tar (node-tar), bounded both ways.
//
// Writing walks the tree itself (sorted, so the same files give the same tar apart from times;
// at most `maxEntries` entries; directories, regular files and symlinks; sockets and devices
// skipped) and hands node-tar the list with noDirRecurse. Entries are `portable` (no owner names
// or ids): a replica's uid differs from node to node, so the node chowns a restored volume to the
// replica it starts.
//
// Extracting accepts only directories, files, symlinks and hard links (node-tar strips absolute
// paths and `..`, and does not write through symlinks), at most `maxEntries` entries and
// `maxBytes` of file data, into a directory the caller made fresh; any refusal aborts the extract
// with SnapshotLimitError and the caller discards the directory.
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { create as tarCreate, extract as tarExtract } from 'tar'
import type { ReadEntry } from 'tar'
import { SnapshotCorruptError, SnapshotLimitError } from './errors.ts'

export interface TarLimits {
  /** Files, directories and links in one archive. */
  maxEntries: number
  /** Bytes of file data in one archive (restores: the claim). */
  maxBytes: number
}

export interface TarListing {
  /** Relative paths, parents before children, sorted. */
  paths: string[]
  /** Bytes of regular-file data. */
  fileBytes: number
}

/** Walk `dir` (not following symlinks) and list what a layer holds; SnapshotLimitError past the limits. */
export async function listTree (dir: string, limits: TarLimits): Promise<TarListing> {
  const paths: string[] = []
  let fileBytes = 0
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(rel === '' ? dir : join(dir, rel))).sort()
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`
      const st = await lstat(join(dir, path))
      if (!st.isFile() && !st.isDirectory() && !st.isSymbolicLink()) continue
      if (paths.length >= limits.maxEntries) throw new SnapshotLimitError(`the volume holds more than ${limits.maxEntries} entries`)
      paths.push(path)
      if (st.isFile()) {
        fileBytes += st.size
        if (fileBytes > limits.maxBytes) throw new SnapshotLimitError(`the volume holds more than ${limits.maxBytes} bytes`)
      }
      if (st.isDirectory()) await walk(path)
    }
  }
  await walk('')
  return { paths, fileBytes }
}

/** An uncompressed tar of `listing.paths` under `dir`. */
export function tarStream (dir: string, listing: TarListing): AsyncIterable<Uint8Array> {
  // An empty volume is the archive of its root directory alone: an archive of no entries at all
  // is refused by node-tar (and by the restore) as not a tar.
  const paths = listing.paths.length === 0 ? ['.'] : listing.paths
  return tarCreate({ cwd: dir, portable: true, noDirRecurse: true, follow: false, strict: true }, paths) as unknown as AsyncIterable<Uint8Array>
}

/** Absolute, or climbing out with `..` (node-tar would strip these; we refuse the archive instead). */
function unsafePath (path: string): boolean {
  return path.startsWith('/') || path.split(/[/\\]/).includes('..')
}

const ALLOWED = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link'])

/** Extract an uncompressed tar stream into `dest` (an empty directory). */
export async function extractTar (source: AsyncIterable<Uint8Array>, dest: string, limits: TarLimits): Promise<{ entries: number, fileBytes: number }> {
  let entries = 0
  let fileBytes = 0
  let refusal: Error | undefined
  const unpack = tarExtract({
    cwd: dest,
    strict: true,
    preserveOwner: false,
    // Bounded PAX/long-name headers too (node-tar's default is 1 MiB).
    maxMetaEntrySize: 64 * 1024,
    filter: (path: string, entry: ReadEntry | { type?: string, size?: number, linkpath?: string }) => {
      if (refusal !== undefined) return false
      const type = 'type' in entry ? String(entry.type) : ''
      const link = type === 'Link' && 'linkpath' in entry ? String(entry.linkpath ?? '') : ''
      entries++
      fileBytes += type === 'File' || type === 'OldFile' || type === 'ContiguousFile' ? Number(entry.size ?? 0) : 0
      if (unsafePath(path) || unsafePath(link)) refusal = new SnapshotLimitError(`the archive holds an entry outside the volume (${JSON.stringify(path.slice(0, 200))})`)
      else if (!ALLOWED.has(type)) refusal = new SnapshotLimitError(`the archive holds a ${type} entry; only files, directories and links are restored`)
      else if (entries > limits.maxEntries) refusal = new SnapshotLimitError(`the archive holds more than ${limits.maxEntries} entries`)
      else if (fileBytes > limits.maxBytes) refusal = new SnapshotLimitError(`the archive holds more than ${limits.maxBytes} bytes`)
      // No abort: node-tar would stop without settling writes in flight. Skip the rest instead;
      // the caller bounds the bytes still read, and the fresh directory is discarded after.
      return refusal === undefined
    }
  })
  const settled = new Promise<Error | undefined>(resolve => {
    unpack.on('finish', () => { resolve(undefined) })
    unpack.on('error', (err: Error) => { resolve(err) })
  })
  try {
    for await (const chunk of source) {
      if (!unpack.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
        await Promise.race([new Promise<void>(resolve => unpack.once('drain', () => { resolve() })), settled])
      }
    }
  } catch (err) {
    // The source failed (digest, size): let node-tar settle what it started, then report the source's error.
    unpack.end()
    await settled
    throw err
  }
  unpack.end()
  const failed = await settled
  if (refusal !== undefined) throw refusal
  if (failed !== undefined) throw new SnapshotCorruptError(`the layer is not a sound tar archive: ${failed.message}`, undefined, { cause: failed })
  return { entries, fileBytes }
}
