//! The history: the `log` of messages, the newest window of it (or a search's matches), and
//! the drop target for files.

use super::files_of;
use super::item_row::ItemRow;
use crate::view::{Intent, Intents, ViewState};
use leptos::prelude::*;

/// The history as a `log` named "Messages".
#[component]
pub(in crate::app) fn History() -> impl IntoView {
    let view = expect_context::<ViewState>();
    // A search lists its matches, until one is chosen: then the history is shown around it.
    let jump = expect_context::<super::SearchJump>();
    let searching =
        move || !view.search.with(|q| q.trim().is_empty()) && jump.at.with(Option::is_none);
    // Only the newest `window` items are in the DOM (or the matches of a search): a long
    // history stays fast; "Show earlier messages" widens the window.
    // A message deleted a moment ago (Undo still possible) is not shown.
    let undo = expect_context::<super::UndoDelete>();
    let shown = Memo::new(move |_| {
        let query = if searching() {
            view.search.get().trim().to_lowercase()
        } else {
            String::new()
        };
        let gone: Option<ferry_core::ItemId> = undo.pending.get().map(|(id, _)| id);
        let filter = view.filter.get();
        view.items.with(|items| -> Vec<crate::view::ItemView> {
            if query.is_empty() && filter != crate::view::Filter::All {
                // A filter lists its items from the whole history.
                items
                    .iter()
                    .filter(|i| Some(i.id) != gone && filter.keeps(i))
                    .cloned()
                    .collect()
            } else if query.is_empty() {
                let w = view.window.get();
                items[items.len().saturating_sub(w)..]
                    .iter()
                    .filter(|i| Some(i.id) != gone)
                    .cloned()
                    .collect()
            } else {
                items
                    .iter()
                    .filter(|i| Some(i.id) != gone && i.matches(&query))
                    .cloned()
                    .collect()
            }
        })
    });
    let hidden = move || {
        if view.filter.get() == crate::view::Filter::All {
            view.items.with(Vec::len).saturating_sub(view.window.get())
        } else {
            0
        }
    };
    let focused = RwSignal::new(None);
    provide_context(super::TabStop {
        focused,
        row: Memo::new(move |_| {
            let want = focused.get();
            shown.with(|rows| {
                want.filter(|id| rows.iter().any(|r| r.id == *id))
                    .or_else(|| rows.last().map(|r| r.id))
            })
        }),
    });
    provide_context(super::Wording(Memo::new(move |_| {
        shown.with(|rows| {
            rows.iter()
                .map(|i| (i.id, (i.pending, i.delivery.clone())))
                .collect()
        })
    })));
    let dragging = RwSignal::new(false);
    let drop_intents = expect_context::<Intents>();
    view! {
        <div class="history" role="log" aria-label="Messages" aria-live="polite"
            data-count=move || view.items.with(Vec::len)
            class:dragging=move || dragging.get()
            on:dragover=move |ev| { ev.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=move |ev: leptos::web_sys::DragEvent| {
                ev.prevent_default();
                dragging.set(false);
                let files = ev.data_transfer().map(|d| files_of(d.files())).unwrap_or_default();
                if !files.is_empty() {
                    drop_intents.send(Intent::SendFiles(files));
                }
            }>
            <Show when=move || view.ready.get() && view.items.with(Vec::is_empty)>
                <p class="empty">"No messages yet. Write something to yourself: it will appear on all your devices."</p>
            </Show>
            <Show when=move || searching()>
                <p class="search-count" aria-live="polite">
                    {move || match shown.with(Vec::len) {
                        0 => "No messages match".to_string(),
                        1 => "1 message matches".to_string(),
                        n => format!("{n} messages match"),
                    }}
                </p>
            </Show>
            <ol class="items">
                <Show when=move || !searching() && hidden() != 0>
                    <li class="earlier" role="presentation">
                        <button type="button"
                            on:click=move |_| view.window.update(|w| *w += crate::view::RENDER_WINDOW)>
                            {move || format!("Show earlier messages ({})", hidden())}
                        </button>
                    </li>
                </Show>
                // A row is rebuilt when what it shows changes: its text, author (a rename shows
                // at once), edited mark or day label. Delivery wording is read live
                // (`Wording`), not rebuilt.
                <For each=move || shown.get()
                    key=|i| (i.id, i.text.clone(), i.author.clone(), i.show_author, i.edited, i.day.clone(), i.pinned, i.task, i.body.clone())
                    let:item>
                    <ItemRow item/>
                </For>
            </ol>
        </div>
    }
}

/// The history's filters (All, Tasks, Files, Links): toggle buttons in a group "Show".
#[component]
pub(in crate::app) fn Filters() -> impl IntoView {
    let view = expect_context::<ViewState>();
    // Not on an empty history (nothing to filter; the first screen stays calm).
    view! {
        <Show when=move || !view.items.with(Vec::is_empty)>
            <div class="filters" role="group" aria-label="Show">
                {crate::view::Filter::ALL.into_iter().map(|f| view! {
                    <button type="button"
                        aria-pressed=move || (view.filter.get() == f).to_string()
                        on:click=move |_| view.filter.set(f)>{f.name()}</button>
                }).collect::<Vec<_>>()}
            </div>
        </Show>
    }
}

/// The region "Pinned" above the history: every pinned item (of the whole history, not only
/// the shown window), oldest first, each with **Unpin**. Absent while nothing is pinned.
#[component]
pub(in crate::app) fn Pinned() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let pinned = Memo::new(move |_| {
        view.items.with(|items| {
            items
                .iter()
                .filter(|i| i.pinned)
                .map(|i| {
                    let label = match (&i.file, i.text.is_empty()) {
                        (Some(f), true) => f.name.clone(),
                        _ => i.text.clone(),
                    };
                    (i.id, label)
                })
                .collect::<Vec<_>>()
        })
    });
    view! {
        <Show when=move || pinned.with(|p| !p.is_empty())>
            <section class="pinned" aria-label="Pinned">
                <ul>
                    <For each=move || pinned.get() key=|p| p.clone() let:entry>
                        {
                            let (id, label) = entry;
                            let intents = expect_context::<Intents>();
                            let unpin = format!("Unpin {label}");
                            view! {
                                <li>
                                    <span class="pinned-text">{label}</span>
                                    <button type="button" aria-label=unpin title="Unpin"
                                        on:click=move |_| intents.send(Intent::Pin(id, false))>"Unpin"</button>
                                </li>
                            }
                        }
                    </For>
                </ul>
            </section>
        </Show>
    }
}

/// "Message deleted · Undo", while a delete can still be taken back. Hiding the page (a phone
/// put away, a tab closed) writes the delete at once.
#[component]
pub(in crate::app) fn UndoBar() -> impl IntoView {
    let undo = expect_context::<super::UndoDelete>();
    let intents = expect_context::<Intents>();
    let on_hide = intents.clone();
    let hidden = move |_: leptos::web_sys::Event| {
        if document().hidden() {
            undo.commit(&on_hide);
        }
    };
    let on_pagehide = intents.clone();
    // Listeners for the page's life (the bar is always mounted; dropping a handle keeps
    // its listener).
    let _ = window_event_listener_untyped("visibilitychange", hidden);
    let _ = window_event_listener_untyped("pagehide", move |_| undo.commit(&on_pagehide));
    view! {
        <div class="undo-bar" aria-live="polite"
            class:open=move || undo.pending.with(Option::is_some)>
            <Show when=move || undo.pending.with(Option::is_some)>
                <span>"Message deleted"</span>
                <button type="button" on:click=move |_| {
                    undo.undo();
                    super::focus_composer();
                }>"Undo"</button>
            </Show>
        </div>
    }
}
