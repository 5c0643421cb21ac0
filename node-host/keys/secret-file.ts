// Small secret files (private keys): created 0600 in a 0700 directory, made and replaced atomically, and
// refused on read when group or others could read them — the same rule ssh applies to id_ed25519.
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { dirname, join, basename } from 'node:path'
import { KeyFileExistsError, KeyFileNotFoundError, KeyFilePermissionError, MalformedKeyFileError } from './errors.ts'

/** Key files are tiny; anything bigger is not one of ours. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024

export interface WriteSecretOptions {
  /** Replace an existing file (atomically, via rename). */
  force?: boolean
  signal?: AbortSignal
}

function code (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code
}

async function writeNew (path: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  let handle: FileHandle
  try {
    // 'wx' = O_CREAT|O_EXCL: never follows or truncates something that appeared meanwhile.
    handle = await open(path, 'wx', 0o600)
  } catch (err) {
    if (code(err) === 'EEXIST') throw new KeyFileExistsError(`${path} already exists; pass force to replace it`, { cause: err })
    throw err
  }
  try {
    // The umask can only clear bits, but be exact rather than rely on it.
    await handle.chmod(0o600)
    await handle.writeFile(data, { signal })
    await handle.sync()
  } catch (err) {
    await handle.close().catch(() => {})
    await unlink(path).catch(() => {})
    throw err
  }
  await handle.close()
}

export async function writeSecretFile (path: string, data: Uint8Array, options: WriteSecretOptions = {}): Promise<void> {
  options.signal?.throwIfAborted()
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  options.signal?.throwIfAborted()
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  await writeNew(tmp, data, options.signal)
  if (options.force !== true) {
    // A new file appears whole or not at all: link() fails if the name exists. (Created in place,
    // a second process racing to make the same key found it empty and called it malformed.)
    try {
      await link(tmp, path)
    } catch (err) {
      if (code(err) === 'EEXIST') throw new KeyFileExistsError(`${path} already exists; pass force to replace it`, { cause: err })
      throw err
    } finally {
      await unlink(tmp).catch(() => {})
    }
    return
  }
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}

export async function readSecretFile (path: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
  options.signal?.throwIfAborted()
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if (code(err) === 'ENOENT') throw new KeyFileNotFoundError(`no key file at ${path}`, { cause: err })
    throw err
  }
  try {
    // fstat the opened file, not the path, so the checked file is the file read.
    const st = await handle.stat()
    if (!st.isFile()) throw new MalformedKeyFileError(`${path} is not a regular file`)
    if ((st.mode & 0o077) !== 0) {
      throw new KeyFilePermissionError(`${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; run chmod 600 ${path}`)
    }
    if (st.size > MAX_SECRET_FILE_BYTES) throw new MalformedKeyFileError(`${path} is ${st.size} bytes, larger than any key file`)
    const data = await handle.readFile({ signal: options.signal })
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  } finally {
    await handle.close()
  }
}
