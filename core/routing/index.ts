export { chooseReplica, chooseFrom, prepareChoice, pickLessLoaded, compareLoad, newestDigestOf } from './choose-replica.ts'
export type { PreparedChoice } from './choose-replica.ts'
export type { ReplicaCandidate, ChooseOptions, Choice, ReplicaGroup } from './choose-replica.ts'
