// Named failures of the edge routing node's own HTTP surface. Failures of the call itself (no
// replica, deadline, trust) keep the core's classes; http-api.ts maps both to HTTP statuses.
import { CellError } from '../core/errors.ts'

/** The request body is not JSON (or not UTF-8). */
export class BadJsonError extends CellError { static override readonly errorName = 'BadJsonError' }
/** The request body is larger than the edge accepts (MAX_BODY_BYTES). */
export class BodyTooLargeError extends CellError { static override readonly errorName = 'BodyTooLargeError' }
/** The deadline header is not a positive whole number of milliseconds. */
export class BadDeadlineError extends CellError { static override readonly errorName = 'BadDeadlineError' }
/** No route of the edge's HTTP API matches the path. */
export class RouteNotFoundError extends CellError { static override readonly errorName = 'RouteNotFoundError' }
/** The route exists but not with this HTTP method. */
export class HttpMethodNotAllowedError extends CellError { static override readonly errorName = 'HttpMethodNotAllowedError' }
/** A var or secret of the Worker is missing or malformed (wrangler.toml, .dev.vars, `wrangler secret put`). */
export class EdgeConfigError extends CellError { static override readonly errorName = 'EdgeConfigError' }
/** The edge holds no connection to any full node yet (or lost them all and is re-dialing). */
export class FleetNotJoinedError extends CellError {
  static override readonly errorName = 'FleetNotJoinedError'
  static override readonly retry = 'nothing-ran' as const
}
