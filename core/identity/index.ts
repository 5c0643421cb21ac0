// Identity and trust: authority keys, signed releases and desired versions, replay guard,
// certificate chains (authority → host grant → session) and the handshake trust decision.
export * from './errors.ts'
export {
  generateAuthority, authorityFromPrivateKey, authorityIdOf, parseAuthorityId, isAuthorityId,
  serializeAuthorityKey, deserializeAuthorityKey, signBytes, verifyBytes, RESERVED_DOMAINS
} from './authority.ts'
export type { AuthorityKey, SignalOptions } from './authority.ts'
export * from './release.ts'
export * from './sequence-guard.ts'
export {
  ROLES, normaliseRoles, issueGrant, issueSession, encodeCertificate, decodeCertificate,
  encodeCertificateBody, verifyCertificateSignature, MAX_CERTIFICATE_BYTES, MAX_SCOPE_CELLS, MAX_SUBJECT_BYTES
} from './certificate.ts'
export type { Role, Certificate, CertificateKind, CertificateFields } from './certificate.ts'
export { encodeGrantToken, decodeGrantToken, MalformedGrantTokenError, GRANT_TOKEN_PREFIX, MAX_GRANT_TOKEN_LENGTH } from './grant-token.ts'
export * from './chain.ts'
export * from './renewal.ts'
export * from './credentials.ts'
export * from './retire.ts'
