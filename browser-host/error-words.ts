// One table of what named errors mean for a person, shared by the light peer (describe-error.ts)
// and the dashboard (dashboard/src/model.ts). Keyed by the class's literal `errorName`, which
// survives bundling and the wire; test/errors/error-names.test.ts checks every key is a real class.

export const ERROR_WORDS: Readonly<Record<string, string>> = {
  // Trust: the cell refused this peer.
  TrustError: 'The cell refused this browser: it is not trusted.',
  UnknownAuthorityError: 'The cell does not trust the authority that granted this browser access. Import a grant token from the cell\'s own authority.',
  TruncatedChainError: 'This browser holds no grant for this cell. Ask the cell\'s authority to run `cell grant caller <peer-id> --ttl 7d` for this browser\'s peer id and import the token it prints.',
  NoGrantError: 'This browser holds no grant for this cell. Ask the cell\'s authority for a caller grant token (cell grant caller <peer-id>) and import it.',
  CertificateExpiredError: 'Your grant has expired. Ask the cell\'s authority for a new grant token.',
  CertificateNotYetValidError: 'Your grant is not valid yet: check this device\'s clock.',
  WrongRoleError: 'Your grant does not include the caller role for this cell.',
  WrongCellScopeError: 'Your grant is limited to other cells and does not cover this one.',
  WrongSubjectError: 'This grant token was issued for a different peer id than this browser\'s.',
  BadSignatureError: 'A signature did not verify: the grant or the release has been tampered with.',
  MalformedGrantTokenError: 'That text is not a grant token (a token starts with "cell-grant-v1:").',
  // The call.
  NoReplicaError: 'No ready replica of this cell can be reached right now. The fleet may still be starting it.',
  UnknownCellError: 'This browser knows no trusted release of that cell yet. Check the name and the trusted authorities.',
  UnknownMethodError: 'The cell has no method of that name.',
  DeadlineExceededError: 'The cell did not answer in time.',
  CallCancelledError: 'The call was cancelled.',
  ChannelClosedError: 'The connection to the replica closed during the call.',
  ServerGoingAwayError: 'The node was stopping and did not take the call; nothing ran. Other nodes can take it.',
  SynapseNotStartedError: 'The node is stopping and takes no new connections.',
  CapsidDrainingError: 'The replica is shutting down and did not take the call; nothing ran.',
  HandshakeTimeoutError: 'The replica did not complete the handshake in time.',
  TooManyInflightError: 'Too many calls are in flight on this channel; try again.',
  BackpressureError: 'The channel is busy; try again.',
  TooManyChannelsError: 'Too many channels are open to that node.',
  PayloadEncodingError: 'The request or the result is not JSON the client can carry.',
  CapsidBusyError: 'Every replica is busy. Try again shortly.',
  ReplicaCrashedError: 'The replica crashed while handling the call.',
  // This peer.
  MeshNotStartedError: 'The light peer is not connected yet (or was stopped).',
  FleetUnreachableError: 'No full node of the fleet can be reached. Retrying on its own.',
  KeystoreUnavailableError: 'This browser\'s storage (IndexedDB) is unavailable, so the identity cannot be kept across reloads.'
}
