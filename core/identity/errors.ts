// Named failures of identity and trust. Callers match on the class (or `name` after the wire),
// never on the message. Every trust decision failure extends TrustError so a handshake can
// reject-and-count with one `instanceof` while still logging the precise reason.
import { CellError } from '../errors.ts'

/** Bytes that do not decode as a record, certificate, chain or key of the expected shape. */
export class MalformedRecordError extends CellError { static override readonly errorName: string = 'MalformedRecordError' }

/** Base of every "this peer or record is not trusted" decision. */
export class TrustError extends CellError { static override readonly errorName: string = 'TrustError' }

/** The root of a chain (or the signer of a release) is not one of the trusted authorities. */
export class UnknownAuthorityError extends TrustError { static override readonly errorName = 'UnknownAuthorityError' }
/** A signature does not verify over the domain-separated encoding of its record. */
export class BadSignatureError extends TrustError { static override readonly errorName = 'BadSignatureError' }
/** `now - skew` is at or past a certificate's notAfterMs. */
export class CertificateExpiredError extends TrustError { static override readonly errorName = 'CertificateExpiredError' }
/** `now + skew` is before a certificate's notBeforeMs. */
export class CertificateNotYetValidError extends TrustError { static override readonly errorName = 'CertificateNotYetValidError' }
/** The leaf subject is not the peer Noise authenticated, or a key is not the subject it claims. */
export class WrongSubjectError extends TrustError { static override readonly errorName = 'WrongSubjectError' }
/** Empty chain, missing grant, or a link whose issuer is not the previous link's subject. */
export class TruncatedChainError extends TrustError { static override readonly errorName = 'TruncatedChainError' }
/** A link lacks the required role, or a session claims roles its grant does not carry. */
export class WrongRoleError extends TrustError { static override readonly errorName = 'WrongRoleError' }
/** A link is scoped to cells that do not include the cell being called. */
export class WrongCellScopeError extends TrustError { static override readonly errorName = 'WrongCellScopeError' }
/** A record's sequence number is not above the highest already seen for its cell. */
export class ReplayedRecordError extends TrustError { static override readonly errorName = 'ReplayedRecordError' }
/** An artifact's sha256 differs from the digest its signed release names. */
export class DigestMismatchError extends TrustError { static override readonly errorName = 'DigestMismatchError' }
/** A node holds no grant from the authority a chain was asked for. */
export class NoGrantError extends CellError { static override readonly errorName = 'NoGrantError' }
