// `cell up`: start a full node and keep it running until SIGINT/SIGTERM.
import { resolve, join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { enable } from '@libp2p/logger'
import { FullNode } from '../full-node.ts'
import { isAuthorityId } from '../../core/identity/index.ts'
import { parseManifest, parseDuration } from '../../core/manifest/index.ts'
import { cellHome, parseCommand, usageFailure } from './usage.ts'
import { FLEET_OPTIONS, bootstrapList, authorityKey, disseminationOf } from './fleet-options.ts'
import type { Dissemination, DisseminationMismatchEvent } from '../../core/fleet/index.ts'
import { readNodeConfig, ZFS_POOL_PATTERN } from './node-config.ts'
import { sandboxLevel, type SandboxMode } from '../capsid/index.ts'
import { issueGrant, encodeGrantToken } from '../../core/identity/index.ts'
import { serveDashboard, nodePageConfig, type DashboardServer } from '../http/static-server.ts'
import { denoBinary } from '../webtransport/sidecar.ts'
import { rotationFromEnv } from '../webtransport/certificates.ts'
import { DEFAULT_METRICS_ADDRESS, parseMetricsAddress, MetricsAddressError, type MetricsAddress } from '../telemetry/metrics-server.ts'
import { exitIfStillHeld, traceHandlesFromEnv } from './open-handles.ts'

const HELP = `usage: cell up [--data DIR] [--bootstrap MULTIADDR]... [--authority KEYFILE] [--trust HEX]... [--grant TOKEN]...

Starts a full node: TCP, WebSockets, WebRTC-direct and WebTransport listeners, Noise, yamux, kad-dht (server),
gossipsub with signed messages. Prints its peer id and addresses, then fleet peers joining and
leaving and each replica it starts or drains and why; stops cleanly on SIGINT/SIGTERM.
Errors (a release it cannot fetch, a crashed replica) go to stderr; DEBUG=cell:* shows all logs.

options:
  --data DIR            node data directory: peer key, artifacts, volumes (default $CELL_HOME/node);
                        one node at a time (a second fails with DataDirInUseError)
  --host IP             listen address (default 127.0.0.1)
  --tcp PORT, --ws PORT, --webrtc PORT   listen ports (default: the ports of the last run in this
                        data directory, else any free port)
  --webtransport PORT   WebTransport (UDP) port for browsers, served by a Deno sidecar; \`off\` for
                        none (default, when the deno npm package is installed: the port of the
                        last run, else any free port; the certificates are kept in DIR too)
  --bootstrap ADDR      a peer to join through (repeatable; or CELL_BOOTSTRAP, or [cell.seeds] of --cell)
  --authority KEYFILE   an authority key this node's operator holds: trust it and grant this node
                        the host role under it
  --trust HEX           trust cells and callers of this authority id (repeatable)
  --grant TOKEN         a grant token issued to this node by \`cell grant host <peer-id>\` (repeatable;
                        or a file <data>/grants/<name>.grant, read again every minute: renewals
                        saved there are taken with no restart)
  --cell DIR            read [cell.seeds] bootstrap from DIR/Cell.toml and trust its authorities
  --config FILE         node config: bootstrap, trust and grants arrays (default $CELL_HOME/node.toml if present);
                        guests_per_host, guests_total: inbound connections of peers that are neither
                        fleet members nor callers with a trusted grant (default 32 per address, 256)
  --sandbox MODE        auto | bwrap | process (default auto). auto and bwrap run replicas in
                        bubblewrap (strict: no host files, no network, own uid, memory/pid/file
                        limits) and fail to start when it is missing; process runs them under
                        Node's permission model (weaker: the network is open) and only cells whose
                        Cell.toml says [cell.sandbox] require = "process"
  --max-replicas N      replicas this node may run
  --scale-down-window D how long load must stay low before replicas drain (default 5m; e.g. 30s)
  --drain-grace D       how long a stop or a drain lets calls in flight finish (default 30s); new
                        calls go to other nodes meanwhile. A second SIGINT/SIGTERM stops at once
  --keep-peers N        fleet peers (bootstrap peers and full nodes in the view) to stay connected
                        to, re-dialing lost ones with backoff (default 8, or all when fewer)
  --heartbeat D         how often the node gossips its records (default 1s; a record expires after
                        three missed heartbeats)
  --peer-check D        how often the node re-checks its fleet connections (default 5s)
  --redial-max D        longest pause between re-dials of a lost peer (default 15s)
  --anti-entropy D      how often it pulls the fleet from a random full node, catching what gossip
                        missed (default 30s, jittered; 0 disables)
  --dissemination M     how fleet records travel: fleet (default; every node's record and replicas
                        on one topic every heartbeat) or per-cell (compact member records on
                        change, each cell's replicas on its own topic, a failure detector; for
                        large fleets). Or CELL_DISSEMINATION, or dissemination in node.toml.
                        Every node and client of one fleet must use the same (a connected
                        node of the other mode is printed once, with what to do)
  --bootstrap-tag-ttl D how long libp2p's bootstrap tag lasts (default 2m; kept peers are tagged
                        keep-alive regardless)
  --metrics ADDR        serve Prometheus text on GET http://ADDR/metrics: HOST:PORT, :PORT or a
                        cell's ":9090/metrics" form (default CELL_METRICS, else 127.0.0.1:9090;
                        off disables; port 0 picks a free one). When the default
                        port is taken (a second node on this machine) a free one is
                        used and printed; a port you chose that is taken fails the
                        start with MetricsPortInUseError. The fleet is served there too:
                        /metrics/nodes/<id>, /metrics/cells/<cell>, /sd/prometheus
  --zfs-pool NAME       create stateful cells' volumes as datasets of this ZFS pool, with the claim
                        as quota (or zfs_pool in node.toml); without it the node offers only the
                        dir driver (plain directories, no quota) and cells that ask for
                        class = "zfs" are never placed here
  --owner-wait D        how long a stateful claim is left to its last owner when that owner's lease
                        ran out without a hand-over and this node has not seen it since it started
                        (a whole fleet stopped at once: the owner may hold writes no snapshot has);
                        after it the claim starts from the newest safe snapshot (default 2m; 0
                        never waits)
  --voter-replace-after D
                        a voter of a stateful claim this node owns that has been out of the fleet
                        this long (or in it without answering the claim's rounds: a full disk) is
                        replaced by another storage node, while a majority of the claim's voters
                        is live (default 5m; 0 never replaces)
  --otlp URL            export trace spans over OTLP/HTTP (JSON) to URL, e.g.
                        http://127.0.0.1:4318/v1/traces (default CELL_OTLP; none when unset)
  --trace-ratio R       share of new traces sampled, 0..1 (default 0.01); calls arriving sampled
                        stay sampled (parent-based)
  --dashboard           serve the fleet dashboard on 127.0.0.1 (the page runs its own light peer,
                        bootstrapping from this node's WebSocket address)
  --dashboard-port N    its port (default: any free port)
  --dashboard-grants    local use only: sign a caller grant with the first --authority key for any
                        tab that asks, so the page can call cells
  -h, --help            show this help`

/** Lines from the fleet and the loop kept while the node starts, before its header is printed. */
const MAX_HELD_LINES = 1000

const OPTIONS = {
  ...FLEET_OPTIONS,
  data: { type: 'string' },
  host: { type: 'string' },
  tcp: { type: 'string' },
  ws: { type: 'string' },
  webrtc: { type: 'string' },
  webtransport: { type: 'string' },
  authority: { type: 'string', multiple: true },
  trust: { type: 'string', multiple: true },
  grant: { type: 'string', multiple: true },
  cell: { type: 'string' },
  config: { type: 'string' },
  sandbox: { type: 'string' },
  'max-replicas': { type: 'string' },
  'scale-down-window': { type: 'string' },
  'keep-peers': { type: 'string' },
  heartbeat: { type: 'string' },
  'peer-check': { type: 'string' },
  'redial-max': { type: 'string' },
  'anti-entropy': { type: 'string' },
  'bootstrap-tag-ttl': { type: 'string' },
  dissemination: { type: 'string' },
  'drain-grace': { type: 'string' },
  metrics: { type: 'string' },
  'zfs-pool': { type: 'string' },
  'owner-wait': { type: 'string' },
  'voter-replace-after': { type: 'string' },
  otlp: { type: 'string' },
  'trace-ratio': { type: 'string' },
  dashboard: { type: 'boolean' },
  'dashboard-port': { type: 'string' },
  'dashboard-grants': { type: 'boolean' }
} as const

function port (text: string | undefined): number | undefined {
  if (text == null) return undefined
  const n = Number(text)
  return Number.isInteger(n) && n >= 0 && n < 65536 ? n : NaN
}

/** `--webtransport`: a port, `off`, or by default any port where the Deno sidecar can run. */
function webTransportPort (text: string | undefined): number | false {
  if (text === 'off' || denoBinary() === undefined) return false
  return port(text) ?? 0
}

/** How long a stopped `cell up` may take to end by itself before it names what holds it and exits. */
const STOPPED_EXIT_GRACE_MS = 5_000

export async function run (argv: string[]): Promise<number> {
  // A node says what goes wrong (a release it cannot fetch, a replica that crashes, a spawn that
  // fails) on stderr; DEBUG=cell:* (or libp2p:*) shows everything instead.
  if (process.env.DEBUG == null || process.env.DEBUG === '') enable('cell:*:error')
  traceHandlesFromEnv()
  const parsed = parseCommand(argv, OPTIONS, HELP, { min: 0, max: 0 })
  if (typeof parsed === 'number') return parsed
  const v = parsed.values
  const wt = webTransportPort(v.webtransport)
  const ports = { host: v.host, tcp: port(v.tcp), ws: port(v.ws), webrtc: port(v.webrtc), webtransport: wt }
  const dashboardPort = port(v['dashboard-port'])
  if ([ports.tcp, ports.ws, ports.webrtc, wt, dashboardPort].some(p => Number.isNaN(p))) return usageFailure('ports must be integers 0-65535', HELP)
  if (v.webtransport !== 'off' && wt === false) process.stderr.write('note: no Deno binary (the deno npm package, or CELL_DENO): this node runs without its WebTransport listener\n')
  for (const t of v.trust ?? []) if (!isAuthorityId(t)) return usageFailure(`--trust ${t} is not a 64-hex authority id`, HELP)
  if (v.sandbox != null && !['auto', 'bwrap', 'process'].includes(v.sandbox)) return usageFailure('--sandbox must be auto, bwrap or process', HELP)
  const sandbox = (v.sandbox ?? 'auto') as SandboxMode
  // Fails here, before the node joins the fleet, with SandboxUnavailableError saying what to do
  // when bubblewrap does not work; the weaker sandbox is only ever the operator's explicit choice.
  if (sandboxLevel(sandbox) === 'process') {
    process.stderr.write('warning: --sandbox process: replicas run under Node\'s permission model, not bubblewrap. They can reach ' +
      'the network (including services on 127.0.0.1), are not memory- or process-limited beyond the V8 heap, and run as this ' +
      'node\'s user. Only cells that declare [cell.sandbox] require = "process" will run here.\n')
  }
  let metrics: MetricsAddress | 'off' = DEFAULT_METRICS_ADDRESS
  const metricsText = v.metrics ?? (process.env.CELL_METRICS !== '' ? process.env.CELL_METRICS : undefined)
  if (metricsText != null) {
    try {
      metrics = parseMetricsAddress(metricsText)
    } catch (err) {
      if (err instanceof MetricsAddressError) return usageFailure(err.message, HELP)
      throw err
    }
  }
  const otlpUrl = v.otlp ?? (process.env.CELL_OTLP !== '' ? process.env.CELL_OTLP : undefined)
  if (otlpUrl != null && !/^https?:\/\/[^\s]+$/.test(otlpUrl)) return usageFailure(`--otlp ${otlpUrl} is not an http:// or https:// URL`, HELP)
  const traceRatio = v['trace-ratio'] != null ? Number(v['trace-ratio']) : 0.01
  if (!Number.isFinite(traceRatio) || traceRatio < 0 || traceRatio > 1) return usageFailure('--trace-ratio must be a number from 0 to 1', HELP)
  const config = await readNodeConfig(v.config ?? join(cellHome(), 'node.toml'), { optional: v.config == null })
  let biology: { stabilisationWindowMs: number } | undefined
  if (v['scale-down-window'] != null) {
    try {
      biology = { stabilisationWindowMs: parseDuration(v['scale-down-window']) }
    } catch (err) {
      return usageFailure(`--scale-down-window: ${(err as Error).message}`, HELP)
    }
  }
  let drainGraceMs: number | undefined
  if (v['drain-grace'] != null) {
    try {
      drainGraceMs = parseDuration(v['drain-grace'])
    } catch (err) {
      return usageFailure(`--drain-grace: ${(err as Error).message}`, HELP)
    }
  }
  // Fleet-link timers (the defaults suit a real fleet; tests compress them to see hours in minutes)
  // and the wait for a stateful claim's former owner. `0` turns off anti-entropy and that wait.
  const durations: Record<string, number | undefined> = {}
  for (const flag of ['heartbeat', 'peer-check', 'redial-max', 'anti-entropy', 'bootstrap-tag-ttl', 'owner-wait', 'voter-replace-after'] as const) {
    const text = v[flag]
    if (text == null) continue
    try {
      durations[flag] = text === '0' ? 0 : parseDuration(text)
    } catch (err) {
      return usageFailure(`--${flag}: ${(err as Error).message}`, HELP)
    }
    if (flag !== 'anti-entropy' && flag !== 'owner-wait' && flag !== 'voter-replace-after' && durations[flag] === 0) return usageFailure(`--${flag} must be more than 0`, HELP)
  }
  const keepPeers = v['keep-peers'] != null ? Number(v['keep-peers']) : undefined
  if (keepPeers !== undefined && (!Number.isInteger(keepPeers) || keepPeers < 0 || keepPeers > 256)) return usageFailure('--keep-peers must be a whole number 0-256', HELP)
  const zfsPool = v['zfs-pool'] ?? config.zfsPool
  if (zfsPool !== undefined && !ZFS_POOL_PATTERN.test(zfsPool)) return usageFailure(`--zfs-pool ${zfsPool} is not a ZFS pool name`, HELP)
  let dissemination: Dissemination
  try {
    // The flag, else CELL_DISSEMINATION, else this node's config file (--config or node.toml).
    dissemination = await disseminationOf(v.dissemination, config)
  } catch (err) {
    return usageFailure((err as Error).message, HELP)
  }
  const trust = [...config.trust, ...(v.trust ?? [])]
  if (v.cell != null) {
    const file = join(v.cell, 'Cell.toml')
    const manifest = parseManifest(await readFile(file, 'utf8'), { file })
    trust.push(manifest.authority.ed25519, ...manifest.authority.trust)
  }
  const authorityKeys = await Promise.all((v.authority ?? []).map(async p => await authorityKey(p)))
  const grantKey = authorityKeys[0]
  if (v['dashboard-grants'] === true && (v.dashboard !== true || grantKey === undefined)) return usageFailure('--dashboard-grants needs --dashboard and an --authority key', HELP)
  const dataDir = resolve(v.data ?? join(cellHome(), 'node'))
  const node = await FullNode.create({
    dataDir,
    listen: ports,
    ...(rotationFromEnv() !== undefined ? { webTransport: { rotation: rotationFromEnv() } } : {}),
    bootstrap: [...config.bootstrap, ...await bootstrapList(v.bootstrap, v.cell)],
    trust,
    authorityKeys,
    grants: [...config.grants, ...(v.grant ?? [])],
    sandbox,
    maxReplicas: v['max-replicas'] != null ? Number(v['max-replicas']) : undefined,
    biology,
    heartbeatMs: durations.heartbeat,
    dissemination,
    ...(config.guests !== undefined ? { guestConnections: config.guests } : {}),
    links: { keep: keepPeers, checkMs: durations['peer-check'], maxBackoffMs: durations['redial-max'], antiEntropyMs: durations['anti-entropy'], bootstrapTagTtlMs: durations['bootstrap-tag-ttl'] },
    drainGraceMs,
    storage: { ...(zfsPool !== undefined ? { zfsPool } : {}), ...(durations['owner-wait'] !== undefined ? { tuning: { formerOwnerWaitMs: durations['owner-wait'] } } : {}), ...(durations['voter-replace-after'] !== undefined ? { voterReplaceAfterMs: durations['voter-replace-after'] } : {}) },
    reuseAddresses: true,
    // What it says of its grants (one taken from <data>/grants/, one about to end or ended): plain
    // timestamped lines on stderr, not the log's "cell:node:grants:error" for a grant it took.
    grantNotice: (text) => { process.stderr.write(`${new Date().toISOString()} ${text}\n`) },
    ...(metrics !== 'off' ? { metrics, metricsFallback: metricsText == null } : {}),
    ...(otlpUrl != null ? { otlp: { url: otlpUrl, ratio: traceRatio } } : {})
  })
  for (const note of node.notes) process.stderr.write(`note: ${note}\n`)
  const noted = node.notes.length
  let quiet = false
  // What the fleet and the loop say at the default level, one line each. Listened to before start: a
  // node restarted on its --data rejoins its fleet and brings its cells back while it starts. Those
  // lines wait (at most MAX_HELD_LINES) until the node's own header is out.
  let held: string[] | undefined = []
  let heldDropped = 0
  const say = (text: string): void => {
    if (quiet) return
    if (held === undefined) process.stdout.write(`${text}\n`)
    else if (held.length < MAX_HELD_LINES) held.push(text)
    else heldDropped++
  }
  // A connected node of the other dissemination mode (a mixed fleet: neither sees the other's
  // replicas), once per appearance, with what to do.
  node.mesh.gossip.addEventListener('dissemination-mismatch', (evt) => { say((evt as DisseminationMismatchEvent).detail.message) })
  // Fleet peers joining and leaving: a fleet that splits says so.
  const peer = (what: string) => (evt: Event): void => {
    const { peerId, connected } = (evt as CustomEvent<{ peerId: string, connected: number }>).detail
    say(`peer ${what} …${peerId.slice(-6)} (${connected} fleet peer${connected === 1 ? '' : 's'})`)
  }
  node.mesh.keeper?.addEventListener('join', peer('joined'))
  node.mesh.keeper?.addEventListener('leave', peer('left'))
  // Per-cell: a node the failure detectors found down (by quorum), once per verdict.
  node.mesh.view.addEventListener('down-report', (evt) => {
    const { subject, verdict } = (evt as CustomEvent<{ subject: string, verdict: boolean }>).detail
    if (verdict) say(`node …${subject.slice(-6)} found down (${node.mesh.view.downReportsAbout(subject)?.reporters.length ?? 0} fleet peers lost it)`)
  })
  // The autonomic loop's notices (replicas started and drained and why, retired cells, halted or
  // crash-looping releases), once each.
  node.loop.addEventListener('notice', (evt) => { say((evt as CustomEvent<{ text: string }>).detail.text) })
  // A start that fails stops the node itself (run dir, lock): nothing is left behind.
  await node.start()
  for (const note of node.notes.slice(noted)) process.stderr.write(`note: ${note}\n`)
  process.once('SIGINT', () => { quiet = true })
  process.once('SIGTERM', () => { quiet = true })
  let dashboard: DashboardServer | undefined
  if (v.dashboard === true) {
    try {
      dashboard = await serveDashboard({
        port: dashboardPort,
        garbage: node.garbage,
        config: () => nodePageConfig(node),
        issueGrant: v['dashboard-grants'] === true && grantKey !== undefined
          ? async (peerId, options) => {
            const now = Date.now()
            return encodeGrantToken(await issueGrant(grantKey, { subject: peerId, roles: ['caller'], notBeforeMs: now - 60_000, notAfterMs: now + 12 * 3_600_000 }, options))
          }
          : undefined
      })
    } catch (err) {
      await node.stop()
      throw err
    }
  }
  process.stdout.write(`cell node ${node.peerId}\n`)
  for (const a of node.addresses()) process.stdout.write(`  listening ${a}\n`)
  if (node.metricsUrl !== undefined) process.stdout.write(`metrics ${node.metricsUrl}\n`)
  process.stdout.write(`storage ${node.storageSummary()}\n`)
  if (dashboard !== undefined) process.stdout.write(`dashboard ${dashboard.url}\n`)
  process.stdout.write(`trusts ${[...node.trusted].map(a => a.slice(0, 16) + '…').join(', ') || 'no authority yet (pass --authority, --trust or --grant)'}\n`)
  // Grants it was given end: say when, and where a renewal goes (taken while the node runs).
  for (const g of node.grantWatch?.expiries() ?? []) {
    if (!g.selfIssued) process.stdout.write(`granted by ${g.authority.slice(0, 16)}… until ${new Date(g.notAfterMs).toISOString()}: save its renewal in ${join(dataDir, 'grants')}/ before then\n`)
  }
  // Ready to paste into another shell: every `cell` command there then joins through this node (a
  // restart on the same --data listens on the same ports, so the line stays valid).
  const exportLine = bootstrapLine(node.addresses())
  if (exportLine !== undefined) process.stdout.write(`${exportLine}\n`)
  const pending = held
  held = undefined
  for (const text of pending) say(text)
  if (heldDropped > 0) say(`(${heldDropped} more line(s) while starting not shown)`)
  await new Promise<void>((done) => {
    // The first signal drains (calls in flight get the grace period); a second one stops at once.
    const force = new AbortController()
    let stopping = false
    const stop = (sig: string): void => {
      if (stopping) {
        process.stdout.write(`${sig} again: stopping replicas now\n`)
        force.abort()
        return
      }
      stopping = true
      process.stdout.write(`\n${sig}: draining replicas and stopping…\n`)
      const fromMs = Date.now()
      // Each step with its time, so a slow stop says where it waited.
      const onStep = (what: string): void => { process.stdout.write(`stopping: ${what} (${((Date.now() - fromMs) / 1000).toFixed(1)} s)\n`) }
      void (dashboard?.close() ?? Promise.resolve()).then(async () => { await node.stop({ signal: force.signal, onStep }) }).then(done, (err) => { process.stderr.write(`stop failed: ${(err as Error).message}\n`); done() })
    }
    process.on('SIGINT', () => { stop('SIGINT') })
    process.on('SIGTERM', () => { stop('SIGTERM') })
  })
  process.stdout.write('stopped\n')
  // Everything is closed: the process ends by itself. If a handle still holds it, say which and go.
  exitIfStillHeld(STOPPED_EXIT_GRACE_MS)
  return 0
}

/** `export CELL_BOOTSTRAP=<tcp address>`: a TCP address other machines can reach when there is one, else loopback. */
export function bootstrapLine (addresses: string[]): string | undefined {
  const tcp = addresses.filter(a => /^\/ip[46]\/[^/]+\/tcp\/\d+\/p2p\/\w+$/.test(a))
  const pick = tcp.find(a => !a.startsWith('/ip4/127.') && !a.startsWith('/ip6/::1/')) ?? tcp[0]
  return pick !== undefined ? `export CELL_BOOTSTRAP=${pick}` : undefined
}
