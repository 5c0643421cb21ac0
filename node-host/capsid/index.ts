// Public surface of the capsid: start a sandboxed replica and talk to it.
export { startCapsid, safeEnv } from './start-capsid.ts'
export { Capsid } from './capsid.ts'
export type { CapsidInit, CapsidState, CapsidExit, CapsidCallOptions, CapsidStopOptions } from './capsid.ts'
export * from './errors.ts'
export { resolveSandbox, resolveNodeBinary, findBwrap, probeBwrap, IN_SANDBOX } from './sandbox.ts'
export type { SandboxMode } from './sandbox.ts'
export type { LogLine } from './log-ring.ts'
export { MAX_FRAME_BYTES } from './protocol.ts'
