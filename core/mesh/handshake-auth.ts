// The trust decisions of a synapse handshake, as the mesh wires them into its synapse service: the
// server checks a caller's chain (caller role, an authority the cell trusts; public cells admit any
// Noise-authenticated peer), the client checks the server's chain (host role under the authority
// that signed the cell's release). Named functions so the attack suites (test/reliability) drive
// exactly the function a real handshake calls.
import { DEFAULT_CLOCK_SKEW_MS, makeVerifier, TrustError, type Role } from '../identity/index.ts'
import type { Clock } from '../ports.ts'
import type { AuthenticatePort, AuthenticateServerPort } from '../synapse/types.ts'

export interface CallerAuthInit {
  /** Authorities trusted by default. */
  trusted: ReadonlySet<string>
  clock: Clock
  /** Authorities a given cell's callers may chain to; default `trusted`. */
  callerTrust?: (cell: string) => ReadonlySet<string>
  /** Cells that admit any peer Noise authenticated. */
  isPublic?: (cell: string) => boolean
}

/** The server side: the caller must chain to an authority the cell trusts, with the caller role. */
export function callerAuthenticator (init: CallerAuthInit): AuthenticatePort {
  return async (req, { signal }) => {
    const roots = init.callerTrust?.(req.cell) ?? init.trusted
    const role: Role = 'caller'
    try {
      const v = await makeVerifier(new Set(roots), { clock: init.clock })(req.credentials, { remotePeerId: req.remotePeerId, requiredRole: role, cell: req.cell, signal })
      // The verifier accepts a link until its notAfter plus the skew; the channel lives as long.
      return { peerId: v.subject, authority: v.authority, roles: v.roles, expiresMs: v.notAfterMs + DEFAULT_CLOCK_SKEW_MS }
    } catch (err) {
      if (err instanceof TrustError && init.isPublic?.(req.cell) === true) {
        // Public cells admit any peer Noise authenticated; the caller is known only by peer id.
        return { peerId: req.remotePeerId, authority: '', roles: [] }
      }
      throw err
    }
  }
}

export interface ServerAuthInit {
  trusted: ReadonlySet<string>
  clock: Clock
  /** The authority that signed the cell's release, when the view holds one. */
  releaseAuthority: (cell: string) => string | undefined
}

/** The client side: the server must hold a host grant from the authority that signed the cell's release. */
export function serverAuthenticator (init: ServerAuthInit): AuthenticateServerPort {
  return async (req, { signal }) => {
    const authority = init.releaseAuthority(req.cell)
    const roots = authority != null ? new Set([authority]) : init.trusted
    const v = await makeVerifier(roots, { clock: init.clock })(req.credentials, { remotePeerId: req.remotePeerId, requiredRole: 'host', cell: req.cell, signal })
    return { peerId: v.subject, authority: v.authority, roles: v.roles }
  }
}
