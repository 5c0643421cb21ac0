import { describe, expect, it, afterEach } from 'vitest'
import { mkdtemp, readdir, readFile, rm, writeFile, chmod, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import type { Libp2p } from '@libp2p/interface'
import { packArtifact } from '../core/manifest/packaged.ts'
import { sha256Hex } from './ribosome/build.ts'
import { KEPT_RELEASES, ReleaseStore, writeCodeFile } from './release-store.ts'
import type { ReleaseRecord } from '../core/fleet/index.ts'
import { serveArtifacts } from './artifacts/artifact-exchange.ts'
import { authority, grantPeer } from '../test/security/grant-peers.ts'

const AUTHORITY = 'ab'.repeat(32)
const MANIFEST = `[cell]\nname = "billing"\nversion = "1.0.0"\nmain = "cell.ts"\n\n[cell.authority]\ned25519 = "${AUTHORITY}"\n`
const CODE = new TextEncoder().encode('export default { async quote () { return 1 } }\n'.repeat(50))

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

describe('the code a capsid imports', () => {
  it('replaces a code file left short (a full disk, a crash) when the release is prepared again, and leaves no temporary file', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cell-code-'))
    dirs.push(dataDir)
    const artifact = packArtifact(MANIFEST, CODE)
    const digest = sha256Hex(artifact)
    const store = new ReleaseStore(dataDir)
    await store.artifacts.put(artifact)
    // What an earlier prepare left when the disk filled mid-write: the first 100 bytes, read-only.
    await mkdir(join(dataDir, 'code'), { recursive: true })
    const path = join(dataDir, 'code', `${digest}.mjs`)
    await writeFile(path, CODE.subarray(0, 100))
    await chmod(path, 0o444)
    const node = { contentRouting: { provide: async () => {} }, getPeers: () => [] } as unknown as Libp2p
    const release = { cell: 'billing', version: '1.0.0', digest, seq: 1, authority: AUTHORITY } as unknown as ReleaseRecord
    const prepared = await store.prepare(node, release)
    expect(prepared.codePath).toBe(path)
    expect(new Uint8Array(await readFile(path))).toEqual(CODE)
    expect(await readdir(join(dataDir, 'code'))).toEqual([`${digest}.mjs`])
  })

  it('keeps a code file that already holds the code, and removes its temporary file when the write fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cell-code-'))
    dirs.push(dir)
    const path = await writeCodeFile(dir, 'd'.repeat(64), CODE)
    const again = await writeCodeFile(dir, 'd'.repeat(64), CODE)
    expect(again).toBe(path)
    expect(new Uint8Array(await readFile(path))).toEqual(CODE)
    // A directory where the file should go: the rename fails; nothing else is left.
    await mkdir(join(dir, `${'e'.repeat(64)}.mjs`))
    await expect(writeCodeFile(dir, 'e'.repeat(64), CODE)).rejects.toThrow()
    expect((await readdir(dir)).sort()).toEqual([`${'d'.repeat(64)}.mjs`, `${'e'.repeat(64)}.mjs`])
  })

  it.runIf(process.getuid?.() === 0)('leaves no partial code file on a full disk (a 64 kB tmpfs)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cell-code-full-'))
    dirs.push(dir)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir])
    try {
      const big = new Uint8Array(256 * 1024).fill(0x20)
      await expect(writeCodeFile(dir, 'f'.repeat(64), big)).rejects.toThrow(/ENOSPC/)
      expect(await readdir(dir)).toEqual([])
      // Space again: the same write completes.
      await writeCodeFile(dir, 'f'.repeat(64), CODE)
      expect(new Uint8Array(await readFile(join(dir, `${'f'.repeat(64)}.mjs`)))).toEqual(CODE)
    } finally {
      execFileSync('umount', [dir])
    }
  })
})

describe('the history of a cell', () => {
  it('deletes the artifact and code of a release that leaves the newest KEPT_RELEASES, unless a replica still runs it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cell-history-'))
    dirs.push(dataDir)
    const store = new ReleaseStore(dataDir)
    const node = { contentRouting: { provide: async () => {} }, getPeers: () => [] } as unknown as Libp2p
    const running = new Set<string>()
    store.inUse = (digest) => running.has(digest)
    const digests: string[] = []
    const prepare = async (seq: number, code: Uint8Array): Promise<string> => {
      const artifact = packArtifact(MANIFEST, code)
      const digest = await store.artifacts.put(artifact)
      await store.prepare(node, { cell: 'billing', version: `1.0.${seq}`, digest, seq, authority: AUTHORITY } as unknown as ReleaseRecord)
      return digest
    }
    for (let seq = 1; seq <= KEPT_RELEASES; seq++) digests.push(await prepare(seq, new TextEncoder().encode(`export const v = ${seq}\n`)))
    expect(store.releases('billing')).toHaveLength(KEPT_RELEASES)
    expect(await readdir(join(dataDir, 'artifacts'))).toHaveLength(KEPT_RELEASES)
    // Seq 1 still runs in a replica here when it leaves the history.
    running.add(digests[0])
    for (let seq = KEPT_RELEASES + 1; seq <= KEPT_RELEASES + 3; seq++) await prepare(seq, new TextEncoder().encode(`export const v = ${seq}\n`))
    // Out of the history: seq 1 (kept: running), seqs 2 and 3 (deleted, artifact and code).
    expect(store.releases('billing').map(r => r.seq)).toEqual(Array.from({ length: KEPT_RELEASES }, (_, i) => i + 4))
    expect(await store.artifacts.has(digests[0])).toBe(true)
    expect(await store.artifacts.has(digests[1])).toBe(false)
    expect(await store.artifacts.has(digests[2])).toBe(false)
    expect(await readdir(join(dataDir, 'code'))).not.toContain(`${digests[2]}.mjs`)
    expect(await readdir(join(dataDir, 'code'))).toContain(`${digests[0]}.mjs`)
    expect(store.forgotten).toBe(2)
    // Bounded: after 40 more releases, the history's artifacts and the one still running.
    for (let seq = KEPT_RELEASES + 4; seq < KEPT_RELEASES + 44; seq++) await prepare(seq, new TextEncoder().encode(`export const v = ${seq}\n`))
    expect((await readdir(join(dataDir, 'artifacts'))).sort()).toEqual([digests[0], ...store.releases('billing').map(r => r.digest)].map(d => `${d}.mjs`).sort())
    expect(await readdir(join(dataDir, 'code'))).toHaveLength(KEPT_RELEASES + 1)
  })
})

describe('an artifact that does not fit its release', () => {
  it('is refused by name and not kept, when fetched for that release from a peer', async () => {
    const fleet = await authority()
    const trust = [fleet.id]
    const withGate = ({ gate }: { gate: unknown }): Record<string, () => unknown> => ({ fleetSync: () => ({ gate }) })
    const server = await grantPeer({ trusted: trust, grantFrom: fleet, roles: ['host'], services: withGate })
    const client = await grantPeer({ trusted: trust, grantFrom: fleet, roles: ['host'], services: withGate })
    try {
      // A release of "billing" whose signed digest names an artifact packed for another cell.
      const other = packArtifact(MANIFEST.replace('name = "billing"', 'name = "other"'), CODE)
      const digest = sha256Hex(other)
      await serveArtifacts(server.node, { get: async (d) => d === digest ? other : undefined }, { gate: server.gate })
      await client.node.dial(server.node.getMultiaddrs()[0])
      const dataDir = await mkdtemp(join(tmpdir(), 'cell-mismatch-'))
      dirs.push(dataDir)
      const store = new ReleaseStore(dataDir)
      const release = { cell: 'billing', version: '1.0.0', digest, seq: 1, authority: AUTHORITY } as unknown as ReleaseRecord
      await expect(store.prepare(client.node, release)).rejects.toMatchObject({ name: 'ReleaseManifestMismatchError', message: 'artifact\'s Cell.toml names cell "other", the release is for "billing"' })
      expect(store.fetchStats.fetched).toBe(1)
      // Not kept (on the old code it stayed in artifacts/ for good), no code file, no release.
      expect(await readdir(join(dataDir, 'artifacts'))).toEqual([])
      expect(await readdir(join(dataDir, 'code')).catch(() => [])).toEqual([])
      expect(store.releases('billing')).toEqual([])
      // A second try fetches it again and refuses it again: nothing accumulates.
      await expect(store.prepare(client.node, release)).rejects.toMatchObject({ name: 'ReleaseManifestMismatchError' })
      expect(await readdir(join(dataDir, 'artifacts'))).toEqual([])
    } finally {
      await Promise.all([server.node.stop(), client.node.stop()])
    }
  })
})

describe('sweeping what an earlier run left', () => {
  it('deletes artifacts, code files and temp files older than this start that no kept, remembered or running release names', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'cell-sweep-'))
    dirs.push(dataDir)
    const store = new ReleaseStore(dataDir)
    const node = { contentRouting: { provide: async () => {} }, getPeers: () => [] } as unknown as Libp2p
    const put = async (n: number): Promise<string> => await store.artifacts.put(packArtifact(MANIFEST, new TextEncoder().encode(`export const v = ${n}\n`)))
    const kept = await put(1)
    await store.prepare(node, { cell: 'billing', version: '1.0.1', digest: kept, seq: 1, authority: AUTHORITY } as unknown as ReleaseRecord)
    const remembered = await put(2)
    const running = await put(3)
    const orphan = await put(4)
    await writeCodeFile(join(dataDir, 'code'), orphan, CODE)
    const temp = `.${orphan}.mjs.a1b2c3.tmp`
    await writeFile(join(dataDir, 'artifacts', temp), 'partial')
    await writeFile(join(dataDir, 'artifacts', 'notes.txt'), 'an operator\'s file')
    store.inUse = (digest) => digest === running
    // Written "before this start": every file is older than beforeMs; one written after is not swept.
    const beforeMs = Date.now() + 60_000
    expect(await store.sweep(d => d === remembered, beforeMs)).toBe(3)
    expect((await readdir(join(dataDir, 'artifacts'))).sort()).toEqual([`${kept}.mjs`, `${remembered}.mjs`, `${running}.mjs`, 'notes.txt'].sort())
    expect(await readdir(join(dataDir, 'code'))).toEqual([`${kept}.mjs`])
    expect(store.swept).toBe(3)
    const fresh = await put(5)
    expect(await store.sweep(() => false, Date.now() - 60_000)).toBe(0)
    expect(await store.artifacts.has(fresh)).toBe(true)
  })
})
