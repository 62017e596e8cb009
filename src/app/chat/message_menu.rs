//! A message's menu (Copy, Edit, Save file, Delete): opened by right-click, a long press with
//! touch or pen, the ContextMenu key or Shift+F10; moved through with the arrow keys.
//!
//! Split from the row because it is a small state machine of its own (where it is open, the
//! pending long press, the click that ends one); the row forwards its pointer and key events
//! to [`MenuState`] and puts [`MessageMenu`] at its end.

use crate::app::focus_later;
use crate::view::{Intent, Intents};
use ferry_core::{BlobId, ItemId};
use leptos::prelude::*;
use leptos::wasm_bindgen::JsCast;

/// Where the message menu opens: at the pointer (right-click, long press) or under the
/// message (keyboard).
#[derive(Clone, Copy, PartialEq)]
enum MenuAt {
    Pointer(i32, i32),
    Item,
}

/// What a message menu item does.
#[derive(Clone, Copy, PartialEq)]
enum MenuAction {
    Copy,
    Edit,
    Pin,
    SaveFile,
    Delete,
}

/// How long a touch or pen must rest on a message to open its menu.
const LONG_PRESS_MS: u64 = 500;
/// Moving further than this (px) is a scroll, not a long press.
const LONG_PRESS_SLOP: i32 = 10;

/// The menu's size on screen, about 12rem by 14rem (five entries and the delivery line), to keep
/// it there.
const MENU_W: i32 = 200;
const MENU_H: i32 = 250;

/// One message's menu, shared by its row (which opens it) and [`MessageMenu`] (which shows
/// it). `Copy`: signals and node refs are handles.
#[derive(Clone, Copy)]
pub(super) struct MenuState {
    /// Where the menu is open, if it is.
    at: RwSignal<Option<MenuAt>>,
    /// The message's row: focus goes back to it, and Edit and Delete focus inside it.
    row: NodeRef<leptos::html::Li>,
    /// The menu, whose entries the arrow keys move between.
    el: NodeRef<leptos::html::Div>,
    /// The row's edit box is open (the browser's own menu then, and no long press).
    editing: RwSignal<bool>,
    /// Set to delete the row (it goes at once and offers Undo).
    deleting: RwSignal<bool>,
    /// A touch or pen resting on the row: its timer and where it started.
    press: StoredValue<Option<(TimeoutHandle, i32, i32)>>,
    /// A long press opened the menu: the click that ends it must not close it again.
    long_pressed: StoredValue<bool>,
}

impl MenuState {
    /// The menu of the row `row`, whose edit box is `editing`; Delete sets `deleting`.
    pub(super) fn new(
        row: NodeRef<leptos::html::Li>,
        editing: RwSignal<bool>,
        deleting: RwSignal<bool>,
    ) -> Self {
        MenuState {
            at: RwSignal::new(None),
            row,
            el: NodeRef::new(),
            editing,
            deleting,
            press: StoredValue::new(None),
            long_pressed: StoredValue::new(false),
        }
    }

    /// Focuses an entry. `None`: the first entry; `Some(0)`: the last; `Some(±1)`: the
    /// next/previous one, wrapping around.
    fn focus_entry(self, step: Option<i32>) {
        // Runs a frame later: the row may have been re-rendered (its delivery state changed)
        // and this one disposed by then.
        let Some(m) = self.el.try_get_untracked().flatten() else {
            return;
        };
        // The menu items (the delivery detail above them is not one).
        let children = m.children();
        let entries: Vec<leptos::web_sys::Element> = (0..children.length())
            .filter_map(|i| children.item(i))
            .filter(|e| e.get_attribute("role").as_deref() == Some("menuitem"))
            .collect();
        let n = entries.len() as i32;
        if n == 0 {
            return;
        }
        let active = document().active_element();
        let current = entries
            .iter()
            .position(|e| active.as_ref() == Some(e))
            .map(|i| i as i32);
        let next = match (step, current) {
            (None, _) => 0,
            (Some(0), _) => n - 1,
            (Some(s), Some(c)) => (c + s).rem_euclid(n),
            (Some(s), None) => {
                if s < 0 {
                    n - 1
                } else {
                    0
                }
            }
        };
        if let Some(el) = entries
            .get(next as usize)
            .and_then(|e| e.clone().dyn_into::<leptos::web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }

    fn open(self, at: MenuAt) {
        self.at.set(Some(at));
        request_animation_frame(move || self.focus_entry(None));
    }

    fn close(self, refocus: bool) {
        self.at.set(None);
        if refocus && let Some(li) = self.row.get_untracked() {
            let _ = li.focus();
        }
    }

    /// Forgets a touch that is no longer a long press (lifted, moved, cancelled).
    pub(super) fn cancel_press(self) {
        if let Some((handle, _, _)) = self.press.get_value() {
            handle.clear();
            self.press.set_value(None);
        }
    }

    /// The row's `contextmenu`: right-click opens the menu at the pointer.
    pub(super) fn on_contextmenu(self, ev: &leptos::web_sys::MouseEvent) {
        // Links, media and the edit box keep the browser's own menu.
        let native = ev
            .target()
            .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
            .and_then(|e| {
                e.closest("a, textarea, input, video, .ctx-menu")
                    .ok()
                    .flatten()
            })
            .is_some();
        if native || self.editing.get_untracked() {
            return;
        }
        ev.prevent_default();
        // A touch long press (Chrome also fires `contextmenu` for it) opens the menu beside
        // the message itself.
        if self.press.get_value().is_some() || self.long_pressed.get_value() {
            return;
        }
        let (w, h) = (
            window()
                .inner_width()
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(1e4) as i32,
            window()
                .inner_height()
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(1e4) as i32,
        );
        // Keep the menu on screen.
        let x = ev.client_x().min(w - MENU_W).max(4);
        let y = ev.client_y().min(h - MENU_H).max(4);
        self.open(MenuAt::Pointer(x, y));
    }

    /// The row's `keydown`: the ContextMenu key or Shift+F10 opens the menu under the message.
    pub(super) fn on_keydown(self, ev: &leptos::web_sys::KeyboardEvent) {
        let key = ev.key();
        if (key == "ContextMenu" || (key == "F10" && ev.shift_key()))
            && !self.editing.get_untracked()
            && self.at.get_untracked().is_none()
        {
            ev.prevent_default();
            self.open(MenuAt::Item);
        }
    }

    /// The row's `pointerdown`: a touch or pen starts the long-press timer.
    pub(super) fn on_pointerdown(self, ev: &leptos::web_sys::PointerEvent) {
        if ev.pointer_type() == "mouse" || self.editing.get_untracked() {
            return;
        }
        self.cancel_press();
        let (x, y) = (ev.client_x(), ev.client_y());
        let (press, long_pressed) = (self.press, self.long_pressed);
        let handle = set_timeout_with_handle(
            move || {
                // The row may be gone by now (re-rendered): then there is no menu.
                if press.try_set_value(None).is_some() {
                    return;
                }
                long_pressed.try_set_value(true);
                let (x, y) = self.beside_row(x, y);
                self.open(MenuAt::Pointer(x, y));
            },
            std::time::Duration::from_millis(LONG_PRESS_MS),
        );
        if let Ok(handle) = handle {
            self.press.set_value(Some((handle, x, y)));
        }
    }

    /// Where a menu opened by touch goes: under the message (or above it when there is no
    /// room below), at the finger's x, so the message stays visible while the menu is open.
    fn beside_row(self, x: i32, y: i32) -> (i32, i32) {
        let Some(li) = self.row.get_untracked() else {
            return (x, y);
        };
        let r = li.get_bounding_client_rect();
        let size = |v: Result<leptos::wasm_bindgen::JsValue, _>| {
            v.ok().and_then(|v| v.as_f64()).unwrap_or(1e4) as i32
        };
        let (w, h) = (size(window().inner_width()), size(window().inner_height()));
        let (top, bottom) = (r.top() as i32, r.bottom() as i32);
        let y = if bottom + 4 + MENU_H <= h {
            bottom + 4
        } else if top - 4 - MENU_H >= 0 {
            top - 4 - MENU_H
        } else {
            // A message taller than the screen: the menu over its lower part.
            (h - MENU_H - 4).max(4)
        };
        (x.min(w - MENU_W).max(4), y)
    }

    /// The row's `pointermove`: moving away is a scroll, not a long press.
    pub(super) fn on_pointermove(self, ev: &leptos::web_sys::PointerEvent) {
        if let Some((_, x, y)) = self.press.get_value()
            && ((ev.client_x() - x).abs() > LONG_PRESS_SLOP
                || (ev.client_y() - y).abs() > LONG_PRESS_SLOP)
        {
            self.cancel_press();
        }
    }

    /// The row's `pointerup`: ends the press.
    pub(super) fn on_pointerup(self) {
        self.cancel_press();
        if self.long_pressed.get_value() {
            // The click that follows this pointerup is part of the long press.
            let long_pressed = self.long_pressed;
            set_timeout(
                move || {
                    long_pressed.try_set_value(false);
                },
                std::time::Duration::ZERO,
            );
        }
    }
}

/// The open menu and the backdrop that closes it. `text` is the message's text, or a file's
/// caption ("" for none: no Copy); `file` the root of the file it carries (Save file; its
/// Edit is "Add caption" or "Edit caption"); `editable` false for an item a newer Ferry wrote
/// (no Edit); `pin` the item and whether it is pinned (Pin / Unpin); `detail` which devices have it, shown at the menu's top (the row itself shows only a tick).
#[component]
pub(super) fn MessageMenu(
    menu: MenuState,
    text: String,
    file: Option<BlobId>,
    editable: bool,
    pin: (ItemId, bool),
    detail: Signal<Option<String>>,
) -> impl IntoView {
    let (id, pinned) = pin;
    let intents = expect_context::<Intents>();
    let entries: Vec<(MenuAction, &'static str)> = [
        (!text.is_empty()).then_some((MenuAction::Copy, "Copy")),
        editable.then_some((
            MenuAction::Edit,
            match (file, text.is_empty()) {
                (None, _) => "Edit",
                (Some(_), true) => "Add caption",
                (Some(_), false) => "Edit caption",
            },
        )),
        Some((MenuAction::Pin, if pinned { "Unpin" } else { "Pin" })),
        file.is_some()
            .then_some((MenuAction::SaveFile, "Save file")),
        Some((MenuAction::Delete, "Delete")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let run = move |action: MenuAction| match action {
        MenuAction::Copy => {
            menu.close(true);
            intents.send(Intent::CopyText(text.clone()));
        }
        MenuAction::Edit => {
            menu.close(false);
            menu.editing.set(true);
            focus_later("textarea", menu.row.get_untracked().map(Into::into));
        }
        MenuAction::Pin => {
            menu.close(true);
            intents.send(Intent::Pin(id, !pinned));
        }
        MenuAction::SaveFile => {
            menu.close(true);
            if let Some(root) = file {
                intents.send(Intent::SaveFile(root));
            }
        }
        MenuAction::Delete => {
            menu.close(false);
            menu.deleting.set(true);
        }
    };
    let menu_el = menu.el;
    let backdrop_pressed = StoredValue::new(false);
    view! {
        <Show when=move || menu.at.get().is_some()>
            // Only a press that began on the backdrop closes the menu: the lift of the long
            // press that opened it (and the click a browser makes of it) never does.
            <div class="menu-backdrop" aria-hidden="true"
                on:pointerdown=move |_| backdrop_pressed.set_value(true)
                on:click=move |_| {
                    if std::mem::take(&mut *backdrop_pressed.write_value()) {
                        menu.close(false);
                    }
                }
                on:contextmenu=move |ev| { ev.prevent_default(); menu.close(false); }></div>
            <div class="ctx-menu" role="menu" aria-label="Message actions" node_ref=menu_el
                class:anchored=move || menu.at.get() == Some(MenuAt::Item)
                style=move || match menu.at.get() {
                    Some(MenuAt::Pointer(x, y)) => format!("left: {x}px; top: {y}px"),
                    _ => String::new(),
                }
                on:keydown=move |ev: leptos::web_sys::KeyboardEvent| {
                    match ev.key().as_str() {
                        "ArrowDown" => { ev.prevent_default(); menu.focus_entry(Some(1)); }
                        "ArrowUp" => { ev.prevent_default(); menu.focus_entry(Some(-1)); }
                        "Home" => { ev.prevent_default(); menu.focus_entry(None); }
                        "End" => { ev.prevent_default(); menu.focus_entry(Some(0)); }
                        "Escape" => { ev.prevent_default(); ev.stop_propagation(); menu.close(true); }
                        "Tab" => { ev.prevent_default(); menu.close(true); }
                        _ => {}
                    }
                }>
                {move || detail.get().map(|d| view! { <p class="menu-detail" role="none">{d}</p> })}
                {entries.iter().map(|&(action, label)| {
                    let run = run.clone();
                    view! {
                        <button type="button" role="menuitem" tabindex="-1"
                            on:click=move |_| run(action)>{label}</button>
                    }
                }).collect_view()}
            </div>
        </Show>
    }
}
