// Issue 13 point 6: the client people use from their own code. `cellmesh/client` (package.json
// `exports`) gives createClient and the helpers; a script calls a cell with types right after
// createClient (no wait of its own); errors the cell defines come back as the cell's own classes
// when the caller hands them to `remote` (or registers them on the mesh), else as RemoteError
// carrying the name, as before.
import { describe, it, expect, afterAll, beforeAll } from 'vitest'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { generateAuthority, authorityIdOf } from '../../core/identity/index.ts'
import { writeAuthorityKey } from '../../node-host/keys/index.ts'
import { Publisher } from '../../node-host/publisher.ts'
import { createClient, RemoteError, CellError, type Remote } from '../../node-host/client-api.ts'
import { InvalidAmountError, InvalidCurrencyError } from '../../examples/billing/cell.ts'
import type Billing from '../../examples/billing/cell.ts'
import { TestFleet } from './test-fleet.ts'
import { stageCell } from './stage-cell.ts'
import { projectRoot } from './processes.ts'

const NODE = join(projectRoot, 'node_modules', '.bin', 'node')

async function runScript (args: string[], env: Record<string, string>): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(NODE, args, { cwd: projectRoot, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}

describe('cellmesh/client', () => {
  const fleet = new TestFleet()
  const { nodes, clients } = fleet
  let home = ''
  let bootstrap = ''
  afterAll(async () => { await fleet.stop() })

  beforeAll(async () => {
    const key = await generateAuthority()
    const root = await fleet.start('cell-client-api-', 1, { authorityKeys: [key] })
    bootstrap = nodes[0].addresses()[0]
    home = join(root, 'home')
    await writeAuthorityKey(join(home, 'authority.key'), key)
    const operator = await createClient({ bootstrap: [bootstrap], authorityKey: key, listen: true })
    clients.push(operator)
    const dir = await stageCell(join(projectRoot, 'examples', 'billing'), join(root, 'billing'), authorityIdOf(key.publicKey))
    await new Publisher(operator).publish(dir, '1.0.0', key, { waitReplicas: 1, timeoutMs: 60_000 })
  }, 120_000)

  it('calls with types right after createClient, and rebuilds the cell\'s own errors as its classes', async () => {
    const { readAuthorityKey } = await import('../../node-host/client-api.ts')
    const mesh = await createClient({ bootstrap: [bootstrap], authorityKey: await readAuthorityKey(join(home, 'authority.key')) })
    clients.push(mesh)
    // No wait for the view: the first call waits for it within its deadline (it used to fail at once
    // with UnknownCellError, the view being empty).
    const billing: Remote<typeof Billing> = mesh.remote<typeof Billing>('billing', { errors: { InvalidAmountError } })
    const charge = await billing.charge({ amount: 5 })
    expect(charge).toMatchObject({ amount: 5, currency: 'EUR' })

    const err = await billing.charge({ amount: -1 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidAmountError)
    expect(err).toBeInstanceOf(CellError)
    expect((err as Error).name).toBe('InvalidAmountError')
    expect((err as Error).message).toMatch(/positive finite number/)
    expect((err as Error).cause).toBeInstanceOf(RemoteError)

    // Without the class: a RemoteError that carries the name, as before (never a wrong class).
    const plain = await mesh.remote<typeof Billing>('billing').charge({ amount: -1 }).catch((e: unknown) => e)
    expect(plain).toBeInstanceOf(RemoteError)
    expect(plain).not.toBeInstanceOf(InvalidAmountError)
    expect((plain as RemoteError).remoteName).toBe('InvalidAmountError')

    // Or once for the whole client, through its registry.
    mesh.errors.register(InvalidCurrencyError)
    await expect(mesh.remote<typeof Billing>('billing').charge({ amount: 1, currency: 'euro' })).rejects.toBeInstanceOf(InvalidCurrencyError)

    // Streams: more data than one call frame carries arrives as items, in order.
    const items: unknown[] = []
    for await (const c of await mesh.remote<typeof Billing>('billing', { streams: ['history'] }).history({ count: 3, currency: 'USD' })) items.push(c)
    expect(items).toHaveLength(3)
    expect(items.every(c => (c as { currency: string }).currency === 'USD')).toBe(true)
    let n = 0
    for await (const c of mesh.stream<{ id: string }>('billing', 'history', { count: 1000 })) { expect(c.id).toMatch(/^ch_/); if (++n === 5) break }
    expect(n).toBe(5)
    // A cell error while streaming comes back as its class too.
    const failed = await (async () => { for await (const _ of await mesh.remote<typeof Billing>('billing', { streams: ['history'], errors: [InvalidCurrencyError] }).history({ currency: 'euro' })) { /* none */ } })().catch((e: unknown) => e)
    expect(failed).toBeInstanceOf(InvalidCurrencyError)

    // Anything that is not an error class with a literal errorName is refused when the remote is made.
    expect(() => mesh.remote('billing', { errors: { Nope: Error as never } })).toThrow(TypeError)
  }, 60_000)

  it('the README\'s script imports `cellmesh/client` and calls billing from CELL_BOOTSTRAP and $CELL_HOME', async () => {
    const env = { CELL_BOOTSTRAP: bootstrap, CELL_HOME: home }
    const ok = await runScript(['examples/call-billing.ts', '7'], env)
    expect(ok.stderr).toBe('')
    expect(ok.stdout).toMatch(/^charged 7 EUR: ch_[0-9a-f]{24}\n$/)
    const refused = await runScript(['examples/call-billing.ts', '-3'], env)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^not charged: amount must be a positive finite number/)
  }, 120_000)
})
