import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, verifyCertificateSignature, type AuthorityKey } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../keys/index.ts'
import { decodeGrantToken } from './grant-token.ts'
import { makeTempDir, runCli } from './cli-harness.ts'

let home: { path: string, remove: () => Promise<void> }
let authority: AuthorityKey
let peer: string
beforeEach(async () => {
  home = await makeTempDir('cell-grant-')
  authority = await generateAuthority()
  await writeAuthorityKey(join(home.path, '.cell', 'authority.key'), authority)
  peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
})
afterEach(async () => { await home.remove() })

const DAY = 86_400_000

describe('cell grant', () => {
  it('prints a one-line token holding a signed grant for the peer, roles, ttl and cells', async () => {
    const before = Date.now()
    const r = await runCli(['grant', 'operator,host', peer, '--ttl', '2d', '--cell', 'billing', '--cell', 'ledger', '--cell', 'billing'], { home: home.path })
    const after = Date.now()
    expect(r.stderr).not.toMatch(/Error/)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^cell-grant-v1:[A-Za-z0-9_-]+\n$/)
    const cert = decodeGrantToken(r.stdout)
    expect(cert.kind).toBe('grant')
    expect(cert.subject).toBe(peer)
    expect(cert.roles).toEqual(['host', 'operator'])
    expect(cert.cells).toEqual(['billing', 'ledger'])
    expect(cert.issuer).toBe(authority.id)
    expect(cert.notBeforeMs).toBeGreaterThanOrEqual(before)
    expect(cert.notBeforeMs).toBeLessThanOrEqual(after)
    expect(cert.notAfterMs - cert.notBeforeMs).toBe(2 * DAY)
    expect(await verifyCertificateSignature(cert)).toBe(true)
    expect(r.stderr).toContain(peer)
    // A host grant says where it goes on the node (a renewal is taken there without a restart).
    expect(r.stderr).toMatch(/save it as <data>\/grants\/<name>\.grant, which a running node reads within a minute/)
  })

  it('defaults to 7 days, every cell, and honours --key', async () => {
    const other = await generateAuthority()
    const keyPath = join(home.path, 'other.key')
    await writeAuthorityKey(keyPath, other)
    const r = await runCli(['grant', 'caller', peer, '--key', keyPath], { home: home.path })
    expect(r.code).toBe(0)
    const cert = decodeGrantToken(r.stdout)
    expect(cert.issuer).toBe(other.id)
    expect(cert.roles).toEqual(['caller'])
    expect(cert.cells).toEqual([])
    expect(cert.notAfterMs - cert.notBeforeMs).toBe(7 * DAY)
    expect(await verifyCertificateSignature(cert)).toBe(true)
  })

  it('rejects a bad role, ttl or cell as a usage error (exit 2) and prints no token', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['grant', 'admin', peer], /^UsageError: unknown role "admin"/],
      [['grant', 'host,', peer], /^UsageError: unknown role ""/],
      [['grant', 'host', peer, '--ttl', '10'], /^UsageError: --ttl: invalid duration/],
      [['grant', 'host', peer, '--ttl', '400d'], /^UsageError: --ttl: at most 366d/],
      [['grant', 'host', peer, '--cell', 'Not A Cell'], /^UsageError: --cell: /],
      [['grant', 'host'], /^UsageError: expected at least 2/]
    ]
    const results = await Promise.all(cases.map(async ([args]) => await runCli(args, { home: home.path })))
    for (const [i, [args, pattern]] of cases.entries()) {
      const r = results[i]
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(pattern)
      expect(r.stdout).toBe('')
    }
  })

  it('rejects a bad peer id and a missing key file with named errors (exit 1)', async () => {
    const bad = await runCli(['grant', 'host', '12D3KooWnotapeerid'], { home: home.path })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^InvalidPeerIdError: "12D3KooWnotapeerid" is not a libp2p peer id/)
    expect(bad.stdout).toBe('')

    const noKey = await runCli(['grant', 'host', peer, '--key', join(home.path, 'absent.key')], { home: home.path })
    expect(noKey.code).toBe(1)
    expect(noKey.stderr).toMatch(/^KeyFileNotFoundError: no authority key at .*absent\.key; run `cell keygen`/)
  })

  it('accepts a key made by cell keygen', async () => {
    const cellHome = join(home.path, 'fresh')
    const keygen = await runCli(['keygen'], { home: home.path, env: { CELL_HOME: cellHome } })
    expect(keygen.code).toBe(0)
    const id = /ed25519 = "([0-9a-f]{64})"/.exec(keygen.stdout)?.[1]
    const r = await runCli(['grant', 'host', peer], { home: home.path, env: { CELL_HOME: cellHome } })
    expect(r.code).toBe(0)
    expect(decodeGrantToken(r.stdout).issuer).toBe(id)
  })
})
