//! The image viewer: a file card's image opens it full size (click, tap, or Enter on its
//! button); ←/→ (or Previous/Next) move between the history's images, Escape or Close ends
//! it and the focus goes back to the image it started from.

use crate::view::ViewState;
use ferry_core::BlobId;
use leptos::prelude::*;

/// The image shown full size, if any.
#[derive(Clone, Copy)]
pub(in crate::app) struct Viewer {
    pub at: RwSignal<Option<BlobId>>,
}

impl Viewer {
    pub(in crate::app) fn new() -> Self {
        Viewer {
            at: RwSignal::new(None),
        }
    }
}

/// The attribute that finds an image's open button again (focus goes back there).
pub(super) const OPENER: &str = "data-view-root";

#[component]
pub(in crate::app) fn ImageViewer() -> impl IntoView {
    let view = expect_context::<ViewState>();
    let viewer = expect_context::<Viewer>();
    // The history's images whose bytes are here, oldest first: (root, name, object URL).
    let images = Memo::new(move |_| {
        let roots: Vec<(BlobId, String)> = view.items.with(|items| {
            items
                .iter()
                .filter_map(|i| i.file.as_ref())
                .filter(|f| f.mime.starts_with("image/"))
                .map(|f| (f.root, f.name.clone()))
                .collect()
        });
        view.files.with(|files| {
            roots
                .into_iter()
                .filter_map(|(root, name)| {
                    let url = files.get(&root.to_string())?.preview.clone()?;
                    Some((root, name, url))
                })
                .collect::<Vec<_>>()
        })
    });
    let position = move || {
        let at = viewer.at.get()?;
        images.with(|list| {
            list.iter()
                .position(|(r, _, _)| *r == at)
                .map(|k| (k, list.len()))
        })
    };
    let close = move || {
        if let Some(root) = viewer.at.get_untracked() {
            viewer.at.set(None);
            crate::app::focus_later(format!("[{OPENER}='{root}']"), None);
        }
    };
    let step = move |dir: i32| {
        if let Some((k, n)) = position() {
            let next = (k as i32 + dir).clamp(0, n as i32 - 1) as usize;
            if let Some(root) = images.with_untracked(|l| l.get(next).map(|(r, _, _)| *r)) {
                viewer.at.set(Some(root));
            }
        }
    };
    let close_button = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if let Some(b) = close_button.get() {
            let _ = b.focus();
        }
    });
    let shown = move || {
        let at = viewer.at.get()?;
        images.with(|l| l.iter().find(|(r, _, _)| *r == at).cloned())
    };
    view! {
        <Show when=move || viewer.at.with(Option::is_some)>
            <div class="viewer-backdrop" on:click=move |ev| {
                if ev.target() == ev.current_target() {
                    close();
                }
            }>
                <div class="viewer" role="dialog" aria-modal="true" aria-label="Image viewer"
                    on:keydown=move |ev: leptos::web_sys::KeyboardEvent| match ev.key().as_str() {
                        "Escape" => { ev.prevent_default(); ev.stop_propagation(); close(); }
                        "ArrowLeft" => { ev.prevent_default(); step(-1); }
                        "ArrowRight" => { ev.prevent_default(); step(1); }
                        _ => {}
                    }>
                    {move || shown().map(|(_, name, url)| view! {
                        <img class="viewer-image" src=url alt=name.clone()/>
                        <p class="viewer-caption">
                            {name}
                            {move || position().map(|(k, n)| format!(" · {} of {n}", k + 1))}
                        </p>
                    })}
                    <div class="viewer-actions">
                        <button type="button" aria-label="Previous image"
                            prop:disabled=move || position().is_none_or(|(k, _)| k == 0)
                            on:click=move |_| step(-1)>"←"</button>
                        <button type="button" aria-label="Next image"
                            prop:disabled=move || position().is_none_or(|(k, n)| k + 1 >= n)
                            on:click=move |_| step(1)>"→"</button>
                        <button type="button" node_ref=close_button on:click=move |_| close()>"Close"</button>
                    </div>
                </div>
            </div>
        </Show>
    }
}
