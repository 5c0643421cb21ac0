import { describe, it, expect, afterAll, vi } from 'vitest'
import { mkdtemp, rm, writeFile, readdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { AcceptorFileStore, CorruptAcceptorStateError } from './acceptor-file-store.ts'
import { ClaimAcceptor, encodeClaimRequest, decodeClaimFrame, type AcceptorState } from '../../core/claims/index.ts'
import { openClaimGateForTests } from '../../core/claims/testing.ts'
import { enable } from '@libp2p/logger'

const A = `12D3KooW${'A'.repeat(44)}`
const B = `12D3KooW${'B'.repeat(44)}`
const dirs: string[] = []
afterAll(async () => { await Promise.all(dirs.map(async d => await rm(d, { recursive: true, force: true }))) })

async function tmp (): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'cell-claims-'))
  dirs.push(d)
  return d
}

const STATE: AcceptorState = {
  claims: {
    'ledger/0': {
      promised: { counter: 3, proposer: A },
      accepted: { ballot: { counter: 3, proposer: A }, value: { owner: A, epoch: 2, leaseMs: 10_000, state: 'held', voters: [A, B] } },
      acceptedAtLocalMs: 1234.5
    }
  }
}

describe('AcceptorFileStore', () => {
  it('reads back what it saved, replacing the file atomically (no temp file left, mode 0600)', async () => {
    const dir = await tmp()
    const store = new AcceptorFileStore(join(dir, 'claims', 'acceptor.json'))
    expect(await store.load()).toBeNull()
    await store.save(STATE)
    await store.save(STATE)
    expect(await store.load()).toEqual(STATE)
    expect(await readdir(join(dir, 'claims'))).toEqual(['acceptor.json'])
    expect((await stat(store.path)).mode & 0o777).toBe(0o600)
  })

  it.runIf(process.getuid?.() === 0)('on a full disk (a small tmpfs) a save fails, the saved state stays, and no temp file piles up per attempt', async () => {
    const dir = await tmp()
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir])
    try {
      const store = new AcceptorFileStore(join(dir, 'acceptor.json'))
      await store.save(STATE)
      // Fill the disk, then try to save a state larger than what is left, three times.
      await writeFile(join(dir, 'filler'), new Uint8Array(40 * 1024))
      const big: AcceptorState = { claims: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`ledger/${i}`, STATE.claims['ledger/0']])) }
      // The node says so itself (its owners only see it silent): once, not per failed save; and when saves work again.
      const said: string[] = []
      enable('cell:claims:store:error') // as `cell up` enables cell:*:error
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { said.push(String(chunk)); return true })
      try {
        for (let i = 0; i < 3; i++) await expect(store.save(big)).rejects.toThrow(/ENOSPC/)
        expect(await store.load()).toEqual(STATE)
        expect((await readdir(dir)).sort()).toEqual(['acceptor.json', 'filler'])
        await rm(join(dir, 'filler'))
        await store.save(STATE)
      } finally {
        spy.mockRestore()
        enable(process.env.DEBUG ?? '')
      }
      const lines = said.join('').split('\n').filter(l => l.includes('cell:claims:store'))
      expect(lines).toHaveLength(2)
      expect(lines[0]).toMatch(/cannot save this node's claim votes to .*acceptor\.json \(ENOSPC.*; 1 failed save\(s\) so far\): it answers no claim round until it can/)
      expect(lines[1]).toMatch(/claim votes saved to .*acceptor\.json again, after 3 failed save\(s\)/)
      expect(await store.load()).toEqual(STATE)
    } finally {
      execFileSync('umount', [dir])
    }
  })

  it('a corrupt or foreign file fails by name instead of starting empty (forgotten promises would break safety)', async () => {
    const dir = await tmp()
    const path = join(dir, 'acceptor.json')
    const store = new AcceptorFileStore(path)
    for (const text of ['{"claims":', '[]', '{"claims":{"../x":{}}}', JSON.stringify({ claims: { 'ledger/0': { ...STATE.claims['ledger/0'], acceptedAtLocalMs: 'soon' } } })]) {
      await writeFile(path, text)
      await expect(store.load()).rejects.toThrow(CorruptAcceptorStateError)
    }
  })

  it('an acceptor restarted on the file keeps its promise', async () => {
    const dir = await tmp()
    const path = join(dir, 'acceptor.json')
    const clock = { nowMs: () => 0 }
    const first = new ClaimAcceptor({ selfId: A, store: new AcceptorFileStore(path), clock, gate: openClaimGateForTests })
    const prepare = (counter: number): Uint8Array => encodeClaimRequest({ kind: 'prepare', claimId: 'ledger/0', ballot: { counter, proposer: B }, nonce: '00000000000000a1', voters: [A, B] }, new Uint8Array(0))
    expect(decodeClaimFrame(await first.handle(B, prepare(9)))).toMatchObject({ answer: { kind: 'promise' } })
    const second = new ClaimAcceptor({ selfId: A, store: new AcceptorFileStore(path), clock, gate: openClaimGateForTests })
    expect(decodeClaimFrame(await second.handle(B, prepare(8)))).toMatchObject({ answer: { kind: 'reject', reason: 'ballot', promised: { counter: 9 } } })
  })
})
