// Public surface of the ribosome: build a cell into a hashed artifact and keep artifacts by digest.
export { buildCell, sha256Hex, DEFAULT_MAX_ARTIFACT_BYTES } from './build.ts'
export type { BuildOptions, BuildResult } from './build.ts'
export { ArtifactStore, writeArtifact, writeWhole } from './artifact-store.ts'
export type { ArtifactStoreOptions } from './artifact-store.ts'
export { BuildError, ArtifactTooLargeError, CorruptArtifactError, InvalidDigestError } from './errors.ts'
export { ManifestNotFoundError, readManifestSource } from './manifest-file.ts'
