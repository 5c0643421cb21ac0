// Test helpers for the claim register (not exported from index.ts): a gate that admits everyone,
// for the simulator and unit tests, where grants are not what is under test.
import type { ClaimGrantGate } from './grant-gate.ts'

export const openClaimGateForTests: ClaimGrantGate = {
  chain: () => new Uint8Array(0),
  check: async () => {}
}
