// The package's client entry point, `import { createClient } from 'cellmesh/client'`: what a Node
// script or service needs to call cells in a fleet, with types. One module to import from, so
// nobody has to find createClient by grep.
//
//   import { createClient, readHomeAuthorityKey } from 'cellmesh/client'
//   import type Billing from './examples/billing/cell.ts'
//   import { InvalidAmountError } from './examples/billing/cell.ts'
//
//   const mesh = await createClient({ authorityKey: await readHomeAuthorityKey() })  // CELL_BOOTSTRAP or $CELL_HOME/node.toml
//   const billing = mesh.remote<typeof Billing>('billing', { errors: { InvalidAmountError } })
//   const charge = await billing.charge({ amount: 5 })                              // typed: Charge
//   await mesh.stop()

export { createClient, waitForView, waitForReplicas, readHomeAuthorityKey, FleetUnreachableError, WaitTimeoutError } from './client.ts'
export type { ClientInit } from './client.ts'
export { awaitReplica, whyNoReplica } from './call-readiness.ts'
export { readAuthorityKey } from './keys/index.ts'

export { Mesh } from '../core/mesh/index.ts'
export type { RemoteOptions, MeshCallOptions, CellErrors, CellErrorClass } from '../core/mesh/index.ts'
export {
  NoReplicaError, UnknownCellError, CellNameConflictError, PayloadEncodingError, MeshNotStartedError,
  CapsidBusyError, CapsidDrainingError, CapsidStoppedError, ReplicaCrashedError
} from '../core/mesh/index.ts'
export { defineCell } from '../core/cell.ts'
export type { Remote, CallOptions, CellContext, CallerInfo } from '../core/cell.ts'
export { CellError, retryRuleOf } from '../core/errors.ts'
export type { RetryRule } from '../core/errors.ts'
export { RemoteError, DeadlineExceededError, CallCancelledError, UnknownMethodError, ChannelClosedError } from '../core/synapse/index.ts'
export { FrameTooLargeError } from '../core/wire/index.ts'
export { TrustError, UnknownAuthorityError, NoGrantError, WrongRoleError, CertificateExpiredError } from '../core/identity/errors.ts'
