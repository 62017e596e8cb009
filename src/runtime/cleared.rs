//! Noticing that the browser cleared Ferry's data.
//!
//! Browsers evict a whole origin's storage under pressure (unless it is persistent), and
//! Safari deletes it after 7 days unused; Ferry then starts as a new device, and a person
//! would think their history is gone. A first-party cookie survives that eviction (verified
//! in Chromium: eviction and `Storage.clearDataForOrigin` of the storage types leave cookies),
//! so the app keeps one saying when it was last here with its data; a start with no space
//! but that cookie says what happened instead of the first-run card.

use wasm_bindgen::JsValue;

const COOKIE: &str = "ferry_here";

fn document() -> Option<web_sys::Document> {
    web_sys::window()?.document()
}

/// When Ferry was last here with its data (ms since the epoch), if the cookie says.
pub(super) fn last_here() -> Option<u64> {
    let doc = document()?;
    let cookies = js_sys::Reflect::get(&doc, &JsValue::from_str("cookie"))
        .ok()?
        .as_string()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| v.parse().ok())
}

/// Records that Ferry is here with its data now (ten years, this origin only).
pub(super) fn mark_here(now_ms: u64) {
    if let Some(doc) = document() {
        let cookie = format!("{COOKIE}={now_ms}; path=/; max-age=315360000; SameSite=Strict");
        let _ = js_sys::Reflect::set(
            &doc,
            &JsValue::from_str("cookie"),
            &JsValue::from_str(&cookie),
        );
    }
}
