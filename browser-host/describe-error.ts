// User-facing words for the named errors a page meets when it calls a cell. Matches on the class
// name (the wire rebuilds errors by name), never on the message; unknown names fall back to a
// sentence that still carries the name so a user can report it.

const WORDS: Record<string, string> = {
  UnknownAuthorityError: 'The cell does not trust the authority that granted this browser access. Import a grant token from the cell\'s own authority.',
  TruncatedChainError: 'This browser holds no grant for this cell. Ask the cell\'s authority to run `cell grant caller <peer-id> --ttl 7d` for this browser\'s peer id and import the token it prints.',
  NoGrantError: 'This browser holds no grant for this cell. Ask the cell\'s authority for a caller grant token and import it.',
  CertificateExpiredError: 'Your grant has expired. Ask the cell\'s authority for a new grant token.',
  CertificateNotYetValidError: 'Your grant is not valid yet: check this device\'s clock.',
  WrongRoleError: 'Your grant does not include the caller role for this cell.',
  WrongCellScopeError: 'Your grant is limited to other cells and does not cover this one.',
  WrongSubjectError: 'This grant token was issued for a different peer id than this browser\'s.',
  BadSignatureError: 'A signature did not verify: the grant or the release has been tampered with.',
  MalformedGrantTokenError: 'That text is not a grant token (a token starts with "cell-grant-v1:").',
  NoReplicaError: 'No running replica of this cell can be reached right now. The fleet may still be starting it.',
  UnknownCellError: 'This browser knows no trusted release of that cell yet. Check the name and the trusted authorities.',
  DeadlineExceededError: 'The cell did not answer in time.',
  CallCancelledError: 'The call was cancelled.',
  ChannelClosedError: 'The connection to the replica closed during the call.',
  HandshakeTimeoutError: 'The replica did not complete the handshake in time.',
  UnknownMethodError: 'The cell has no method of that name.',
  MeshNotStartedError: 'The light peer is not connected yet (or was stopped).',
  FleetUnreachableError: 'No full node of the fleet can be reached. Retrying on its own.',
  KeystoreUnavailableError: 'This browser\'s storage (IndexedDB) is unavailable, so the identity cannot be kept across reloads.',
  CapsidBusyError: 'Every replica is busy. Try again shortly.',
  ReplicaCrashedError: 'The replica crashed while handling the call.'
}

/** The error's name as sent over the wire (RemoteError keeps the peer's name in `remoteName`). */
export function errorName (err: unknown): string {
  const e = err as { remoteName?: unknown, name?: unknown }
  if (typeof e?.remoteName === 'string') return e.remoteName
  return typeof e?.name === 'string' ? e.name : 'Error'
}

/** One sentence for a person, naming the failure class so support can match it. */
export function describeError (err: unknown): string {
  const name = errorName(err)
  const words = WORDS[name]
  if (words != null) return `${words} (${name})`
  const message = String((err as Error)?.message ?? err).slice(0, 200)
  return `The call failed: ${message} (${name})`
}
