// Call the billing cell from a script of your own, with types: `node examples/call-billing.ts 5`
// (fleet from CELL_BOOTSTRAP or $CELL_HOME/node.toml, key from $CELL_HOME/authority.key).
import { createClient, readHomeAuthorityKey } from 'cellmesh/client'
import { InvalidAmountError, type default as Billing } from './billing/cell.ts'

const mesh = await createClient({ authorityKey: await readHomeAuthorityKey() })
try {
  const billing = mesh.remote<typeof Billing>('billing', { errors: { InvalidAmountError } })
  const charge = await billing.charge({ amount: Number(process.argv[2] ?? 5) }) // typed: Charge
  console.log(`charged ${charge.amount} ${charge.currency}: ${charge.id}`)
} catch (err) {
  if (!(err instanceof InvalidAmountError)) throw err
  console.error(`not charged: ${err.message}`) // the cell's own class, rebuilt on this side
  process.exitCode = 1
} finally {
  await mesh.stop()
}
