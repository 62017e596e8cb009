//! Diagnostics: why a connection failed, frames refused and connections blocked, file chunk
//! counts. What to look at when sync seems stuck.

use crate::view::ViewState;
use leptos::prelude::*;

/// The last connection problem in plain words, and the counters.
#[component]
pub(super) fn Diagnostics() -> impl IntoView {
    let view = expect_context::<ViewState>();
    view! {
        <h3>"Diagnostics"</h3>
        <Show when=move || view.connection_problem.with(Option::is_some)>
            <p class="problem" role="note" aria-label="Connection problem">
                {move || view.connection_problem.get()}
            </p>
        </Show>
        <dl class="diagnostics" aria-label="Diagnostics">
            <dt>"Refused frames"</dt>
            <dd data-testid="refused-frames">{move || view.refused.get()}</dd>
            <dt>"Blocked connections"</dt>
            <dd data-testid="blocked-connections">{move || view.banned.get()}</dd>
            <dt>"File chunks requested"</dt>
            <dd data-testid="chunk-requests">{move || view.chunk_requests.get()}</dd>
            <dt>"File chunks received"</dt>
            <dd data-testid="chunks-verified">{move || view.chunks_verified.get()}</dd>
        </dl>
    }
}
