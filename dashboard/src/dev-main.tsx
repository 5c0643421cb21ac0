// Development page only (dashboard/dev.html): the dashboard over the made-up fleet of fake-source.ts.
import { mountDashboard } from './mount.tsx'
import { createFakeSource } from './fake-source.ts'

const params = new URLSearchParams(location.search)
if (params.has('history')) {
  // 15 scripted minutes replayed fast on a virtual clock (deterministic from a fixed start), then
  // one heartbeat per real second: the charts show history and rollout events right away.
  let vt = Date.UTC(2026, 0, 1, 12, 0, 0)
  let steps = 0
  const source = createFakeSource({ now: () => vt, tickMs: 0, script: true, withPolicy: !params.has('nopolicy') })
  mountDashboard(document.getElementById('app')!, source, { now: () => vt, tickMs: 20, refreshMs: 5 })
  const fast = setInterval(() => {
    vt += 1000
    source.step()
    if (++steps < 900) return
    clearInterval(fast)
    setInterval(() => { vt += 1000; source.step() }, 1000)
  }, 20)
  Object.assign(window, { fakeSource: source, fakeSteps: () => steps })
} else {
  const source = params.has('none')
    ? undefined
    : createFakeSource({ withPolicy: !params.has('nopolicy'), empty: params.has('empty'), status: (params.get('status') ?? 'live') as 'live' })
  mountDashboard(document.getElementById('app')!, source)
  Object.assign(window, { fakeSource: source })
}
