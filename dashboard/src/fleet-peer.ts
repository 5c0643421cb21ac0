// The light-peer half of the page, split out so fleet-main.ts can load it as its own chunk.
export { createLightPeer } from '../../browser-host/light-peer.ts'
export { lightPeerSource } from '../../browser-host/fleet-source.ts'
export { loadPageConfig, requestGrant } from '../../browser-host/page-config.ts'
export { describeError } from '../../browser-host/describe-error.ts'
export { decodeGrantToken } from '../../core/identity/grant-token.ts'
