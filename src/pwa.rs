//! Installable, offline PWA plumbing: service-worker registration, the update prompt, and the
//! install prompt. Updates never apply by themselves: a waiting version is announced and only
//! a click on "Reload" activates it (so nobody loses what they are typing).
//!
//! Also the browser calls the UI asks for through intents (components do no I/O): the
//! clipboard, the share inbox and the iOS install hint's remembered dismissal.

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
    detect_ios_hint(&window, view);
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
        request_periodic_prefetch(&reg);
        REGISTRATION.with(|slot| *slot.borrow_mut() = Some(reg));
    });
    receive_shared_files(view);
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

/// The Background Sync tag whose `sync` event posts the mailbox outbox (public/sw.js).
pub const OUTBOX_SYNC_TAG: &str = "ferry-outbox";
/// The Periodic Background Sync tag whose event fetches waiting mailbox entries ahead.
pub const PREFETCH_SYNC_TAG: &str = "ferry-prefetch";

/// Asks the service worker to post the outbox once there is a network, even if the app is
/// closed by then (Chromium's Background Sync). Browsers without it (Firefox, Safari) post
/// the outbox at the next start instead.
pub fn request_background_sync(tag: &'static str) {
    let reg = REGISTRATION.with(|slot| slot.borrow().clone());
    let Some(reg) = reg else {
        return;
    };
    let Ok(sync) = js_sys::Reflect::get(&reg, &"sync".into()) else {
        return;
    };
    if sync.is_undefined() {
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = call_async(&sync, "register", &[tag.into()]).await {
            web_sys::console::warn_1(&format!("background sync unavailable: {e:?}").into());
        }
    });
}

/// On installed apps where the browser allows it (Chromium, permission granted), asks for a
/// periodic fetch of waiting mailbox entries, so opening the app shows them at once.
fn request_periodic_prefetch(reg: &ServiceWorkerRegistration) {
    let Ok(periodic) = js_sys::Reflect::get(reg, &"periodicSync".into()) else {
        return;
    };
    if periodic.is_undefined() {
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        let options = js_sys::Object::new();
        // The browser decides the real interval (engagement); ask for every 15 minutes.
        let _ = js_sys::Reflect::set(&options, &"minInterval".into(), &(15.0 * 60_000.0).into());
        let _ = call_async(
            &periodic,
            "register",
            &[PREFETCH_SYNC_TAG.into(), options.into()],
        )
        .await;
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

/// Calls `target.name(args...)` and awaits the promise it returns (Cache Storage has no
/// web-sys features enabled here; these few calls go through reflection).
async fn call_async(target: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let f: js_sys::Function = js_sys::Reflect::get(target, &name.into())?.dyn_into()?;
    let promise = f.apply(target, &args.iter().collect::<js_sys::Array>())?;
    JsFuture::from(js_sys::Promise::from(promise)).await
}

fn call_sync(target: &JsValue, name: &str, arg: &str) -> Option<JsValue> {
    let f: js_sys::Function = js_sys::Reflect::get(target, &name.into())
        .ok()?
        .dyn_into()
        .ok()?;
    f.call1(target, &arg.into()).ok()
}

const SHARE_INBOX: &str = "share-inbox";

/// Files shared into Ferry with "Share → Ferry" (manifest `share_target`, POST): the service
/// worker parked them in the share inbox; here they become a draft listed under "Files to
/// send" (the shared text goes into the composer, see the runtime). They are sent only when
/// the person presses Send; the inbox is emptied then (or when they are discarded), so a
/// reload before that offers them again and a reload after does not repeat them.
fn receive_shared_files(view: ViewState) {
    let Some(window) = web_sys::window() else {
        return;
    };
    if let Some(reason) = window
        .location()
        .search()
        .ok()
        .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
        .and_then(|p| p.get("share_error"))
    {
        view.error.set(Some(format!(
            "Could not receive the shared files: {reason}"
        )));
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some("./"));
        }
    }
    let Ok(caches) = js_sys::Reflect::get(&window, &"caches".into()) else {
        return;
    };
    if caches.is_undefined() {
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        // `has` first: opening would create an empty inbox on every start.
        let has = call_async(&caches, "has", &[SHARE_INBOX.into()]).await;
        if !has.is_ok_and(|h| h.is_truthy()) {
            return;
        }
        match take_inbox(&caches).await {
            Ok(files) if !files.is_empty() => view.draft_files.set(files),
            Ok(_) => {}
            Err(e) => view.error.set(Some(format!(
                "Could not read the shared files: {}",
                e.as_string()
                    .or_else(|| js_sys::JSON::stringify(&e).ok().map(String::from))
                    .unwrap_or_default()
            ))),
        }
    });
}

async fn take_inbox(caches: &JsValue) -> Result<Vec<web_sys::File>, JsValue> {
    let inbox = call_async(caches, "open", &[SHARE_INBOX.into()]).await?;
    let index_url = web_sys::Url::new_with_base(
        "share-inbox/index.json",
        &web_sys::window()
            .and_then(|w| w.location().href().ok())
            .unwrap_or_default(),
    )?
    .href();
    let index = call_async(&inbox, "match", &[index_url.into()]).await?;
    let mut files = Vec::new();
    if let Ok(index) = index.dyn_into::<web_sys::Response>() {
        let entries = JsFuture::from(index.json()?).await?;
        for entry in js_sys::Array::from(&entries).iter() {
            let get = |k: &str| {
                js_sys::Reflect::get(&entry, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default()
            };
            let Ok(resp) = call_async(&inbox, "match", &[get("key").into()])
                .await?
                .dyn_into::<web_sys::Response>()
            else {
                continue;
            };
            let blob = JsFuture::from(resp.blob()?).await?;
            let options = js_sys::Object::new();
            js_sys::Reflect::set(&options, &"type".into(), &get("type").into())?;
            // `new File([blob], name, { type })`.
            let ctor: js_sys::Function =
                js_sys::Reflect::get(&js_sys::global(), &"File".into())?.dyn_into()?;
            let file = js_sys::Reflect::construct(
                &ctor,
                &js_sys::Array::of3(&js_sys::Array::of1(&blob), &get("name").into(), &options),
            )?;
            files.push(file.unchecked_into::<web_sys::File>());
        }
    }
    Ok(files)
}

/// Page-local intents, handled at once in the gesture that sent them; anything else is
/// handed back for the runtime.
pub fn handle_now(view: ViewState, intent: crate::view::Intent) -> Option<crate::view::Intent> {
    use crate::view::Intent;
    match intent {
        Intent::CopyText(text) => copy_text(view, text),
        Intent::DismissIosHint => dismiss_ios_hint(view),
        Intent::ClearShareInbox => clear_share_inbox(),
        other => return Some(other),
    }
    None
}

/// Empties the share inbox (its files were sent or discarded).
pub fn clear_share_inbox() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Ok(caches) = js_sys::Reflect::get(&window, &"caches".into()) else {
        return;
    };
    if caches.is_undefined() {
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        let _ = call_async(&caches, "delete", &[SHARE_INBOX.into()]).await;
    });
}

/// What the clipboard held, for "Paste as message".
pub enum Pasted {
    /// Plain text.
    Text(String),
    /// An image or other file (named `pasted-<time>.<ext>` when the clipboard gave no name).
    File(web_sys::File),
}

/// Reads the clipboard for "Paste as message": its first non-text entry as a file (a copied
/// image, say), else its text. `Err` says why not, in words for the toast.
pub async fn read_clipboard() -> Result<Pasted, String> {
    let refused = || "Pasting is not allowed here: paste into the Message box".to_owned();
    let clipboard: JsValue = web_sys::window()
        .map(|w| w.navigator().clipboard().into())
        .ok_or_else(refused)?;
    let items = call_async(&clipboard, "read", &[])
        .await
        .map_err(|_| refused())?;
    let items: js_sys::Array = items.dyn_into().map_err(|_| refused())?;
    let mut text = None;
    for item in items.iter() {
        let types: js_sys::Array = js_sys::Reflect::get(&item, &"types".into())
            .ok()
            .and_then(|t| t.dyn_into().ok())
            .unwrap_or_default();
        for ty in types.iter().filter_map(|t| t.as_string()) {
            let blob = call_async(&item, "getType", &[ty.clone().into()])
                .await
                .map_err(|_| refused())?;
            let blob: web_sys::Blob = blob.dyn_into().map_err(|_| refused())?;
            if ty.starts_with("text/") {
                if ty == "text/plain" && text.is_none() {
                    text = JsFuture::from(blob.text())
                        .await
                        .ok()
                        .and_then(|t| t.as_string());
                }
                continue;
            }
            let ext = ty.rsplit('/').next().unwrap_or("bin");
            let stamp = js_sys::Date::new_0()
                .to_iso_string()
                .as_string()
                .unwrap_or_default()
                .replace([':', '.'], "-");
            let options = web_sys::FilePropertyBag::new();
            options.set_type(&ty);
            let parts = js_sys::Array::of1(&blob);
            let file = web_sys::File::new_with_blob_sequence_and_options(
                &parts,
                &format!("pasted-{stamp}.{ext}"),
                &options,
            )
            .map_err(|_| refused())?;
            return Ok(Pasted::File(file));
        }
    }
    match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => Ok(Pasted::Text(t)),
        None => Err("The clipboard is empty".into()),
    }
}

/// Copies a text to the clipboard and says so (or why not) in the toast.
pub fn copy_text(view: ViewState, text: String) {
    wasm_bindgen_futures::spawn_local(async move {
        let ok = match web_sys::window().map(|w| w.navigator().clipboard()) {
            Some(cb) => JsFuture::from(cb.write_text(&text)).await.is_ok(),
            None => false,
        };
        view.toast.set(Some(if ok {
            "Copied".into()
        } else {
            "Copying is not allowed here: select the text and copy it yourself".into()
        }));
    });
}

const IOS_HINT_DISMISSED: &str = "ferry-ios-hint-dismissed";

/// Shows the "Add to Home Screen" hint on iOS Safari unless installed or dismissed before.
fn detect_ios_hint(window: &web_sys::Window, view: ViewState) {
    let ua = window.navigator().user_agent().unwrap_or_default();
    let touch = js_sys::Reflect::get(&window.navigator(), &"maxTouchPoints".into())
        .ok()
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0) as i32;
    // Safari's own flag, and the standard media query for installed apps.
    let standalone = js_sys::Reflect::get(&window.navigator(), &"standalone".into())
        .is_ok_and(|v| v.is_truthy())
        || call_sync(window, "matchMedia", "(display-mode: standalone)")
            .and_then(|m| js_sys::Reflect::get(&m, &"matches".into()).ok())
            .is_some_and(|v| v.is_truthy());
    let dismissed = window
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(IOS_HINT_DISMISSED).ok().flatten())
        .is_some();
    view.ios_hint
        .set(!dismissed && crate::view::ios_install_hint(&ua, touch, standalone));
}

/// Hides the iOS install hint for good on this browser.
pub fn dismiss_ios_hint(view: ViewState) {
    view.ios_hint.set(false);
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.set_item(IOS_HINT_DISMISSED, "1");
    }
}
