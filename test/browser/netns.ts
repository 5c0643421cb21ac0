// A network namespace for Chromium with a veth link to the test's own namespace, so that browser tabs
// have a real interface and a default route for WebRTC. Chromium gathers no ICE candidates on
// loopback, and for a page without camera permission only on the default route's interface: on an
// offline machine (CI) tab-to-tab WebRTC cannot connect at all, and on a machine with a network it
// would use that network's address. Here the tabs get 10.231.x.y+1 inside the namespace and reach
// the test's servers and full nodes at 10.231.x.y over the link; both addresses exist only on the
// pair created here and vanish with it.
import { execFileSync } from 'node:child_process'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { CHROMIUM } from './chromium.ts'

export interface BrowserNetns {
  /** Where the test's servers and full nodes listen: the link's end in the test's namespace. */
  hostIp: string
  /** A script that runs Debian's Chromium inside the namespace (give it to launchChromium). */
  chromium: string
  remove: () => void
}

function ip (args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Creates the namespace and link, or throws why it cannot (not root, no iproute2). */
export function createBrowserNetns (dir: string): BrowserNetns {
  const id = process.pid % 100_000
  const name = `cellweb-${id}`
  const outer = `cwa${id}`
  const inner = `cwb${id}`
  // A /30 of 10.231.0.0/16 picked by pid, so concurrent runs do not collide.
  const third = id % 250
  const fourth = Math.floor(id / 250) % 60 * 4
  const hostIp = `10.231.${third}.${fourth + 1}`
  const browserIp = `10.231.${third}.${fourth + 2}`
  // Leftovers of an earlier run with the same pid go first.
  try { ip(['netns', 'del', name]) } catch {}
  try { ip(['link', 'del', outer]) } catch {}
  ip(['netns', 'add', name])
  const remove = (): void => {
    try { ip(['netns', 'del', name]) } catch {}
    try { ip(['link', 'del', outer]) } catch {}
  }
  try {
    ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner])
    ip(['link', 'set', inner, 'netns', name])
    ip(['addr', 'add', `${hostIp}/30`, 'dev', outer])
    ip(['link', 'set', outer, 'up'])
    ip(['-n', name, 'addr', 'add', `${browserIp}/30`, 'dev', inner])
    ip(['-n', name, 'link', 'set', inner, 'up'])
    ip(['-n', name, 'link', 'set', 'lo', 'up'])
    // Without permission to use the camera a page's WebRTC may use only the interface of the default
    // route: with no default route (an offline machine) Chromium gathers no candidates at all.
    ip(['-n', name, 'route', 'add', 'default', 'via', hostIp])
  } catch (err) {
    remove()
    throw err
  }
  const chromium = join(dir, 'chromium-in-netns.sh')
  writeFileSync(chromium, `#!/bin/sh\nexec ip netns exec ${name} ${CHROMIUM} "$@"\n`)
  chmodSync(chromium, 0o755)
  return { hostIp, chromium, remove }
}
