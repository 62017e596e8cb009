//! Wakes the runtime's loop when something happens (a data-channel message, a message from a
//! sibling tab, something the person did), so it can sleep between events instead of polling
//! on a short timer: an idle phone wakes a few times a second rather than a hundred, and a tab
//! in the background (whose timers the browser slows to one a second) still answers at once.

use gloo_timers::future::TimeoutFuture;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};

thread_local! {
    static WOKEN: Cell<bool> = const { Cell::new(false) };
    static WAKER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Ends the current [`sleep`] now (or the next one at once, if none is running).
pub fn wake() {
    WOKEN.with(|w| w.set(true));
    if let Some(waker) = WAKER.with(|w| w.borrow_mut().take()) {
        waker.wake();
    }
}

/// Sleeps up to `ms`, or until [`wake`]. Returns whether it was woken.
pub async fn sleep(ms: u32) -> bool {
    let mut timeout = TimeoutFuture::new(ms);
    std::future::poll_fn(|cx| {
        if WOKEN.with(|w| w.replace(false)) {
            return Poll::Ready(true);
        }
        WAKER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        Pin::new(&mut timeout).poll(cx).map(|()| false)
    })
    .await
}
