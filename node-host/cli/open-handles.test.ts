// A stopped `cell up` whose process a leaked handle keeps alive names the handle and exits, instead
// of hanging until a supervisor SIGKILLs it (the soak saw a node print `stopped` and live on for 60 s).
// Each case runs a small script in its own Node 24 process, as `cell up` runs.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeTempDir, REPO_ROOT } from './cli-harness.ts'

let dir: { path: string, remove: () => Promise<void> }
beforeAll(async () => { dir = await makeTempDir('cell-handles-') })
afterAll(async () => { await dir.remove() })

async function runScript (name: string, body: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null, stderr: string, ms: number }> {
  const file = join(dir.path, name)
  await writeFile(file, `import { exitIfStillHeld, traceHandlesFromEnv } from ${JSON.stringify(join(REPO_ROOT, 'node-host/cli/open-handles.ts'))}\n${body}\n`)
  const from = Date.now()
  return await new Promise((resolve, reject) => {
    // The deadline: a process still alive after 30 s is the hang this guards against.
    execFile(process.execPath, [file], { env: { ...process.env, CELL_TRACE_HANDLES: '', ...env }, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err !== null && (err as { killed?: boolean }).killed === true) { reject(new Error(`${name} was still running after 30 s: ${stderr}`)); return }
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : null), stderr, ms: Date.now() - from })
    })
  })
}

describe('exitIfStillHeld after a stop', () => {
  it('lets a process whose handles are all closed end by itself, silently and at once', async () => {
    const r = await runScript('clean.ts', 'traceHandlesFromEnv(); const t = setTimeout(() => {}, 60_000); clearTimeout(t); exitIfStillHeld(20_000)')
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    // It did not wait out the grace: the guard's own timer holds nothing.
    expect(r.ms).toBeLessThan(15_000)
  })

  it('names a leaked timer and exits with the exit code already set', async () => {
    const r = await runScript('leak.ts', 'setInterval(() => {}, 60_000); process.exitCode = 3; exitIfStillHeld(200)')
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/stopped, but the process was still held 0 s later by Timeout ×1/)
    expect(r.stderr).toMatch(/CELL_TRACE_HANDLES=1 names where they were made/)
  })

  it('with CELL_TRACE_HANDLES=1, says where the leaked timer and server were made', async () => {
    const r = await runScript('traced.ts', [
      "import { createServer } from 'node:net'",
      'traceHandlesFromEnv()',
      'function armForgottenTimer () { setTimeout(() => {}, 60_000) }',
      'armForgottenTimer()',
      "createServer().listen(0, '127.0.0.1') // listens after a lookup: made in a callback",
      'const cleared = setTimeout(() => {}, 60_000); clearTimeout(cleared)',
      'exitIfStillHeld(300)'
    ].join('\n'), { CELL_TRACE_HANDLES: '1' })
    expect(r.code).toBe(0)
    expect(r.stderr).toMatch(/Timeout ×1/)
    expect(r.stderr).toMatch(/TCPServerWrap ×1/)
    expect(r.stderr).toMatch(/Timeout \(60000 ms\) made at .*armForgottenTimer.*traced\.ts/)
    expect(r.stderr).toMatch(/TCPSERVERWRAP made at .*traced\.ts/)
    // The cleared timer is not reported.
    expect(r.stderr.match(/Timeout \(/g)?.length).toBe(1)
  })
})
