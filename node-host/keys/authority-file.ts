// The authority private key on disk (`cell keygen` writes it, `cell publish` and `cell grant`
// read it): one line `cell-authority-v1:<base64url seed>`, mode 0600, never overwritten by accident.
import { deserializeAuthorityKey, serializeAuthorityKey, type AuthorityKey } from '../../core/identity/authority.ts'
import { MalformedRecordError } from '../../core/identity/errors.ts'
import { MalformedKeyFileError } from './errors.ts'
import { readSecretFile, writeSecretFile, type WriteSecretOptions } from './secret-file.ts'

export async function writeAuthorityKey (path: string, key: AuthorityKey, options: WriteSecretOptions = {}): Promise<void> {
  await writeSecretFile(path, new TextEncoder().encode(serializeAuthorityKey(key) + '\n'), options)
}

export async function readAuthorityKey (path: string, options: { signal?: AbortSignal } = {}): Promise<AuthorityKey> {
  const bytes = await readSecretFile(path, options)
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch (err) {
    throw new MalformedKeyFileError(`${path} is not text`, { cause: err })
  }
  try {
    return await deserializeAuthorityKey(text, options)
  } catch (err) {
    if (err instanceof MalformedRecordError) throw new MalformedKeyFileError(`${path} does not hold an authority key: ${err.message}`, { cause: err })
    throw err
  }
}
