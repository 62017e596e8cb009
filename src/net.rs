//! Browser network adapters.
pub mod rtc;
