import { describe, it, expect } from 'vitest'
import { bwrapArgs, resolveSandbox, sandboxLevel, sandboxRole, levelOfRoles, satisfiesSandbox, runtimeLibraries, resolveNodeBinary } from './sandbox.ts'
import type { LaunchPaths } from './sandbox.ts'
import { SandboxUnavailableError } from './errors.ts'
import { resolveLimits, prlimitArgs, DEFAULT_LIMITS } from './limits.ts'

const paths: LaunchPaths = {
  node: '/opt/node/bin/node',
  runner: '/srv/cell/runner.mjs',
  artifact: '/root/.cell/artifacts/abc.mjs',
  dataDir: '/root/.cell/volumes/billing-1',
  socketDir: '/tmp/cell-run-x/i1',
  socketName: 'capsid.sock'
}

/** Host paths bound into the sandbox, as [source, destination]. */
function binds (args: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = []
  args.forEach((a, i) => { if (a === '--bind' || a === '--ro-bind') out.push([args[i + 1], args[i + 2]]) })
  return out
}

describe('bwrapArgs', () => {
  const libs = ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']
  const args = bwrapArgs(paths, { libraries: libs, tmpBytes: 1 << 20, privileged: true })

  it('binds only node, its libraries, the runner, the artifact, the volume and the socket dir', () => {
    expect(binds(args)).toEqual([
      ...libs.map(l => [l, l]),
      [paths.dataDir, '/cell/data'],
      [paths.artifact, '/cell/app/cell.mjs'],
      [paths.runner, '/cell/app/runner.mjs'],
      [paths.node, '/cell/bin/node'],
      [paths.socketDir, '/cell/run']
    ])
    // Only the volume is writable.
    expect(args.filter(a => a === '--bind')).toHaveLength(1)
    expect(args.slice(0, 2)).toEqual(['--tmpfs', '/'])
    expect(args).toContain('--remount-ro')
  })

  it('caps /tmp and runs the node binary on the runner', () => {
    const i = args.indexOf('--size')
    expect(args.slice(i, i + 4)).toEqual(['--size', String(1 << 20), '--tmpfs', '/tmp'])
    expect(args.slice(args.indexOf('--') + 1)).toEqual(['/cell/bin/node', '/cell/app/runner.mjs'])
  })

  it('as root: no user namespace (it would map the replica onto uid 0), only SETUID/SETGID kept for the runner to drop root', () => {
    expect(args).not.toContain('--unshare-all')
    expect(args).not.toContain('--unshare-user')
    for (const ns of ['--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts']) expect(args).toContain(ns)
    const caps = args.flatMap((a, i) => a === '--cap-add' ? [args[i + 1]] : [])
    expect(caps.sort()).toEqual(['CAP_SETGID', 'CAP_SETUID'])
    expect(args.indexOf('--cap-drop')).toBeLessThan(args.indexOf('--cap-add'))
  })

  it('unprivileged: every namespace, no capabilities, no nested user namespaces', () => {
    const u = bwrapArgs(paths, { libraries: libs, tmpBytes: 1 << 20, privileged: false })
    expect(u).toEqual(expect.arrayContaining(['--unshare-all', '--unshare-user', '--disable-userns']))
    expect(u).not.toContain('--cap-add')
  })
})

describe('sandbox levels', () => {
  it('auto without bubblewrap is a named error telling the operator what to do, never a silent fallback', () => {
    const err = (() => { try { resolveSandbox('auto', () => undefined) } catch (e) { return e } })() as Error
    expect(err).toBeInstanceOf(SandboxUnavailableError)
    expect(err.message).toMatch(/install bubblewrap/i)
    expect(err.message).toContain('--sandbox process')
    expect(() => resolveSandbox('bwrap', () => undefined)).toThrow(SandboxUnavailableError)
    expect(() => sandboxLevel('auto', () => undefined)).toThrow(SandboxUnavailableError)
    expect(sandboxLevel('process', () => undefined)).toBe('process')
  })

  it('role tags, and which node levels satisfy which requirement', () => {
    expect(sandboxRole('strict')).toBe('sandbox-strict')
    expect(sandboxRole('process')).toBe('sandbox-process')
    for (const r of [sandboxRole('strict'), sandboxRole('process')]) expect(r).toMatch(/^[a-z][a-z0-9-]*$/)
    expect(levelOfRoles(['full', 'sandbox-strict'])).toBe('strict')
    expect(levelOfRoles(['full', 'sandbox-process'])).toBe('process')
    // A node that advertises nothing is not trusted to be strict.
    expect(levelOfRoles(['full'])).toBe('process')
    expect(satisfiesSandbox('strict', 'strict')).toBe(true)
    expect(satisfiesSandbox('strict', 'process')).toBe(true)
    expect(satisfiesSandbox('process', 'process')).toBe(true)
    expect(satisfiesSandbox('process', 'strict')).toBe(false)
  })
})

describe('limits', () => {
  it('defaults, floors and the prlimit prefix', () => {
    expect(resolveLimits()).toEqual(DEFAULT_LIMITS)
    expect(resolveLimits({ pids: 1, memoryBytes: 10, openFiles: 3.7, tmpBytes: 0 })).toEqual({ pids: 32, memoryBytes: 64 * 1024 * 1024, openFiles: 64, tmpBytes: 1024 * 1024 })
    expect(prlimitArgs('/usr/bin/prlimit', DEFAULT_LIMITS, true)).toEqual(['/usr/bin/prlimit', '--nofile=1024:1024', '--nproc=128:128', '--core=0:0', '--'])
    // Without a uid of its own, NPROC would count every process of the node's user.
    expect(prlimitArgs('/usr/bin/prlimit', DEFAULT_LIMITS, false)).not.toContain('--nproc=128:128')
  })

  it('finds the shared libraries of the node binary', () => {
    const libs = runtimeLibraries(resolveNodeBinary())
    expect(libs.some(l => /libc\.so/.test(l))).toBe(true)
    for (const l of libs) expect(l.startsWith('/')).toBe(true)
  })
})
