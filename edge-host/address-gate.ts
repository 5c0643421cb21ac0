// Which multiaddrs the edge may dial. libp2p's browser build (which workerd gets) refuses private
// addresses and plain ws:// outright; a fleet on a laptop or a LAN lives exactly there, so the edge
// allows private hosts only when ALLOW_HOSTS names them, and public hosts always.

/** The host a multiaddr names (/ip4, /ip6, /dns, /dns4, /dns6), lower-cased; undefined if none. */
export function hostOf (addr: string): string | undefined {
  const m = /^\/(ip4|ip6|dns|dns4|dns6|dnsaddr)\/([^/]+)/.exec(addr)
  return m?.[2].toLowerCase()
}

/** Loopback, RFC 1918, CGNAT, link-local, unique-local and `localhost` names. */
export function isPrivateHost (host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host)
  if (v4 != null) {
    const [a, b] = [Number(v4[1]), Number(v4[2])]
    return a === 127 || a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) ||
      (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127)
  }
  if (host.includes(':')) {
    const h = host.replace(/^\[|\]$/g, '')
    return h === '::1' || h === '::' || /^f[cd][0-9a-f]{2}:/.test(h) || /^fe[89ab][0-9a-f]:/.test(h) || h.startsWith('::ffff:')
  }
  return false
}

/** True when the edge must not dial `addr`: a private host that ALLOW_HOSTS does not list, or no host at all. */
export function denyDial (addr: string, allowHosts: ReadonlySet<string>): boolean {
  const host = hostOf(addr)
  if (host === undefined) return true
  if (allowHosts.has(host)) return false
  return isPrivateHost(host)
}
