// Call a cell method from this tab, through the source's own mesh (no server in between).
import { createSignal, For, Show } from 'solid-js'
import type { JSX } from 'solid-js'
import { formatDuration, shortId } from './model.ts'
import type { CallOutcome, FleetStore } from './store.ts'

const MAX_RESULTS = 6
const MAX_REPEAT = 50
const MAX_SHOWN_CHARS = 2000

function show (value: unknown): string {
  let text: string
  try {
    text = JSON.stringify(value, null, 2) ?? 'undefined'
  } catch {
    text = String(value)
  }
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}\n… (${text.length} characters)` : text
}

export function CallPanel (props: { store: FleetStore, cells: string[], disabled: boolean }): JSX.Element {
  const [cell, setCell] = createSignal('')
  const [method, setMethod] = createSignal('')
  const [body, setBody] = createSignal('{}')
  const [repeat, setRepeat] = createSignal(1)
  const [busy, setBusy] = createSignal(false)
  const [jsonError, setJsonError] = createSignal<string | undefined>()
  const [results, setResults] = createSignal<CallOutcome[]>([])

  const submit = async (ev: Event): Promise<void> => {
    ev.preventDefault()
    let request: unknown
    try {
      request = JSON.parse(body())
      setJsonError(undefined)
    } catch (err) {
      setJsonError(`The request is not valid JSON: ${(err as Error).message}`)
      return
    }
    const c = cell().trim() || props.cells[0] || ''
    setBusy(true)
    try {
      // Sequential on purpose: the split of repeated calls is what the canary panel measures.
      for (let i = 0; i < Math.min(MAX_REPEAT, Math.max(1, repeat())); i++) {
        const outcome = await props.store.call(c, method().trim(), request)
        setResults(r => [outcome, ...r].slice(0, MAX_RESULTS))
      }
    } finally {
      setBusy(false)
    }
  }

  return (
    <section class="card call-panel" aria-label="call a cell">
      <h2>Call a cell</h2>
      <form onSubmit={ev => { void submit(ev) }}>
        <div class="row">
          <label>Cell
            <input name="cell" list="cell-names" value={cell()} placeholder={props.cells[0] ?? 'billing'} onInput={e => setCell(e.currentTarget.value)} autocomplete="off" />
          </label>
          <label>Method
            <input name="method" value={method()} placeholder="charge" required onInput={e => setMethod(e.currentTarget.value)} autocomplete="off" />
          </label>
          <label class="narrow">Times
            <input name="repeat" type="number" min="1" max={MAX_REPEAT} value={repeat()} onInput={e => setRepeat(Number(e.currentTarget.value) || 1)} />
          </label>
        </div>
        <datalist id="cell-names"><For each={props.cells}>{c => <option value={c} />}</For></datalist>
        <label>Request (JSON)
          <textarea name="request" rows="3" spellcheck={false} value={body()} onInput={e => setBody(e.currentTarget.value)} />
        </label>
        <Show when={jsonError() !== undefined}><p class="error-words" role="alert">{jsonError()}</p></Show>
        <button type="submit" disabled={busy() || props.disabled}>{busy() ? 'Calling…' : 'Call'}</button>
        <Show when={props.disabled}><span class="muted small"> Calls need a connected peer.</span></Show>
      </form>
      <ol class="results" aria-live="polite">
        <For each={results()}>{r => (
          <li class={r.ok ? 'ok' : 'failed'} data-call-result={r.ok ? 'ok' : 'error'}>
            <div class="small">
              <b>{r.cell}.{r.method}</b> · {formatDuration(r.ms)}
              <Show when={r.route !== undefined}> · answered by v{r.route!.version} on {shortId(r.route!.nodeId)}</Show>
            </div>
            <Show when={r.ok} fallback={
              <div class="call-error" role="alert">
                <b class="error-name">{r.error!.name}</b>
                <p class="error-words">{r.error!.words}</p>
                <p class="muted small">{r.error!.message}</p>
              </div>
            }>
              <pre>{show(r.result)}</pre>
            </Show>
          </li>
        )}</For>
      </ol>
    </section>
  )
}
