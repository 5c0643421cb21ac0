// The confirm step for authorities a link asks this tab to trust (`?trust=`, and the issuer of a
// `?grant=` token). A link is anyone's: until the person accepts here, those authorities are not
// stored and not used; cell-config.json's authorities are the host operator's and never asked about
// (see browser-host/page-config.ts). Rejecting stores nothing, so the same link asks again.
import { createSignal, For, Match, Show, Switch } from 'solid-js'
import type { JSX } from 'solid-js'
import { render } from 'solid-js/web'

export type TrustDecision = 'asking' | 'saving' | 'accepted' | 'rejected' | 'error'

export interface TrustPromptProps {
  /** Authority ids (64 hex) the link proposes that this tab does not trust yet. */
  authorities: string[]
  /** The issuer of a caller grant the link carries, when it is one of `authorities`. */
  grantIssuer?: string
  /** Stores and applies the authorities; a rejection is thrown back and shown in words. */
  accept: () => Promise<void>
  /** Called when the person declines (nothing is stored). */
  reject?: () => void
}

export function TrustPrompt (props: TrustPromptProps): JSX.Element {
  const [state, setState] = createSignal<TrustDecision>('asking')
  const [reason, setReason] = createSignal('')
  const many = props.authorities.length > 1
  const onAccept = (): void => {
    setState('saving')
    props.accept().then(() => { setState('accepted') }, (err: unknown) => {
      setReason(err instanceof Error ? `${err.name}: ${err.message}` : String(err))
      setState('error')
    })
  }
  const onReject = (): void => {
    setState('rejected')
    props.reject?.()
  }
  return (
    <div class="shell trust-wrap" data-trust-prompt={state()}>
      <Switch>
        <Match when={state() === 'asking' || state() === 'saving'}>
          <section class="card trust-prompt" role="alertdialog" aria-labelledby="trust-title" aria-describedby="trust-words">
            <h2 id="trust-title">Trust {many ? `${props.authorities.length} new authorities` : 'a new authority'}?</h2>
            <p id="trust-words">The link that opened this page asks this tab to trust {many ? 'these authorities' : 'this authority'}.
              A trusted authority's releases are shown as genuine and its replicas answer this tab's calls, and
              the choice is kept in this browser. Accept only if you know who holds {many ? 'these keys' : 'this key'}.</p>
            <ul class="trust-ids">
              <For each={props.authorities}>{id => (
                <li data-authority={id}>
                  <code>{id}</code>
                  <Show when={id === props.grantIssuer}><span class="tag">issued a caller grant to this tab</span></Show>
                </li>
              )}</For>
            </ul>
            <div class="trust-actions">
              <button type="button" class="accept" data-trust-accept disabled={state() === 'saving'} onClick={onAccept}>
                {many ? `Trust these ${props.authorities.length}` : 'Trust this authority'}
              </button>
              {/* The safe choice has the focus, so a stray Enter does not add trust. */}
              <button type="button" class="reject" data-trust-reject autofocus disabled={state() === 'saving'} onClick={onReject}>Don't trust</button>
            </div>
          </section>
        </Match>
        <Match when={state() === 'accepted'}>
          <p class="banner trust-done" role="status">Trusted {props.authorities.length} authorit{many ? 'ies' : 'y'} from the link; kept in this browser.</p>
        </Match>
        <Match when={state() === 'rejected'}>
          <p class="banner trust-done" role="status">Not trusted: nothing from the link was stored. The fleet is shown with the authorities this tab already trusted.</p>
        </Match>
        <Match when={state() === 'error'}>
          <p class="banner error" role="alert"><b>The authorities could not be trusted.</b> {reason()}</p>
        </Match>
      </Switch>
    </div>
  )
}

/** Renders the prompt into `el`; returns a disposer. */
export function mountTrustPrompt (el: HTMLElement, props: TrustPromptProps): () => void {
  el.textContent = ''
  return render(() => <TrustPrompt {...props} />, el)
}
