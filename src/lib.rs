//! Ferry, the app: a Leptos UI over `ferry-core`, with IndexedDB storage and WebRTC links.
//!
//! Layout: [`app`] renders [`view`] state and emits intents; `runtime` (wasm only) owns the
//! replica, storage and network and feeds the view state; `store` and `net` are the browser
//! adapters of the core's ports.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod scan;
pub mod view;

#[cfg(target_arch = "wasm32")]
pub mod net;
#[cfg(target_arch = "wasm32")]
pub mod pwa;
#[cfg(target_arch = "wasm32")]
pub mod runtime;
#[cfg(target_arch = "wasm32")]
pub mod store;
#[cfg(target_arch = "wasm32")]
pub mod wake;

/// Mounts the app and starts the runtime. Called by `main` in the browser.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    use leptos::prelude::*;
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let owner = Owner::new();
    owner.set();
    let view = view::ViewState::new();
    runtime::spawn(view, rx, tx.clone());
    pwa::start(view);
    mount_to_body(move || view! { <app::App view intents=tx/> });
    // The app lives as long as the page: keep its reactive owner alive.
    std::mem::forget(owner);
}
