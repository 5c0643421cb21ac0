export { synapse, Synapse } from './synapse.ts'
export type { SynapseInit, SynapseComponents, SynapseRegistrar, SynapseConnectionManager, OpenOptions } from './synapse.ts'
export { Channel } from './channel.ts'
export { ServerCall } from './server-call.ts'
export { LastingChannel } from './lasting-channel.ts'
export { SYNAPSE_PROTOCOL, SYNAPSE_VERSION } from './handshake.ts'
export {
  BackpressureError, CallCancelledError, ChannelClosedError, ChannelExpiredError, ServerGoingAwayError, DeadlineExceededError, HandshakeTimeoutError,
  RemoteError, SynapseNotStartedError, SynapseProtocolError, TooManyChannelsError, TooManyHandshakesError, TooManyInflightError,
  UnknownMethodError
} from './errors.ts'
export { WireErrorRegistry, DuplicateErrorNameError, defaultWireErrors, registerWireError, errorFromWire, SYNAPSE_ERROR_CLASSES } from './error-registry.ts'
export type { WireErrorClass } from './error-registry.ts'
export { LatencyHistogram, LATENCY_BUCKETS_MS } from './stats.ts'
export type { SynapseStats } from './stats.ts'
export type {
  Principal, HandshakeRequest, AuthenticatePort, AuthenticateServerPort, CredentialsPort,
  MessageContext, CallContext, CallAbortListener, CallAbortSlot, SynapseHandler, SynapseCallOptions
} from './types.ts'
