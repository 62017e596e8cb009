//! One entry of the history: a message or a file, its day separator, author and delivery, the
//! edit box and the delete confirmation. The menu lives in `message_menu`; the row forwards
//! its pointer and key events there.

use super::file_card::FileCard;
use super::message_menu::{MenuState, MessageMenu};
use super::{EditState, Wording, focus_composer};
use crate::view::{
    Intent, Intents, ItemView, Segment, ViewState, highlight, linkify, relative_age,
};
use leptos::prelude::*;

/// A history entry (`li`): focusable, with its own menu.
#[component]
pub(super) fn ItemRow(item: ItemView) -> impl IntoView {
    let view = expect_context::<ViewState>();
    let intents = expect_context::<Intents>();
    let class = if item.mine { "item mine" } else { "item" };
    let is_text = item.file.is_none();
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
    let confirming = RwSignal::new(false);
    let draft = RwSignal::new(if resumed {
        edit.draft.get_untracked()
    } else {
        item.text.clone()
    });
    let id = item.id;
    let text = item.text.clone();
    let text_for_cancel = item.text.clone();
    let at_ms = item.at_ms;
    let (save, delete) = (intents.clone(), intents);
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
    let menu = MenuState::new(row, editing, confirming);
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
    // …and the shared state follows the row (Edit, the menu, Save, Cancel, Escape).
    Effect::new(move |_| {
        let on = editing.get();
        let here = edit.id.get_untracked() == Some(id);
        if on && !here {
            edit.draft.set(draft.get_untracked());
            edit.id.set(Some(id));
        } else if !on && here {
            edit.id.set(None);
        }
    });
    let (menu_text, menu_file) = (text.clone(), item.file.as_ref().map(|f| f.root));

    view! {
        <li class=class node_ref=row tabindex="0"
            on:contextmenu=move |ev| menu.on_contextmenu(&ev)
            on:keydown=move |ev| menu.on_keydown(&ev)
            on:pointerdown=move |ev| menu.on_pointerdown(&ev)
            on:pointermove=move |ev| menu.on_pointermove(&ev)
            on:pointerup=move |_| menu.on_pointerup()
            on:pointercancel=move |_| menu.cancel_press()>
            {item.day.clone().map(|d| {
                let label = d.clone();
                view! { <p class="day" role="separator" aria-label=label>{d}</p> }
            })}
            {item.file.clone().map(|f| view! { <FileCard file=f/> })}
            <Show when=move || editing.get()
                fallback={
                    let text = text.clone();
                    move || (!text.is_empty()).then(|| view! { <p class="text"><MessageText text=text.clone()/></p> })
                }>
                <form class="edit" on:submit={
                    let submit = submit.clone();
                    move |ev| { ev.prevent_default(); submit(); }
                }>
                    <textarea aria-label="Edit message" rows="2" node_ref=edit_box
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
                <span class="author" class:me=item.mine
                    title={if item.mine { "Written on this device" } else { "Written on another device" }}>
                    {item.author}
                </span>
                " · "
                <time datetime=item.datetime.clone() title=item.datetime>{item.time}</time>
                {move || relative_age(at_ms, view.now_ms.get())
                    .map(|age| view! { <span class="ago">" · "{age}</span> })}
                {item.edited.then_some(" · edited")}
                {let w = wording.clone(); move || w().0.then(|| view! { <span class="pending">" · not yet on other devices"</span> })}
                {move || wording().1.map(|d| view! { <span class="delivery">" · "{d}</span> })}
            </p>
            <div class="item-actions">
                <Show when=move || !confirming.get()
                    fallback={
                        let delete = delete.clone();
                        move || {
                            let delete = delete.clone();
                            view! {
                                <button type="button" class="danger"
                                    on:click=move |_| {
                                        delete.send(Intent::Delete(id));
                                        focus_composer();
                                    }>
                                    "Delete everywhere"
                                </button>
                                <button type="button" on:click=move |_| {
                                    confirming.set(false);
                                    if let Some(li) = row.get_untracked() {
                                        let _ = li.focus();
                                    }
                                }>"Keep"</button>
                            }
                        }
                    }>
                    {is_text.then(|| view! {
                        <button type="button" aria-label="Edit message"
                            on:click=move |_| open_edit()>"Edit"</button>
                    })}
                    <button type="button" aria-label="Delete message"
                        on:click=move |_| confirming.set(true)>"Delete"</button>
                </Show>
            </div>
            <MessageMenu menu text=menu_text file=menu_file/>
        </li>
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
