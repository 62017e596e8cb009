//! Search: the box in the top bar lists the matching messages with their dates; choosing one
//! (click, Enter) jumps to it in the full history with a highlight, and ↑/↓ in the box (or
//! "Previous match"/"Next match") move between matches there. Typing again goes back to the
//! list; Escape clears the search.

use crate::view::{RENDER_WINDOW, ViewState};
use ferry_core::ItemId;
use leptos::prelude::*;

/// The match the history is showing in context, if any (else a search lists its matches).
#[derive(Clone, Copy)]
pub(in crate::app) struct SearchJump {
    pub at: RwSignal<Option<ItemId>>,
    /// Every item matching the query, oldest first.
    pub matches: Memo<Vec<ItemId>>,
}

impl SearchJump {
    pub(in crate::app) fn new(view: ViewState) -> Self {
        let matches = Memo::new(move |_| {
            let query = view.search.get().trim().to_lowercase();
            if query.is_empty() {
                return Vec::new();
            }
            view.items.with(|items| {
                items
                    .iter()
                    .filter(|i| i.text.to_lowercase().contains(&query))
                    .map(|i| i.id)
                    .collect()
            })
        });
        SearchJump {
            at: RwSignal::new(None),
            matches,
        }
    }

    /// Shows `id` in the full history: the window widens to reach it.
    pub(in crate::app) fn go(self, view: ViewState, id: ItemId) {
        let from_end = view
            .items
            .with_untracked(|items| items.iter().rev().position(|i| i.id == id));
        if let Some(n) = from_end {
            // A few rows of context above it.
            let need = n + 1 + 20;
            if view.window.get_untracked() < need {
                view.window
                    .set(need.div_ceil(RENDER_WINDOW) * RENDER_WINDOW);
            }
            self.at.set(Some(id));
        }
    }

    /// Moves to the next older (`-1`) or newer (`+1`) match; from the list, ↑ starts at the
    /// newest match and ↓ at the oldest.
    pub(in crate::app) fn step(self, view: ViewState, dir: i32) {
        let ids = self.matches.get_untracked();
        if ids.is_empty() {
            return;
        }
        let last = ids.len() - 1;
        let next = match self
            .at
            .get_untracked()
            .and_then(|c| ids.iter().position(|&i| i == c))
        {
            Some(k) if dir < 0 => k.saturating_sub(1),
            Some(k) => (k + 1).min(last),
            None if dir < 0 => last,
            None => 0,
        };
        self.go(view, ids[next]);
    }
}

/// The search box. Enter and ↑ go to the newest match, ↓ to the oldest; then ↑/↓ step.
#[component]
pub(in crate::app) fn SearchBox() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let jump = expect_context::<SearchJump>();
    view! {
        <input type="search" class="search" aria-label="Search messages" placeholder="Search"
            aria-keyshortcuts="ArrowUp ArrowDown Enter Escape"
            prop:value=move || view.search.get()
            on:input=move |ev| {
                jump.at.set(None);
                view.search.set(event_target_value(&ev));
            }
            on:keydown=move |ev: leptos::web_sys::KeyboardEvent| match ev.key().as_str() {
                "ArrowUp" | "Enter" => { ev.prevent_default(); jump.step(view, -1); }
                "ArrowDown" => { ev.prevent_default(); jump.step(view, 1); }
                "Escape" => {
                    ev.prevent_default();
                    jump.at.set(None);
                    view.search.set(String::new());
                }
                _ => {}
            }/>
    }
}

/// "Match 3 of 12", with Previous/Next and "Show all matches", while a match is shown in
/// context.
#[component]
pub(in crate::app) fn SearchNav() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let jump = expect_context::<SearchJump>();
    let position = move || {
        let ids = jump.matches.get();
        let at = jump.at.get()?;
        let k = ids.iter().position(|&i| i == at)?;
        Some((k, ids.len()))
    };
    view! {
        <Show when=move || jump.at.with(Option::is_some)>
            <div class="search-nav" role="group" aria-label="Search matches">
                <span aria-live="polite">{move || position().map(|(k, n)| format!("Match {} of {n}", k + 1))}</span>
                <button type="button" aria-label="Previous match" title="Previous (older) match"
                    prop:disabled=move || position().is_none_or(|(k, _)| k == 0)
                    on:click=move |_| jump.step(view, -1)>"↑"</button>
                <button type="button" aria-label="Next match" title="Next (newer) match"
                    prop:disabled=move || position().is_none_or(|(k, n)| k + 1 == n)
                    on:click=move |_| jump.step(view, 1)>"↓"</button>
                <button type="button" on:click=move |_| jump.at.set(None)>"Show all matches"</button>
            </div>
        </Show>
    }
}
