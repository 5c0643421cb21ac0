// What a valid Cell.toml asks for that the fleet deliberately does not do. Such keys stay accepted
// (releases already signed with them must still load on every node), but the author is told:
// `cell build` and `cell publish` print each notice as a warning, and a node logs it once per cell.
import type { Manifest } from './schema.ts'

/**
 * `[cell.telemetry] otlp_trace = true` is deprecated and ignored. Where spans go and how many are
 * recorded is the node operator's decision (`cell up --otlp URL --trace-ratio R`): a cell's author
 * must not make nodes send data to an endpoint of their choosing, and sampling is parent-based, so
 * the caller's decision travels with each call and a per-cell switch on the serving side would
 * only produce orphan spans.
 */
export const OTLP_TRACE_IGNORED = '[cell.telemetry] otlp_trace = true is deprecated and ignored: every node traces the calls it serves when its operator turns tracing on (cell up --otlp URL --trace-ratio R), and the caller\'s sampling decision travels with each call; a cell can neither switch tracing nor choose where spans go. Remove the key.'

/** The notices for `manifest`, in key order; empty when it asks for nothing the fleet ignores. */
export function manifestNotices (manifest: Manifest): string[] {
  const notices: string[] = []
  if (manifest.telemetry.otlpTrace) notices.push(OTLP_TRACE_IGNORED)
  return notices
}
