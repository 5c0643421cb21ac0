// `cell keygen`: make an authority key pair. The private key goes to a 0600 file (never printed);
// stdout carries only the public half, as the exact TOML to paste into Cell.toml, so
// `cell keygen >> Cell.toml` works and nothing secret ever reaches a terminal scrollback or pipe.
import { resolve } from 'node:path'
import { generateAuthority } from '../../core/identity/index.ts'
import { KeyFileExistsError, KeyFileNotFoundError, readAuthorityKey, writeAuthorityKey } from '../keys/index.ts'
import { defaultAuthorityKeyPath, parseCommand, usageFailure } from './usage.ts'

const HELP = `usage: cell keygen [--out PATH] [--force]
       cell keygen --public [--out PATH]

Makes an ed25519 authority key pair, writes the private key to PATH (mode 0600) and prints the
[cell.authority] table for Cell.toml on stdout. With --public it makes nothing: it prints that
table for the key already at PATH (for another cell's Cell.toml, or a node's --trust).

options:
  --out PATH   where to write the private key (default $CELL_HOME/authority.key, CELL_HOME=~/.cell)
  --force      replace an existing key file (the old key is lost: releases and grants it signed
               are no longer backed by a key you hold)
  --public     print the [cell.authority] table of the existing key at PATH
  -h, --help   show this help`

const OPTIONS = {
  out: { type: 'string' },
  force: { type: 'boolean' },
  public: { type: 'boolean' }
} as const

/** The TOML that `cell keygen` prints: the manifest's authority table for `authorityId`. */
export function authorityToml (authorityId: string): string {
  return `[cell.authority]\ned25519 = "${authorityId}"\n`
}

export async function run (argv: string[]): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 0 })
  if (typeof parsed === 'number') return parsed
  const path = resolve(parsed.values.out ?? defaultAuthorityKeyPath())
  if (parsed.values.public === true) {
    if (parsed.values.force === true) return usageFailure('--public reads the key at PATH and never replaces it: drop --force', HELP)
    try {
      process.stdout.write(authorityToml((await readAuthorityKey(path)).id))
    } catch (err) {
      if (err instanceof KeyFileNotFoundError) throw new KeyFileNotFoundError(`no authority key at ${path}; \`cell keygen\` makes one`, { cause: err })
      throw err
    }
    return 0
  }
  const key = await generateAuthority()
  try {
    await writeAuthorityKey(path, key, { force: parsed.values.force === true })
  } catch (err) {
    if (err instanceof KeyFileExistsError) {
      throw new KeyFileExistsError(`${path} already exists; pass --force to replace it (the old key is lost), or \`cell keygen --public\` to print its [cell.authority] table`, { cause: err })
    }
    throw err
  }
  process.stdout.write(authorityToml(key.id))
  process.stderr.write(`wrote the authority private key to ${path} (mode 0600); keep it secret, never commit it\n`)
  return 0
}
