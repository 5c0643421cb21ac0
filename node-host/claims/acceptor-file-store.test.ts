import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, rm, writeFile, readdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AcceptorFileStore, CorruptAcceptorStateError } from './acceptor-file-store.ts'
import { ClaimAcceptor, encodeClaimRequest, decodeClaimFrame, type AcceptorState } from '../../core/claims/index.ts'
import { openClaimGateForTests } from '../../core/claims/testing.ts'

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
