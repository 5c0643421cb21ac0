export { Mesh, KAD_PROTOCOL } from './mesh.ts'
export type { MeshInit, MeshServices, RemoteOptions, MeshCallOptions } from './mesh.ts'
export * from './errors.ts'
export { encodeJson, decodeJson } from './json.ts'
