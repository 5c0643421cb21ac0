// The claim register: who owns `<cell>/<ordinal>` at which epoch, decided by a CASPaxos quorum of
// voters with leases the voters enforce on their own clocks (README.md has the safety argument).
export * from './errors.ts'
export * from './register.ts'
export * from './voters.ts'
export * from './codec.ts'
export * from './grant-gate.ts'
export * from './clocks.ts'
export * from './acceptor.ts'
export * from './client.ts'
export * from './claim-protocol.ts'
export * from './claim-holder.ts'
