//! The packet budget the framing ([`crate::wire`]) and sealing ([`crate::seal`]) layers share.
//!
//! Both need the same two numbers: how large a frame on a data channel may be, and how much of
//! it sealing takes. Keeping them here (not in either layer) means neither layer imports the
//! other.

/// Largest frame sent or accepted on any transport (well under every browser's data-channel
/// limit; Chromium refuses sends above 256 KiB).
pub const MAX_PACKET: usize = 64 * 1024;

/// Bytes sealing adds around a packet: header (version 1, epoch 1, seq 8, nonce 24) and the
/// 16-byte Poly1305 tag.
pub const SEAL_OVERHEAD: usize = 34 + 16;
