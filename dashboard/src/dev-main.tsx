// Development page only (dashboard/dev.html): the dashboard over the made-up fleet of fake-source.ts.
import { mountDashboard } from './mount.tsx'
import { createFakeSource } from './fake-source.ts'

const params = new URLSearchParams(location.search)
const source = params.has('none')
  ? undefined
  : createFakeSource({ withPolicy: !params.has('nopolicy'), empty: params.has('empty'), status: (params.get('status') ?? 'live') as 'live' })
mountDashboard(document.getElementById('app')!, source)
Object.assign(window, { fakeSource: source })
