// Grants handed to a node end (`cell grant` makes them for 7 days). On the old code a node read its
// grants once, at start: a renewed grant file took a restart, and nothing said the grant was about
// to end until every peer refused the node. GrantWatch reads <data>/grants/ on its clock, takes a
// renewal or a grant of an authority it did not trust yet (then trusting it, as a start would),
// says an ending grant (hourly, with what to do) and an ended one (once), and says a bad file once.
import { afterEach, describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Credentials, generateAuthority, issueGrant, type AuthorityKey } from '../core/identity/index.ts'
import { encodeGrantToken } from '../core/identity/grant-token.ts'
import { ManualClock } from '../core/testing/manual-clock.ts'
import { GrantWatch, MAX_GRANT_FILE_BYTES, MAX_GRANT_FILES } from './grant-watch.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

async function setup (): Promise<{ clock: ManualClock, dir: string, credentials: Credentials, fleet: AuthorityKey, own: AuthorityKey, said: string[], watch: GrantWatch, grantFile: (name: string, from: AuthorityKey, ms: number, subject?: string) => Promise<void> }> {
  const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0))
  const dir = await mkdtemp(join(tmpdir(), 'cell-grants-'))
  dirs.push(dir)
  const credentials = new Credentials({ peerKey: await generateKeyPair('Ed25519'), clock })
  const [fleet, own] = [await generateAuthority(), await generateAuthority()]
  // Given by the fleet's operator for 7 days, issued 5 days ago; the node's own authority's is self-issued.
  credentials.addGrant(await issueGrant(fleet, { subject: credentials.peerId, roles: ['host'], notBeforeMs: clock.now() - 5 * DAY, notAfterMs: clock.now() + 2 * DAY }))
  credentials.addGrant(await issueGrant(own, { subject: credentials.peerId, roles: ['host', 'caller', 'operator'], notBeforeMs: clock.now(), notAfterMs: clock.now() + 3 * HOUR }))
  const said: string[] = []
  const watch = new GrantWatch({ dir, credentials, trusted: new Set([fleet.id, own.id]), selfIssued: new Set([own.id]), clock, warn: (t) => { said.push(t) } })
  const grantFile = async (name: string, from: AuthorityKey, ms: number, subject = credentials.peerId): Promise<void> => {
    await writeFile(join(dir, name), encodeGrantToken(await issueGrant(from, { subject, roles: ['host'], notBeforeMs: clock.now() - 60_000, notAfterMs: clock.now() + ms })) + '\n')
  }
  return { clock, dir, credentials, fleet, own, said, watch, grantFile }
}

describe('grants handed to a node', () => {
  it('says a grant about to end every hour with what to do, and takes its renewal from the grants directory without a restart', async () => {
    const { clock, dir, credentials, fleet, said, watch, grantFile } = await setup()
    await watch.check()
    expect(said).toEqual([])
    // A day before the end: said, with the command and the place; the self-issued grant never is.
    clock.advance(DAY + HOUR)
    await watch.check()
    expect(said).toHaveLength(1)
    expect(said[0]).toBe(`the host grant from ${fleet.id.slice(0, 16)}… ends in 23 h 0 min (2026-12-03T12:00:00.000Z); issue another with \`cell grant host ${credentials.peerId}\` and save it as ${join(dir, '<name>.grant')}: the node takes it within a minute, no restart`)
    clock.advance(30 * 60_000)
    await watch.check()
    expect(said).toHaveLength(1)
    clock.advance(31 * 60_000)
    await watch.check()
    expect(said).toHaveLength(2)
    expect(said[1]).toMatch(/ends in 21 h 59 min/)
    // The operator saves a renewal: taken on the next look, said once, nothing more to say.
    const renewedAt = clock.now()
    await grantFile('renewed.grant', fleet, 7 * DAY)
    await watch.check()
    expect(said[2]).toMatch(new RegExp(`^took the host grant from ${fleet.id.slice(0, 16)}… in .*renewed\\.grant: valid until 2026-12-09T`))
    expect(credentials.grantFor(fleet.id)?.notAfterMs).toBe(clock.now() + 7 * DAY)
    expect(watch.renewed).toBe(1)
    for (let i = 0; i < 3; i++) { clock.advance(HOUR); await watch.check() }
    expect(said).toHaveLength(3)
    // Its end is what the metric carries.
    expect(watch.expiries().find(e => e.authority === fleet.id)).toEqual({ authority: fleet.id, notAfterMs: renewedAt + 7 * DAY, selfIssued: false })
  })

  it('says an ended grant once', async () => {
    const { clock, fleet, said, watch } = await setup()
    clock.advance(2 * DAY + 1)
    await watch.check()
    await watch.check()
    clock.advance(3 * HOUR)
    await watch.check()
    expect(said.filter(s => s.includes('ENDED'))).toEqual([`the host grant from ${fleet.id.slice(0, 16)}… ENDED at 2026-12-03T12:00:00.000Z: peers refuse this node's records for that authority's cells; issue another with \`cell grant host ${said[0].match(/cell grant host (\S+)`/)![1]}\` and save it as ${said[0].match(/save it as (\S+<name>\.grant)/)![1]}: the node takes it within a minute, no restart`])
    expect(said.filter(s => !s.includes('ENDED'))).toEqual([])
  })

  it('refuses a forged, misaddressed or oversized grant file, saying each once, and never shortens a grant', async () => {
    const { dir, credentials, fleet, said, watch, grantFile } = await setup()
    const stranger = await generateAuthority()
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await writeFile(join(dir, 'garbage.grant'), 'not a grant token')
    await grantFile('stolen.grant', fleet, 7 * DAY, other)
    // A stranger's grant to another peer id does not make the node trust the stranger.
    await grantFile('stranger.grant', stranger, 7 * DAY, other)
    await grantFile('shorter.grant', fleet, HOUR)
    await writeFile(join(dir, 'huge.grant'), 'x'.repeat(MAX_GRANT_FILE_BYTES + 1))
    const held = credentials.grantFor(fleet.id)!
    await watch.check()
    await watch.check()
    expect(said.filter(s => s.includes('garbage.grant'))).toEqual([expect.stringMatching(/^ignoring .*garbage\.grant: .*garbage\.grant does not verify: /)])
    expect(said.filter(s => s.includes('stolen.grant'))).toEqual([expect.stringMatching(/WrongSubjectError/)])
    expect(said.filter(s => s.includes('stranger.grant'))).toEqual([expect.stringMatching(/WrongSubjectError/)])
    expect(said.filter(s => s.includes('huge.grant'))).toEqual([expect.stringMatching(/more than a grant/)])
    expect(said.filter(s => s.includes('shorter.grant'))).toEqual([])
    expect(credentials.grantFor(fleet.id)).toBe(held)
    expect(credentials.authorities()).not.toContain(stranger.id)
    expect(watch.renewed).toBe(0)
    expect(watch.newlyTrusted).toBe(0)
  })

  it('takes a grant file from an authority the node does not trust yet, and trusts it from then on, as a start with the file would', async () => {
    const { dir, credentials, said, grantFile, clock } = await setup()
    const newcomer = await generateAuthority()
    const trusted = new Set<string>()
    const told: string[] = []
    const watch = new GrantWatch({ dir, credentials, trusted, selfIssued: new Set(), clock, warn: (t) => { said.push(t) } })
    watch.onTrusted = (a) => { told.push(a) }
    await grantFile('newcomer.grant', newcomer, 7 * DAY)
    await watch.check()
    expect([...trusted]).toEqual([newcomer.id])
    expect(credentials.grantFor(newcomer.id)?.issuer).toBe(newcomer.id)
    expect(told).toEqual([newcomer.id])
    expect(watch.newlyTrusted).toBe(1)
    expect(said.filter(s => s.includes('newcomer.grant'))).toEqual([expect.stringMatching(new RegExp(`^took the host grant from ${newcomer.id.slice(0, 16)}… in .*newcomer\\.grant: valid until .*; this node trusts ${newcomer.id.slice(0, 16)}… from now on \\(no restart\\)$`))])
    // Looked at again: nothing new to take, trust, or tell.
    await watch.check()
    expect(told).toHaveLength(1)
    expect(watch.renewed).toBe(1)
  })

  it('trusts at most MAX_GRANT_FILES authorities through grant files, saying the rest once', async () => {
    const { dir, credentials, said, grantFile, clock } = await setup()
    const trusted = new Set(Array.from({ length: MAX_GRANT_FILES }, (_, i) => `authority-${i}`))
    const watch = new GrantWatch({ dir, credentials, trusted, selfIssued: new Set(), clock, warn: (t) => { said.push(t) } })
    const late = await generateAuthority()
    await grantFile('late.grant', late, 7 * DAY)
    await watch.check()
    await watch.check()
    expect(trusted.has(late.id)).toBe(false)
    expect(said.filter(s => s.includes('late.grant'))).toEqual([expect.stringMatching(/already trusts 64 authorities: not taken$/)])
  })
})
