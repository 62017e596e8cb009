//! Browser network adapters.
pub mod rtc;
pub mod tabs;
