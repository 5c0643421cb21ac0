// The fleet: every node's gossiped view of nodes, instances, releases and desired versions.
export {
  MalformedFleetRecordError, FleetRecordRejectedError, RecordOriginMismatchError, FleetSyncError, FleetSyncTimeoutError, DisseminationMismatchError
} from './errors.ts'
export {
  MAX_MESSAGE_BYTES, FLEET_WIRE_VERSION, FLEET_TOPIC, FLEET_RELEASE_TOPIC, FLEET_SYNC_PROTOCOL, LIMITS, INSTANCE_STATES, PREPARED_STATES,
  checkNodeRecord, checkInstanceRecord, checkReleaseFields, checkMemberRecord, checkDownRecord
} from './records.ts'
export { EXIT_LIMITS, boundStderrTail, boundExitReason, MEMBERS_TOPIC, cellTopic } from './records.ts'
export type {
  InstanceState, NodeCapacity, NodeLoad, NodeRecord, NodeHalt, NodePrepared, PreparedState, InstanceRecord, InstanceClaim, ReleaseFields, ReleaseRecord, DesiredVersionRecord, FleetRecordKind, RetireFields, RetireRecord,
  MemberRecord, DownRecord, Dissemination
} from './records.ts'
export {
  encodeNodeBody, decodeNodeBody, encodeInstanceBody, decodeInstanceBody, encodeEnvelope, decodeEnvelope, decodeFrame, encodeBundles,
  encodeMemberBody, decodeMemberBody, encodeDownBody, decodeDownBody
} from './codec.ts'
export type {
  FleetEnvelope, SignedNodeEnvelope, SignedInstanceEnvelope, SignedReleaseEnvelope, SignedSnapshotEnvelope, SignedPinEnvelope, SignedNodeKeyEnvelope,
  SignedMemberEnvelope, SignedDownEnvelope, FrameEntry, BundleItem
} from './codec.ts'
export {
  SNAPSHOT_LIMITS, checkSnapshotRecord, checkPinRecord, checkDigest, parseClaimId, compareSnapshots,
  encodeSnapshotBody, decodeSnapshotBody, encodePinBody, decodePinBody
} from './snapshots.ts'
export type { SnapshotRecord, PinRecord } from './snapshots.ts'
export { SnapshotBook } from './snapshot-book.ts'
export type { SnapshotBookInit, SnapshotBookStats } from './snapshot-book.ts'
export { signRecord, verifyRecord } from './sign.ts'
export { FleetView, DROP_REASONS, RELEASE_HISTORY } from './view.ts'
export type {
  FleetViewInit, SequenceFloor, SignedRecordVerifier, RetireVerifier, TrustPolicy, TrustSubject, DropReason, ApplyResult, ApplyOptions, FleetChange, FleetStats, MergeResult,
  Liveness, NeedNode, DownReport, DownReportsAbout, MemberStats
} from './view.ts'
export { FleetGossip } from './gossip.ts'
export type { FleetGossipInit, FleetGossipStats, FleetPubSub, FleetHeartbeat, LocalNodeState, LocalInstanceState, DisseminationMismatchEvent } from './gossip.ts'
export { DisseminationWatch } from './dissemination-watch.ts'
export type { DisseminationWatchInit, DisseminationWatchStats, MismatchPeer, SubscriberSource } from './dissemination-watch.ts'
export { fleetSync } from './sync.ts'
export type { FleetSync, FleetSyncInit, FleetSyncComponents, FleetSyncResult, FleetSyncStats, FleetSyncPullOptions } from './sync.ts'
export { encodeLengthPrefixed, decodeLengthPrefixed } from './framing.ts'
