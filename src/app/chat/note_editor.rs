//! The note editor: a dialog with the textboxes "Note title" and "Note text", the note's
//! checklist as checkboxes, "Add checklist item" and "Save note".
//!
//! Decision: a note saves as it is typed (each change is a splice, see `ferry_core::note`), so
//! nothing typed is ever lost: "Save note" and Escape both close the editor and keep
//! everything. A new note is written on its first keystroke under an id chosen here; a new
//! note left empty is deleted again when the editor closes.
//!
//! While it is open a peer's edits appear live: the text is replaced and the caret (and
//! selection) moved with the text around it. The editor tells its own edits coming back from
//! the document from a peer's by the bodies it sent that have not come back yet.

use crate::view::{Intent, Intents, ViewState};
use ferry_core::ItemId;
use ferry_core::note::{checklist, map_caret, set_checked};
use leptos::prelude::*;
use std::collections::VecDeque;

/// Which note the editor shows, if any.
#[derive(Clone, Copy)]
pub(in crate::app) struct NoteEditorState {
    /// The note, and whether this editor is creating it.
    pub open: RwSignal<Option<(ItemId, bool)>>,
    /// The note whose editor closed last: its "Open note" button takes the focus back, also
    /// when its row is rebuilt just after (the last keystrokes coming back from the
    /// document), which took the focus away with the old button.
    pub closed: StoredValue<Option<ItemId>>,
}

impl NoteEditorState {
    pub(in crate::app) fn new() -> Self {
        NoteEditorState {
            open: RwSignal::new(None),
            closed: StoredValue::new(None),
        }
    }

    /// Opens the editor on an existing note.
    pub(in crate::app) fn edit(self, id: ItemId) {
        self.closed.set_value(None);
        self.open.set(Some((id, false)));
    }

    /// Opens the editor on a new note.
    pub(in crate::app) fn create(self) {
        self.open.set(Some((ItemId::random(), true)));
    }
}

/// The attribute on each note's "Open note" button (focus goes back there on close).
pub(super) const NOTE_OPENER: &str = "data-note";

/// The editor, while a note is open.
#[component]
pub(in crate::app) fn NoteEditor() -> impl IntoView {
    let state = expect_context::<NoteEditorState>();
    move || {
        state
            .open
            .get()
            .map(|(id, new)| view! { <NoteDialog id new/> })
    }
}

/// Characters before UTF-16 offset `units` of `s` (a textarea's selection counts UTF-16).
fn chars_at(s: &str, units: u32) -> usize {
    let mut seen = 0u32;
    for (n, c) in s.chars().enumerate() {
        if seen >= units {
            return n;
        }
        seen += c.len_utf16() as u32;
    }
    s.chars().count()
}

/// The UTF-16 offset of character `n` of `s`.
fn units_at(s: &str, n: usize) -> u32 {
    s.chars().take(n).map(|c| c.len_utf16() as u32).sum()
}

#[component]
fn NoteDialog(id: ItemId, new: bool) -> impl IntoView {
    let state = expect_context::<NoteEditorState>();
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    // The note as the document has it now (title, body).
    let stored = Memo::new(move |_| {
        view.items.with(|items| {
            items
                .iter()
                .find(|i| i.id == id && i.note)
                .map(|i| (i.text.clone(), i.body.clone()))
        })
    });
    let (title0, body0) = stored.get_untracked().unwrap_or_default();
    let created = StoredValue::new(!new);
    // What the boxes last agreed on with the document, and what was sent and has not come
    // back yet (titles and bodies).
    let shown_body = StoredValue::new(body0.clone());
    let sent_bodies = StoredValue::new(VecDeque::<String>::new());
    let sent_titles = StoredValue::new(VecDeque::<String>::new());
    // The body as the textarea holds it, for the checklist.
    let body = RwSignal::new(body0.clone());
    let gone = RwSignal::new(false);
    let title_box = NodeRef::<leptos::html::Input>::new();
    let text_box = NodeRef::<leptos::html::Textarea>::new();

    // Sends what the boxes hold now.
    let save = {
        let intents = intents.clone();
        move || {
            let (Some(t), Some(b)) = (title_box.get_untracked(), text_box.get_untracked()) else {
                return;
            };
            let (title, text) = (t.value(), b.value());
            body.set(text.clone());
            if !created.get_value() {
                if title.trim().is_empty() && text.trim().is_empty() {
                    return;
                }
                created.set_value(true);
                intents.send(Intent::AddNote {
                    id,
                    title: title.clone(),
                    body: text.clone(),
                });
            } else {
                intents.send(Intent::EditNote {
                    id,
                    title: title.clone(),
                    base: shown_body.get_value(),
                    body: text.clone(),
                });
            }
            shown_body.set_value(text.clone());
            sent_bodies.update_value(|q| q.push_back(text));
            sent_titles.update_value(|q| q.push_back(title));
        }
    };

    // A change from the document: this editor's own coming back, or a peer's, shown live.
    Effect::new(move |_| {
        let Some((title, text)) = stored.get() else {
            if created.get_value() && !sent_bodies.with_value(VecDeque::is_empty) {
                // Not written yet (the first keystroke is on its way).
                return;
            }
            gone.set(created.get_value());
            return;
        };
        gone.set(false);
        created.set_value(true);
        let own_body = sent_bodies.with_value(|q| q.iter().position(|b| *b == text));
        match own_body {
            Some(k) => sent_bodies.update_value(|q| drop(q.drain(..=k))),
            None => {
                if let Some(el) = text_box.get_untracked() {
                    let old = el.value();
                    if old != text {
                        let start = el.selection_start().ok().flatten().unwrap_or(0);
                        let end = el.selection_end().ok().flatten().unwrap_or(start);
                        let caret =
                            |u: u32| units_at(&text, map_caret(&old, &text, chars_at(&old, u)));
                        let (s, e) = (caret(start), caret(end));
                        el.set_value(&text);
                        let _ = el.set_selection_range(s, e);
                    }
                }
                shown_body.set_value(text.clone());
                sent_bodies.update_value(VecDeque::clear);
                body.set(text.clone());
            }
        }
        let own_title = sent_titles.with_value(|q| q.iter().position(|t| *t == title));
        match own_title {
            Some(k) => sent_titles.update_value(|q| drop(q.drain(..=k))),
            None => {
                if let Some(el) = title_box.get_untracked()
                    && el.value() != title
                {
                    el.set_value(&title);
                }
                sent_titles.update_value(VecDeque::clear);
            }
        }
    });

    // Focus: the title of a new note, else the text (caret at its end).
    Effect::new(move |_| {
        if let (Some(t), Some(b)) = (title_box.get(), text_box.get()) {
            if new {
                let _ = t.focus();
            } else {
                let end = b.value().encode_utf16().count() as u32;
                let _ = b.focus();
                let _ = b.set_selection_range(end, end);
            }
        }
    });

    let close = {
        let intents = intents.clone();
        move || {
            let empty = match (title_box.get_untracked(), text_box.get_untracked()) {
                (Some(t), Some(b)) => t.value().trim().is_empty() && b.value().trim().is_empty(),
                _ => false,
            };
            if new && empty && created.get_value() {
                // A new note typed and emptied again is not kept.
                intents.send(Intent::Delete(id));
            }
            state.open.set(None);
            if new {
                state.closed.set_value(None);
                super::focus_composer();
            } else {
                state.closed.set_value(Some(id));
                crate::app::focus_later(format!("[{NOTE_OPENER}='{id}']"), None);
            }
        }
    };

    let toggle = {
        let save = save.clone();
        move |line: usize, done: bool| {
            let Some(el) = text_box.get_untracked() else {
                return;
            };
            if let Some(next) = set_checked(&el.value(), line, done) {
                el.set_value(&next);
                save();
            }
        }
    };
    let add_item = {
        let save = save.clone();
        move || {
            let Some(el) = text_box.get_untracked() else {
                return;
            };
            let mut text = el.value();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("- [ ] ");
            el.set_value(&text);
            let end = text.encode_utf16().count() as u32;
            let _ = el.focus();
            let _ = el.set_selection_range(end, end);
            save();
        }
    };

    let close_key = close.clone();
    let (save_title, save_text) = (save.clone(), save);
    view! {
        <div class="note-backdrop">
            <div class="note-editor" role="dialog" aria-modal="true" aria-labelledby="note-heading"
                on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        ev.prevent_default();
                        ev.stop_propagation();
                        close_key();
                    }
                }>
                <h2 id="note-heading" class="visually-hidden">{if new { "New note" } else { "Note" }}</h2>
                <Show when=move || gone.get()>
                    <p role="alert" class="note-gone">"This note was deleted on another device. What is shown here is not saved."</p>
                </Show>
                <input type="text" class="note-title-box" aria-label="Note title" placeholder="Title"
                    node_ref=title_box prop:value=title0
                    on:input=move |_| save_title()/>
                <textarea class="note-text-box" aria-label="Note text" placeholder="Note"
                    node_ref=text_box prop:value=body0 rows="10"
                    on:input=move |_| save_text()></textarea>
                {move || {
                    let lines = body.with(|b| checklist(b));
                    (!lines.is_empty()).then(|| {
                        let toggle = toggle.clone();
                        view! {
                            <div class="checklist" role="group" aria-label="Checklist">
                                {lines.into_iter().map(|l| {
                                    let toggle = toggle.clone();
                                    let line = l.line;
                                    view! {
                                            <label class="task" class:done=l.done>
                                                <input type="checkbox" prop:checked=l.done
                                                    on:change=move |ev| toggle(line, event_target_checked(&ev))/>
                                                <span>{l.text}</span>
                                            </label>
                                    }
                                }).collect_view()}
                            </div>
                        }
                    })
                }}
                <div class="note-actions">
                    <button type="button" on:click=move |_| add_item()>"Add checklist item"</button>
                    <button type="button" class="primary" on:click=move |_| close()>"Save note"</button>
                </div>
            </div>
        </div>
    }
}
