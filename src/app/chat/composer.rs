//! The composer: the message box, attaching and pasting files, and the draft of what another
//! app shared, which waits for Send.
//!
//! With a keyboard Enter sends and Shift+Enter is a new line; on a touch screen (no Shift on a
//! soft keyboard) Enter is a new line and the Send button sends. The box grows with its text
//! to about six lines, then scrolls. It has the focus at start on a computer (not on a phone,
//! where that would open the keyboard), and ↑ in the empty box edits the last message written
//! here.

use super::{EditState, files_of, touch_only};
use crate::view::{Intent, Intents, ViewState, format_size};
use leptos::prelude::*;

/// The message box with Attach and Send, and the files shared from another app above it.
#[component]
pub(in crate::app) fn Composer() -> impl IntoView {
    let intents = expect_context::<Intents>();
    let view = expect_context::<ViewState>();
    let text = RwSignal::new(String::new());
    let textarea = NodeRef::<leptos::html::Textarea>::new();
    let touch = touch_only();
    // As tall as its text, up to the CSS `max-height` (then it scrolls).
    let fit = move || {
        if let Some(el) = textarea.get_untracked() {
            let style = leptos::web_sys::HtmlElement::style(&el);
            let _ = style.set_property("height", "auto");
            let _ = style.set_property("height", &format!("{}px", el.scroll_height() + 2));
        }
    };
    Effect::new(move |_| {
        text.track();
        request_animation_frame(fit);
    });
    // Ready to write at start, unless something else (the join dialog) has the focus.
    Effect::new(move |_| {
        if view.ready.get() && !touch {
            request_animation_frame(move || {
                let idle = document()
                    .active_element()
                    .is_none_or(|e| e.tag_name().eq_ignore_ascii_case("body"));
                if idle && let Some(el) = textarea.get_untracked() {
                    let _ = el.focus();
                }
            });
        }
    });
    let edit = expect_context::<EditState>();
    // ↑ in the empty box: the last text written here, in its edit box.
    let edit_last = move || {
        let last = view.items.with_untracked(|items| {
            items
                .iter()
                .rev()
                .find(|i| i.mine && i.file.is_none() && !i.newer && !i.note)
                .map(|i| (i.id, i.text.clone()))
        });
        let found = last.is_some();
        if let Some((id, text)) = last {
            edit.draft.set(text);
            edit.id.set(Some(id));
        }
        found
    };
    // What another app shared becomes a draft: the person sees it, may edit it, and sends it.
    Effect::new(move |_| {
        if let Some(shared) = view.draft_text.get() {
            view.draft_text.set(None);
            text.update(|t| {
                if t.trim().is_empty() {
                    *t = shared;
                } else {
                    t.push('\n');
                    t.push_str(&shared);
                }
            });
            if let Some(el) = textarea.get() {
                let _ = el.focus();
            }
        }
    });
    // "name · size" of each shared file, in order.
    let draft_list = move || {
        view.draft_files.with(|files| {
            files
                .iter()
                .map(|f| format!("{} · {}", f.name(), format_size(f.size() as u64)))
                .enumerate()
                .collect::<Vec<_>>()
        })
    };
    let send_intents = intents.clone();
    let send = move || {
        let body = text.get_untracked();
        if !body.trim().is_empty() {
            send_intents.send(Intent::Send(body));
            text.set(String::new());
        }
        let files = view.draft_files.get_untracked();
        if !files.is_empty() {
            view.draft_files.set(Vec::new());
            // The share inbox is emptied at once, before the runtime starts on the files.
            send_intents.send(Intent::ClearShareInbox);
            send_intents.send(Intent::SendFiles(files));
        }
    };
    let send_key = send.clone();
    // "New task" opens the textbox "Task": Enter adds one and keeps the box for the next,
    // Escape closes it and gives the focus back to the Message box.
    let task_open = RwSignal::new(false);
    let task_text = RwSignal::new(String::new());
    let task_box = NodeRef::<leptos::html::Input>::new();
    let intents_task = intents.clone();
    let add_task = move || {
        let body = task_text.get_untracked();
        if !body.trim().is_empty() {
            intents_task.send(Intent::AddTask(body));
            task_text.set(String::new());
        }
    };
    // The installed app's launcher shortcuts open `?new=task` (the Task box, open and
    // focused) and `?new=note` (the note editor); the query goes (a reload does not reopen).
    let notes = expect_context::<super::NoteEditorState>();
    let more = RwSignal::new(false);
    match take_new_query().as_deref() {
        Some("task") => {
            task_open.set(true);
            request_animation_frame(move || {
                if let Some(el) = task_box.get_untracked() {
                    let _ = el.focus();
                }
            });
        }
        Some("note") => notes.create(),
        _ => {}
    }
    // Ctrl+Shift+V (⌘⇧V): what the clipboard holds becomes one item, wherever the focus is.
    let intents_paste_key = intents.clone();
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        if (ev.ctrl_key() || ev.meta_key())
            && ev.shift_key()
            && !ev.alt_key()
            && ev.key().eq_ignore_ascii_case("v")
        {
            ev.prevent_default();
            intents_paste_key.send(Intent::PasteAsMessage);
        }
    });
    let picker = NodeRef::<leptos::html::Input>::new();
    let intents_paste = expect_context::<Intents>();
    let intents_pick = intents_paste.clone();
    let intents_discard = intents_paste.clone();
    view! {
        <Show when=move || view.draft_files.with(|f| !f.is_empty())>
            <section class="draft-files" aria-labelledby="draft-files-heading">
                <h2 id="draft-files-heading" class="draft-files-heading">"Files to send"</h2>
                <ul>
                    <For each=draft_list key=|(i, name)| format!("{i}:{name}")
                        children=|(_, name)| view! { <li>{name}</li> }/>
                </ul>
                <p class="hint">"Shared from another app. They are sent when you press Send."</p>
                <button type="button" on:click={
                    let intents = intents_discard.clone();
                    move |_| {
                        view.draft_files.set(Vec::new());
                        intents.send(Intent::ClearShareInbox);
                    }
                }>"Don't send these files"</button>
            </section>
        </Show>
        <Show when=move || task_open.get()>
            <form class="task-entry" on:submit={
                let add_task = add_task.clone();
                move |ev| { ev.prevent_default(); add_task(); }
            }>
                <input type="text" aria-label="Task" placeholder="Task" node_ref=task_box
                    enterkeyhint="done"
                    prop:value=move || task_text.get()
                    on:input=move |ev| task_text.set(event_target_value(&ev))
                    on:keydown=move |ev| {
                        if ev.key() == "Escape" {
                            ev.prevent_default();
                            task_open.set(false);
                            if let Some(el) = textarea.get_untracked() {
                                let _ = el.focus();
                            }
                        }
                    }/>
                <button type="submit">"Add task"</button>
            </form>
        </Show>
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); send(); }>
            <textarea aria-label="Message" placeholder="Message" rows="1" node_ref=textarea
                enterkeyhint=if touch { "enter" } else { "send" }
                prop:disabled=move || !view.ready.get()
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    let plain = !ev.shift_key() && !ev.alt_key() && !ev.ctrl_key()
                        && !ev.meta_key() && !ev.is_composing();
                    if ev.key() == "Enter" && plain && !touch {
                        ev.prevent_default();
                        send_key();
                    } else if ev.key() == "ArrowUp" && plain
                        && text.with_untracked(String::is_empty) && edit_last()
                    {
                        ev.prevent_default();
                    }
                }
                on:paste={
                    let intents = intents_paste.clone();
                    move |ev: leptos::web_sys::ClipboardEvent| {
                        // Pasted images (screenshots) become files; pasted text stays text.
                        let files = ev.clipboard_data().map(|d| files_of(d.files())).unwrap_or_default();
                        if !files.is_empty() {
                            ev.prevent_default();
                            intents.send(Intent::SendFiles(files));
                        }
                    }
                }></textarea>
            // Opened by "Attach files"; hidden from screen readers too (it showed as a second
            // button next to it). Tests still find it by its label.
            <input type="file" multiple class="visually-hidden" aria-label="Files to send"
                aria-hidden="true" tabindex="-1" node_ref=picker
                on:change={
                    let intents = intents_pick.clone();
                    move |ev| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = ev.target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            let files = files_of(input.files());
                            input.set_value("");
                            if !files.is_empty() {
                                intents.send(Intent::SendFiles(files));
                            }
                        }
                    }
                }/>
            <button type="button" class="attach" aria-label="Attach files" title="Attach files"
                prop:disabled=move || !view.ready.get()
                on:click=move |_| {
                    if let Some(input) = picker.get() {
                        input.click();
                    }
                }>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round">
                    <path d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/>
                </svg>
            </button>
            // On a phone these three sit behind "More actions" (the Message box keeps the
            // width); on a computer they are shown beside Attach.
            <button type="button" class="attach more-toggle" aria-label="More actions"
                title="More actions" aria-controls="composer-more"
                aria-expanded=move || more.get().to_string()
                on:click=move |_| more.update(|o| *o = !*o)>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="currentColor">
                    <circle cx="5" cy="12" r="2"/><circle cx="12" cy="12" r="2"/><circle cx="19" cy="12" r="2"/>
                </svg>
            </button>
            <div class="composer-extra" id="composer-more" class:open=move || more.get()
                on:click=move |ev| {
                    // An action chosen closes the little menu.
                    use leptos::wasm_bindgen::JsCast;
                    let on_button = ev.target()
                        .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
                        .and_then(|e| e.closest("button").ok().flatten())
                        .is_some();
                    if on_button {
                        more.set(false);
                    }
                }
                on:keydown=move |ev| {
                    if ev.key() == "Escape" && more.get_untracked() {
                        ev.prevent_default();
                        more.set(false);
                    }
                }>
            <button type="button" class="attach" aria-label="New task" title="New task"
                aria-expanded=move || task_open.get().to_string()
                prop:disabled=move || !view.ready.get()
                on:click=move |_| {
                    task_open.update(|o| *o = !*o);
                    if task_open.get_untracked() {
                        // Focus the box once it is in the DOM.
                        request_animation_frame(move || {
                            if let Some(el) = task_box.get_untracked() {
                                let _ = el.focus();
                            }
                        });
                    }
                }>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                    <rect x="3.5" y="3.5" width="17" height="17" rx="3"/>
                    <path d="M8 12.5l3 3 5-6"/>
                </svg>
            </button>
            <button type="button" class="attach" aria-label="New note" title="New note"
                prop:disabled=move || !view.ready.get()
                on:click=move |_| notes.create()>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                    <path d="M14 3.5H6.5a2 2 0 0 0-2 2v13a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V9z"/>
                    <path d="M14 3.5V9h5.5M8.5 13h7M8.5 16.5h5"/>
                </svg>
            </button>
            // The menu entry for Ctrl/Cmd+Shift+V.
            <button type="button" class="attach" aria-label="Paste as message"
                title="Paste as message (Ctrl+Shift+V)" aria-keyshortcuts="Control+Shift+V Meta+Shift+V"
                prop:disabled=move || !view.ready.get()
                on:click={
                    let intents = intents_paste.clone();
                    move |_| intents.send(Intent::PasteAsMessage)
                }>
                <svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20" fill="none"
                    stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
                    <rect x="5.5" y="4.5" width="13" height="16.5" rx="2"/>
                    <path d="M9 4.5V3h6v1.5M9 11h6M9 14.5h6"/>
                </svg>
            </button>
            </div>
            <button type="submit" class="primary">"Send"</button>
        </form>
    }
}

/// What the page was opened to create (`?new=task` or `?new=note`, the manifest's
/// shortcuts); removes that parameter from the address.
fn take_new_query() -> Option<String> {
    let location = leptos::web_sys::window()?.location();
    let search = location.search().ok()?;
    let params = leptos::web_sys::UrlSearchParams::new_with_str(&search).ok()?;
    let what = params.get("new").filter(|w| w == "task" || w == "note")?;
    params.delete("new");
    let rest = String::from(params.to_string());
    let path = location.pathname().unwrap_or_else(|_| "/".into());
    let hash = location.hash().unwrap_or_default();
    let url = if rest.is_empty() {
        format!("{path}{hash}")
    } else {
        format!("{path}?{rest}{hash}")
    };
    if let Some(history) = leptos::web_sys::window().and_then(|w| w.history().ok()) {
        let _ =
            history.replace_state_with_url(&leptos::wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
    Some(what)
}
