//! Browser storage adapters for the core's [`ferry_core::Store`] port.
pub mod idb;
