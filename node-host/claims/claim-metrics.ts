// Prometheus counters of the claim register on a full node, read from the stats objects at each
// scrape: requests this node answered as a voter (by outcome), what its proposer saw, and streams.
import { Counter, type Registry } from 'prom-client'
import type { ClaimAcceptor, ClaimRegisterClient, ClaimServeStats } from '../../core/claims/index.ts'

export interface ClaimMetricsSources {
  acceptor?: ClaimAcceptor
  client?: ClaimRegisterClient
  serve?: ClaimServeStats
}

export function registerClaimMetrics (registry: Registry, sources: ClaimMetricsSources): void {
  const voter = new Counter({
    name: 'cell_claim_voter_requests_total',
    help: 'Claim register requests this node answered as a voter: prepare, accept, rejected (ballot, lease held, voters, owner, capacity), refused (no host grant for the cell), malformed.',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      voter.reset()
      const s = sources.acceptor?.stats()
      if (s == null) return
      for (const outcome of ['prepares', 'accepts', 'rejected', 'refused', 'malformed'] as const) voter.inc({ outcome }, s[outcome])
    }
  })
  const proposer = new Counter({
    name: 'cell_claim_proposer_events_total',
    help: 'What this node saw proposing claim changes: rounds, ballot conflicts, stale answers (not bound to the request), voters refused (no host grant), malformed answers, refusals of this node by voters.',
    labelNames: ['event'],
    registers: [registry],
    collect () {
      proposer.reset()
      const s = sources.client?.stats()
      if (s == null) return
      for (const event of ['rounds', 'conflicts', 'staleAnswers', 'refusedVoters', 'malformedAnswers', 'refusedByVoters'] as const) proposer.inc({ event }, s[event])
    }
  })
  const streams = new Counter({
    name: 'cell_claim_streams_total',
    help: 'Inbound /cell/claim/1 streams by outcome (served, malformed: closed with MalformedClaimFrameError, failed).',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      streams.reset()
      const s = sources.serve
      if (s == null) return
      for (const outcome of ['served', 'malformed', 'failed'] as const) streams.inc({ outcome }, s[outcome])
    }
  })
}
