// Content-addressed artifact storage on local disk: `<root>/<digest>.mjs`. The `.mjs` suffix lets
// Node import an artifact straight from the store as ESM. Reads re-hash, so a corrupted or
// tampered file is never handed to a capsid.
import { mkdir, readFile, writeFile, rename, stat, rm, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { sha256Hex, DEFAULT_MAX_ARTIFACT_BYTES } from './build.ts'
import { CorruptArtifactError, InvalidDigestError, ArtifactTooLargeError } from './errors.ts'

const DIGEST = /^[0-9a-f]{64}$/

function checkDigest (digest: string): void {
  if (!DIGEST.test(digest)) throw new InvalidDigestError(`not a sha256 hex digest: ${JSON.stringify(digest).slice(0, 80)}`)
}

/**
 * Writes `bytes` as `<dir>/<name>`, read-only, whole or not at all: a temp file beside it, flushed,
 * then renamed over it. A write that fails (a full disk) removes the temp file and throws.
 */
export async function writeWhole (dir: string, name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name)
  const tmp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    await writeFile(tmp, bytes, { mode: 0o444, flush: true })
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  return path
}

/** Write `bytes` as `<dir>/<digest>.mjs` atomically (writeWhole); returns path and digest. */
export async function writeArtifact (dir: string, bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<{ path: string, digest: string }> {
  options.signal?.throwIfAborted()
  const digest = sha256Hex(bytes)
  await mkdir(dir, { recursive: true })
  return { path: await writeWhole(dir, `${digest}.mjs`, bytes), digest }
}

export interface ArtifactStoreOptions {
  maxBytes?: number
}

export class ArtifactStore {
  readonly rootDir: string
  readonly maxBytes: number

  constructor (rootDir: string, options: ArtifactStoreOptions = {}) {
    this.rootDir = rootDir
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_ARTIFACT_BYTES
  }

  pathOf (digest: string): string {
    checkDigest(digest)
    return join(this.rootDir, `${digest}.mjs`)
  }

  async put (bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<string> {
    if (bytes.byteLength > this.maxBytes) throw new ArtifactTooLargeError(bytes.byteLength, this.maxBytes)
    const digest = sha256Hex(bytes)
    if (await this.has(digest, options)) return digest
    await writeArtifact(this.rootDir, bytes, options)
    return digest
  }

  async has (digest: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    options.signal?.throwIfAborted()
    try {
      return (await stat(this.pathOf(digest))).isFile()
    } catch (err: any) {
      if (err?.code === 'ENOENT') return false
      throw err
    }
  }

  /** The verified bytes, or undefined when absent. A file that no longer matches its name is an error. */
  async get (digest: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array | undefined> {
    options.signal?.throwIfAborted()
    const path = this.pathOf(digest)
    let bytes: Uint8Array
    try {
      const info = await stat(path)
      if (info.size > this.maxBytes) throw new ArtifactTooLargeError(info.size, this.maxBytes)
      bytes = new Uint8Array(await readFile(path, { signal: options.signal }))
    } catch (err: any) {
      if (err?.code === 'ENOENT') return undefined
      throw err
    }
    const actual = sha256Hex(bytes)
    if (actual !== digest) throw new CorruptArtifactError(digest, actual)
    return bytes
  }

  /** Remove an artifact (e.g. one that failed verification). */
  async delete (digest: string): Promise<void> {
    const path = this.pathOf(digest)
    await chmod(path, 0o644).catch(() => {})
    await rm(path, { force: true })
  }
}
