//! One entry of the history: a message or a file, its day separator, its author (only where
//! it changes), one quiet line with the time and a delivery tick, and the edit box (a file's
//! caption is its text, edited the same way: "Add caption", "Edit caption"). Edit and
//! Delete are hover actions on a computer and sit in the menu everywhere; Delete takes the row
//! away at once and offers Undo (`UndoDelete`). The menu lives in `message_menu`; the row forwards
//! its pointer and key events there.

use super::file_card::FileCard;
use super::message_menu::{MenuState, MessageMenu};
use super::note_editor::NoteEditorState;
use super::{EditState, UndoDelete, Wording, focus_composer};
use crate::view::{Intent, Intents, ItemView, Segment, Tick, ViewState, highlight, linkify};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;

/// A history entry (`li`): focusable, with its own menu.
#[component]
pub(super) fn ItemRow(item: ItemView) -> impl IntoView {
    let intents = expect_context::<Intents>();
    let class = if item.mine { "item mine" } else { "item" };
    let is_text = item.file.is_none();
    // A file's text is its caption: added and edited like a message's text (older versions
    // keep it and show the file alone).
    let has_caption = !item.text.is_empty();
    let edit = expect_context::<EditState>();
    let live = expect_context::<Wording>().0;
    let built = (item.pending, item.delivery.clone());
    let wording = move || {
        live.with(|m| m.get(&item.id).cloned())
            .unwrap_or_else(|| built.clone())
    };
    // Rebuilt while being edited: the edit box comes back as it was.
    let resumed = edit.id.get_untracked() == Some(item.id);
    let editing = RwSignal::new(resumed);
    // Set by Delete (the button or the menu): the row goes at once, with Undo for a while.
    let deleting = RwSignal::new(false);
    let draft = RwSignal::new(if resumed {
        edit.draft.get_untracked()
    } else {
        item.text.clone()
    });
    let id = item.id;
    let text = item.text.clone();
    let text_for_cancel = item.text.clone();
    let (save, delete) = (intents.clone(), intents.clone());
    let undo = expect_context::<UndoDelete>();
    Effect::new(move |_| {
        if deleting.get() {
            deleting.set(false);
            undo.delete(&delete, id);
            focus_composer();
        }
    });
    let submit = move || {
        save.send(Intent::Edit(id, draft.get_untracked()));
        editing.set(false);
        focus_composer();
    };
    let submit_key = submit.clone();
    let cancel = move || {
        draft.set(text_for_cancel.clone());
        editing.set(false);
        focus_composer();
    };

    // The message menu (right-click, long press, ContextMenu key or Shift+F10).
    let row = NodeRef::<leptos::html::Li>::new();
    let menu = MenuState::new(row, editing, deleting);
    // The edit box opens with the focus in it (Edit, the menu's Edit, ↑ in the composer), as
    // soon as it is mounted: an effect runs before the next key event, where a frame later
    // the first keys typed after ↑ went to the composer. Caret at the end.
    let edit_box = NodeRef::<leptos::html::Textarea>::new();
    // A row rebuilt while its box had the focus (which left the page with the old box) takes
    // it back; otherwise only a box just opened takes it.
    let lost_focus = || {
        document()
            .active_element()
            .is_none_or(|e| e.tag_name().eq_ignore_ascii_case("body"))
    };
    let want_focus = StoredValue::new(resumed && lost_focus());
    Effect::new(move |_| {
        if let Some(t) = edit_box.get()
            && want_focus.get_value()
        {
            want_focus.set_value(false);
            let end = t.value().encode_utf16().count() as u32;
            let _ = t.focus();
            let _ = t.set_selection_range(end, end);
        }
    });
    let focus_box = move || want_focus.set_value(true);
    let open_edit = move || {
        focus_box();
        editing.set(true);
    };
    // The row follows the shared edit state (opened by the composer; another row opened)…
    Effect::new(move |_| {
        let mine = edit.id.get() == Some(id);
        if mine != editing.get_untracked() {
            if mine {
                draft.set(edit.draft.get_untracked());
                focus_box();
            }
            editing.set(mine);
        }
    });
    // A note is edited in the note editor (Edit in the menu opens it).
    let is_note = item.note;
    let notes = expect_context::<NoteEditorState>();
    // …and the shared state follows the row (Edit, the menu, Save, Cancel, Escape).
    Effect::new(move |_| {
        let on = editing.get();
        if on && is_note {
            editing.set(false);
            notes.edit(id);
            return;
        }
        let here = edit.id.get_untracked() == Some(id);
        if on && !here {
            edit.draft.set(draft.get_untracked());
            edit.id.set(Some(id));
        } else if !on && here {
            edit.id.set(None);
        }
    });
    // An item a newer Ferry wrote shows only that: nothing to copy or edit here.
    let editable = !item.newer;
    let menu_text = if editable && is_note {
        format!("{}\n{}", item.text, item.body).trim().to_owned()
    } else if editable {
        text.clone()
    } else {
        String::new()
    };
    let menu_file = item.file.as_ref().map(|f| f.root);
    let detail_wording = wording.clone();
    let mine = item.mine;
    let detail = Signal::derive(move || {
        let (pending, delivery) = detail_wording();
        mine.then(|| Tick::of(pending, delivery.as_deref()).words().to_owned())
    });

    // In a search's list of matches, choosing the row (click, Enter) shows it in context;
    // shown there, it is scrolled to, focused and highlighted.
    let jump = expect_context::<super::SearchJump>();
    let view = expect_context::<ViewState>();
    let listed =
        move || jump.at.with(Option::is_none) && !view.search.with(|q| q.trim().is_empty());
    let jumped = move || jump.at.get() == Some(id);
    Effect::new(move |_| {
        if jumped() {
            request_animation_frame(move || {
                if let Some(li) = row.get_untracked() {
                    let opts = leptos::web_sys::ScrollIntoViewOptions::new();
                    opts.set_block(leptos::web_sys::ScrollLogicalPosition::Center);
                    li.scroll_into_view_with_scroll_into_view_options(&opts);
                    let _ = li.focus();
                }
            });
        }
    });
    let (when, full) = (item.time.clone(), item.datetime.clone());
    let stop = expect_context::<super::TabStop>();
    view! {
        <li class=class node_ref=row class:jumped=jumped class:result=listed
            tabindex=move || if stop.row.get() == Some(id) { "0" } else { "-1" }
            on:focusin=move |_| stop.focused.set(Some(id))
            on:click=move |ev| {
                if listed() && !clicked_control(&ev) {
                    jump.go(view, id);
                }
            }
            on:contextmenu=move |ev| menu.on_contextmenu(&ev)
            on:keydown=move |ev| {
                let plain = !ev.shift_key() && !ev.alt_key() && !ev.ctrl_key() && !ev.meta_key();
                if listed() && ev.key() == "Enter" && row_itself(&ev) {
                    ev.prevent_default();
                    jump.go(view, id);
                } else if plain && row_itself(&ev) && move_focus(&ev.key(), row) {
                    ev.prevent_default();
                } else {
                    menu.on_keydown(&ev);
                }
            }
            on:pointerdown=move |ev| menu.on_pointerdown(&ev)
            on:pointermove=move |ev| menu.on_pointermove(&ev)
            on:pointerup=move |_| menu.on_pointerup()
            on:pointercancel=move |_| menu.cancel_press()>
            {item.day.clone().map(|d| {
                let label = d.clone();
                view! { <p class="day" role="separator" aria-label=label>{d}</p> }
            })}
            {item.show_author.then(|| view! { <p class="author">{item.author.clone()}</p> })}
            {item.file.clone().map(|f| view! { <FileCard file=f/> })}
            <Show when=move || editing.get()
                fallback={
                    let text = text.clone();
                    let task = item.task;
                    let check = intents.clone();
                    let id = item.id;
                    let body = item.body.clone();
                    move || if is_note {
                        Some(view! { <NoteCard id title=text.clone() body=body.clone()/> }.into_any())
                    } else { match task {
                        // A task: a checkbox named by its text (the label around both).
                        Some(done) => {
                            let check = check.clone();
                            Some(view! {
                                <label class="text task" class:done=done>
                                    <input type="checkbox" prop:checked=done
                                        on:change=move |ev| check.send(Intent::Check(id, event_target_checked(&ev)))/>
                                    <span><MessageText text=text.clone()/></span>
                                </label>
                            }.into_any())
                        }
                        None => (!text.is_empty()).then(|| view! { <p class="text"><MessageText text=text.clone()/></p> }.into_any()),
                    } }
                }>
                <form class="edit" on:submit={
                    let submit = submit.clone();
                    move |ev| { ev.prevent_default(); submit(); }
                }>
                    <textarea aria-label=if is_text { "Edit message" } else { "Caption" }
                        rows="2" node_ref=edit_box
                        prop:value=move || draft.get()
                        on:input=move |ev| {
                            let value = event_target_value(&ev);
                            edit.draft.set(value.clone());
                            draft.set(value);
                        }
                        on:keydown={
                            let submit_key = submit_key.clone();
                            let cancel = cancel.clone();
                            move |ev| {
                                if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                                    ev.prevent_default();
                                    submit_key();
                                } else if ev.key() == "Escape" {
                                    // Cancels the edit only (not a dialog around it).
                                    ev.prevent_default();
                                    ev.stop_propagation();
                                    cancel();
                                }
                            }
                        }></textarea>
                    <button type="submit">"Save"</button>
                    <button type="button" on:click={
                        let cancel = cancel.clone();
                        move |_| cancel()
                    }>"Cancel"</button>
                </form>
            </Show>
            <p class="meta">
                {item.edited.then(|| view! { <span class="edited">"edited"</span> })}
                // A search's list of matches gives each its date.
                <time datetime=item.datetime.clone() title=item.datetime>
                    {move || if listed() { full.clone() } else { when.clone() }}
                </time>
                {item.mine.then_some(move || {
                    let (pending, delivery) = wording();
                    let tick = Tick::of(pending, delivery.as_deref());
                    let words = tick.words().to_owned();
                    let (name, title) = (tick.name(), words.clone());
                    view! {
                        <span class="tick" data-tick=name title=title>
                            <TickIcon tick/>
                            // The icon's text alternative, shown beside it on keyboard focus.
                            <span class="tick-words">{words}</span>
                        </span>
                    }
                })}
            </p>
            // Hover actions on a computer (the menu has them too, and is the way on touch).
            <div class="item-actions">
                {(editable && !is_note).then(|| if is_text {
                    view! {
                        <button type="button" aria-label="Edit message" title="Edit" tabindex="-1"
                            on:click=move |_| open_edit()>"Edit"</button>
                    }.into_any()
                } else {
                    let label = if has_caption { "Edit caption" } else { "Add caption" };
                    view! {
                        <button type="button" aria-label=label title=label tabindex="-1"
                            on:click=move |_| open_edit()>"Caption"</button>
                    }.into_any()
                })}
                <button type="button" aria-label="Delete message" title="Delete" tabindex="-1"
                    on:click=move |_| deleting.set(true)>"Delete"</button>
            </div>
            <MessageMenu menu text=menu_text file=menu_file editable pin=(item.id, item.pinned) detail/>
        </li>
    }
}

/// A note in the history: its title, its first lines, its checklist (checkable here), and
/// "Open note".
#[component]
fn NoteCard(id: ferry_core::ItemId, title: String, body: String) -> impl IntoView {
    let intents = expect_context::<Intents>();
    let notes = expect_context::<NoteEditorState>();
    let preview = ferry_core::note::preview(&body, 3);
    let lines = ferry_core::note::checklist(&body);
    let shown = lines.len().min(8);
    let more = lines.len() - shown;
    // Rebuilt right after its editor closed, with the focus lost on the way: take it back.
    let opener = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(button) = opener.get()
            && notes.closed.get_value() == Some(id)
            && notes.open.get_untracked().is_none()
            && document()
                .active_element()
                .is_none_or(|e| e.tag_name().eq_ignore_ascii_case("body"))
        {
            let _ = button.focus();
        }
    });
    let title_shown = if title.trim().is_empty() {
        "Untitled note".to_owned()
    } else {
        title.clone()
    };
    view! {
        <div class="note-card">
            <p class="note-title"><MessageText text=title_shown/></p>
            {(!preview.is_empty()).then(|| view! { <p class="note-preview"><MessageText text=preview/></p> })}
            {(!lines.is_empty()).then(|| view! {
                <div class="checklist" role="group" aria-label=format!("Checklist of {}", if title.trim().is_empty() { "the note" } else { title.as_str() })>
                    {lines.into_iter().take(shown).map(|l| {
                        let intents = intents.clone();
                        let (title, body, line) = (title.clone(), body.clone(), l.line);
                        view! {
                                <label class="task" class:done=l.done>
                                    <input type="checkbox" prop:checked=l.done
                                        on:change=move |ev| {
                                            let done = event_target_checked(&ev);
                                            if let Some(next) = ferry_core::note::set_checked(&body, line, done) {
                                                intents.send(Intent::EditNote {
                                                    id,
                                                    title: title.clone(),
                                                    base: body.clone(),
                                                    body: next,
                                                });
                                            }
                                        }/>
                                    <span>{l.text}</span>
                                </label>
                        }
                    }).collect_view()}
                </div>
            })}
            {(more > 0).then(|| view! { <p class="note-more">{format!("and {more} more")}</p> })}
            <button type="button" class="open-note" data-note=id.to_string() node_ref=opener
                on:click=move |_| notes.edit(id)>"Open note"</button>
        </div>
    }
}

/// A message's text with its links clickable and the search query marked.
#[component]
fn MessageText(text: String) -> impl IntoView {
    let view = expect_context::<ViewState>();
    move || {
        let query = view.search.get();
        let marked = move |part: &str| {
            highlight(part, &query)
                .into_iter()
                .map(|(t, hit)| {
                    if hit {
                        view! { <mark>{t}</mark> }.into_any()
                    } else {
                        t.into_any()
                    }
                })
                .collect_view()
        };
        linkify(&text)
            .into_iter()
            .map(|seg| match seg {
                Segment::Text(t) => marked(&t).into_any(),
                Segment::Link(url) => view! {
                    <a href=url.clone() target="_blank" rel="noopener noreferrer">{marked(&url)}</a>
                }
                .into_any(),
            })
            .collect_view()
    }
}

/// The delivery tick: a clock, one tick or two (drawn, so it looks the same everywhere).
#[component]
fn TickIcon(tick: Tick) -> impl IntoView {
    let paths: &[&str] = match tick {
        Tick::Here | Tick::Mailbox => &["M12 7v5l3 2", "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18"],
        Tick::Some(_) => &["M5 12.5l4.5 4.5L19 7.5"],
        Tick::All(_) => &["M2 12.5l4.5 4.5L16 7.5", "M11.5 16.5l0.5 0.5L22 7.5"],
    };
    view! {
        <svg aria-hidden="true" viewBox="0 0 24 24" width="16" height="16" fill="none"
            stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
            {paths.iter().map(|d| view! { <path d=*d/> }).collect_view()}
        </svg>
    }
}

/// Whether a click landed on a control inside the row (a link, a button, the edit box).
fn clicked_control(ev: &leptos::web_sys::MouseEvent) -> bool {
    ev.target()
        .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
        .and_then(|e| e.closest("a, button, textarea, input").ok().flatten())
        .is_some()
}

/// Whether a key event is the row's own (not from a control inside it).
fn row_itself(ev: &leptos::web_sys::KeyboardEvent) -> bool {
    ev.target() == ev.current_target()
}

/// ↑/↓ move to the row above/below, Home/End to the first/last shown; `false` for other keys
/// (or when there is no such row).
fn move_focus(key: &str, row: NodeRef<leptos::html::Li>) -> bool {
    use leptos::web_sys::{Element, HtmlElement};
    let Some(li) = row.get_untracked() else {
        return false;
    };
    let is_row = |e: &Element| e.class_list().contains("item");
    let step = |from: Option<Element>, up: bool| {
        let mut at = from;
        while let Some(e) = at {
            if is_row(&e) {
                return Some(e);
            }
            at = if up {
                e.previous_element_sibling()
            } else {
                e.next_element_sibling()
            };
        }
        None
    };
    let target = match key {
        "ArrowUp" => step(li.previous_element_sibling(), true),
        "ArrowDown" => step(li.next_element_sibling(), false),
        "Home" => li
            .parent_element()
            .and_then(|p| step(p.first_element_child(), false)),
        "End" => li
            .parent_element()
            .and_then(|p| step(p.last_element_child(), true)),
        _ => return false,
    };
    match target.and_then(|t| t.dyn_into::<HtmlElement>().ok()) {
        Some(t) => {
            let _ = t.focus();
            true
        }
        None => false,
    }
}
