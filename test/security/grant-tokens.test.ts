// Issue 7.8: a grant handed to a node (`--grant`, node.toml, `<data>/grants/*.grant`) made its issuer
// trusted without the token being verified, so a forged token added any authority to the trust set.
// Now the token must verify (issuer's signature, issued to this node's peer id, valid now) before its
// issuer counts; a forged or misaddressed one stops the node with GrantRejectedError naming its
// source, and an expired one is skipped (logged) without trusting its issuer.
import { describe, it, expect, afterAll } from 'vitest'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateAuthority, authorityIdOf, issueGrant, encodeGrantToken, type Certificate } from '../../core/identity/index.ts'
import { FullNode } from '../../node-host/full-node.ts'
import { loadOrCreatePeerKey } from '../../node-host/keys/peer-key-file.ts'

describe('grants given to a node (issue 7.8)', () => {
  let root = ''
  afterAll(async () => { if (root !== '') await rm(root, { recursive: true, force: true }) })

  async function nodeDir (name: string): Promise<{ dir: string, peerId: string }> {
    root ||= await mkdtemp(join(tmpdir(), 'cell-grants-'))
    const dir = join(root, name)
    await mkdir(dir, { recursive: true })
    const key = await loadOrCreatePeerKey(join(dir, 'peer.key'))
    return { dir, peerId: peerIdFromPrivateKey(key).toString() }
  }

  it('trusts the issuer of a grant that verifies and refuses forged, misaddressed and expired ones', async () => {
    const authority = await generateAuthority()
    const id = authorityIdOf(authority.publicKey)
    const now = Date.now()
    const grantFor = async (subject: string, over: { notBeforeMs?: number, notAfterMs?: number } = {}): Promise<Certificate> =>
      await issueGrant(authority, { subject, roles: ['host'], notBeforeMs: over.notBeforeMs ?? now - 60_000, notAfterMs: over.notAfterMs ?? now + 86_400_000 })

    // A valid token: the issuer is trusted.
    const good = await nodeDir('good')
    const node = await FullNode.create({ dataDir: good.dir, grants: [encodeGrantToken(await grantFor(good.peerId))], listen: { webrtc: false } })
    expect(node.trusted.has(id)).toBe(true)

    // A token whose roles were widened after signing: bad signature.
    const forged = await nodeDir('forged')
    const widened = { ...await grantFor(forged.peerId), roles: ['host', 'caller', 'operator'] } as Certificate
    await expect(FullNode.create({ dataDir: forged.dir, grants: [encodeGrantToken(widened)], listen: { webrtc: false } }))
      .rejects.toMatchObject({ name: 'GrantRejectedError', message: expect.stringMatching(/BadSignatureError/) })

    // A stranger's key signing a grant that claims to come from the authority: bad signature too.
    const stranger = await generateAuthority()
    const posing = { ...await issueGrant(stranger, { subject: forged.peerId, roles: ['host'], notBeforeMs: now - 60_000, notAfterMs: now + 86_400_000 }), issuer: id }
    await expect(FullNode.create({ dataDir: forged.dir, grants: [encodeGrantToken(posing)], listen: { webrtc: false } }))
      .rejects.toMatchObject({ name: 'GrantRejectedError' })

    // A valid grant for another peer id, dropped in the node's grants directory: named by its file.
    const other = await nodeDir('other')
    await mkdir(join(other.dir, 'grants'))
    await writeFile(join(other.dir, 'grants', 'stolen.grant'), encodeGrantToken(await grantFor(good.peerId)))
    await expect(FullNode.create({ dataDir: other.dir, listen: { webrtc: false } }))
      .rejects.toMatchObject({ name: 'GrantRejectedError', message: expect.stringMatching(/stolen\.grant.*WrongSubjectError/) })

    // An expired grant is skipped: the node starts, and the issuer is not trusted because of it.
    const stale = await nodeDir('stale')
    const expired = await FullNode.create({ dataDir: stale.dir, grants: [encodeGrantToken(await grantFor(stale.peerId, { notBeforeMs: now - 3 * 86_400_000, notAfterMs: now - 86_400_000 }))], listen: { webrtc: false } })
    expect(expired.trusted.has(id)).toBe(false)
  }, 60_000)
})
