import { CellError } from '../errors.ts'
import type { BiologyParams, CellState, Policy } from './types.ts'

/** A policy the loop cannot act on (the manifest parser should have caught it first). */
export class InvalidPolicyError extends CellError { static override readonly errorName = 'InvalidPolicyError' }

export const defaultBiologyParams: Readonly<BiologyParams> = Object.freeze({
  heartbeatStaleMs: 15_000,
  stabilisationWindowMs: 300_000,
  scaleDownFraction: 0.5,
  scaleUpTolerance: 0.1,
  metricsSettleMs: 10_000,
  volunteerJitterMs: 2_000,
  haltThreshold: 3,
  haltWindowMs: 120_000,
  restartBackoffMs: 1_000,
  maxRestartBackoffMs: 300_000,
  restartResetMs: 600_000,
  minCpuFreePercent: 5,
  minMemoryFreeBytes: 64 * 1024 * 1024,
  maxRecommendations: 512,
  maxHalts: 64,
  maxEvidence: 64
})

export function resolveParams (params?: Partial<BiologyParams>): BiologyParams {
  return params === undefined ? defaultBiologyParams : { ...defaultBiologyParams, ...params }
}

export function validatePolicy (policy: Policy): void {
  const bad = (why: string): InvalidPolicyError => new InvalidPolicyError(`invalid biology policy: ${why}`)
  if (!Number.isInteger(policy.minReplicas) || policy.minReplicas < 0) throw bad('minReplicas must be an integer ≥ 0')
  if (!Number.isInteger(policy.maxReplicas) || policy.maxReplicas < policy.minReplicas) throw bad('maxReplicas must be an integer ≥ minReplicas')
  if (!(policy.cpuTarget > 0) || !(policy.memoryTarget > 0)) throw bad('cpuTarget and memoryTarget must be > 0')
  if (!(policy.maxSurge > 0 && policy.maxSurge <= 100)) throw bad('maxSurge must be in (0, 100]')
  if (!(policy.canaryWeight >= 0 && policy.canaryWeight <= 100)) throw bad('canaryWeight must be in [0, 100]')
  if (!(policy.healthGraceMs >= 0)) throw bad('healthGraceMs must be ≥ 0')
  if (policy.update !== 'live' && policy.update !== 'stop') throw bad('update must be "live" or "stop"')
}

export function initialCellState (cell: string): CellState {
  return { cell, recommendations: [], halts: [] }
}
