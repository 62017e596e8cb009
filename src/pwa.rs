//! Installable, offline PWA plumbing: service-worker registration, the update prompt, and the
//! install prompt. Updates never apply by themselves: a waiting version is announced and only
//! a click on "Reload" activates it (so nobody loses what they are typing).

use crate::view::ViewState;
use leptos::prelude::*;
use std::cell::RefCell;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ServiceWorkerRegistration, ServiceWorkerState};

thread_local! {
    static REGISTRATION: RefCell<Option<ServiceWorkerRegistration>> = const { RefCell::new(None) };
    static INSTALL_EVENT: RefCell<Option<JsValue>> = const { RefCell::new(None) };
}

fn watch_installing(reg: &ServiceWorkerRegistration, view: ViewState) {
    let Some(worker) = reg.installing() else {
        return;
    };
    let w = worker.clone();
    let on_state = Closure::<dyn FnMut()>::new(move || {
        let controlled = web_sys::window()
            .and_then(|w| w.navigator().service_worker().controller())
            .is_some();
        // "installed" with a controller present = an update is waiting.
        if w.state() == ServiceWorkerState::Installed && controlled {
            view.update_ready.set(true);
        }
    });
    worker.set_onstatechange(Some(on_state.as_ref().unchecked_ref()));
    on_state.forget();
}

/// Registers `sw.js` and wires the update and install prompts into the view state.
pub fn start(view: ViewState) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let container = window.navigator().service_worker();
    // Install prompt (Chromium): keep the event, show an "Install" button.
    let on_prompt = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
        ev.prevent_default();
        INSTALL_EVENT.with(|e| *e.borrow_mut() = Some(ev.into()));
        view.can_install.set(true);
    });
    let _ = window.add_event_listener_with_callback(
        "beforeinstallprompt",
        on_prompt.as_ref().unchecked_ref(),
    );
    on_prompt.forget();
    wasm_bindgen_futures::spawn_local(async move {
        let Ok(reg) = JsFuture::from(container.register("sw.js")).await else {
            return;
        };
        let Ok(reg) = reg.dyn_into::<ServiceWorkerRegistration>() else {
            return;
        };
        if reg.waiting().is_some() && container.controller().is_some() {
            view.update_ready.set(true);
        }
        watch_installing(&reg, view);
        let r = reg.clone();
        let on_update = Closure::<dyn FnMut()>::new(move || watch_installing(&r, view));
        reg.set_onupdatefound(Some(on_update.as_ref().unchecked_ref()));
        on_update.forget();
        REGISTRATION.with(|slot| *slot.borrow_mut() = Some(reg));
    });
}

/// Checks for a new version now (also happens on every navigation).
pub fn check_for_update() {
    REGISTRATION.with(|slot| {
        if let Some(reg) = slot.borrow().as_ref()
            && let Ok(p) = reg.update()
        {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = JsFuture::from(p).await;
            });
        }
    });
}

/// Activates the waiting version and reloads once it controls the page.
pub fn apply_update() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let container = window.navigator().service_worker();
    let on_change = Closure::<dyn FnMut()>::new(move || {
        if let Some(w) = web_sys::window() {
            let _ = w.location().reload();
        }
    });
    container.set_oncontrollerchange(Some(on_change.as_ref().unchecked_ref()));
    on_change.forget();
    REGISTRATION.with(|slot| {
        if let Some(waiting) = slot.borrow().as_ref().and_then(|r| r.waiting()) {
            let _ = waiting.post_message(&"skip-waiting".into());
        }
    });
}

/// Shows the browser's install dialog (after a click; the event can be used once).
pub fn install(view: ViewState) {
    let Some(event) = INSTALL_EVENT.with(|e| e.borrow_mut().take()) else {
        return;
    };
    view.can_install.set(false);
    if let Ok(prompt) = js_sys::Reflect::get(&event, &"prompt".into())
        && let Ok(prompt) = prompt.dyn_into::<js_sys::Function>()
    {
        let _ = prompt.call0(&event);
    }
}
