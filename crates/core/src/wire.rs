//! The wire format: one codec for every transport.
//!
//! A logical [`Message`] is serialized with postcard and cut into *packets* of at most
//! [`MAX_PACKET`] bytes, because WebRTC data channels (and matchbox) do not split large
//! messages and Chromium refuses sends above 256 KiB. Every packet carries a version byte so
//! the format can evolve (the encryption layer of a later version wraps the same packets):
//!
//! ```text
//! packet  = version:u8 (=1) | msg_id:u32 LE | index:u16 LE | count:u16 LE | data
//! message = postcard(Message), reassembled from `count` packets with the same msg_id
//! ```
//!
//! Everything here is untrusted input: lengths are bounded, inconsistent packets are refused
//! with a [`WireError`], and nothing panics.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The only packet version this build writes and reads.
pub const VERSION: u8 = 1;
/// Header bytes before a packet's data.
pub const HEADER: usize = 9;
pub use crate::budget::MAX_PACKET;
/// Data bytes per packet: sealing adds its overhead and the sealed frame must still fit in
/// [`MAX_PACKET`].
pub const PACKET_DATA: usize = MAX_PACKET - HEADER - crate::budget::SEAL_OVERHEAD;
/// Largest reassembled message: bounds memory a peer can make us hold.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Messages being reassembled at once per peer; older partial ones are dropped.
const MAX_PARTIAL: usize = 4;

/// A frame that was refused, and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a header.
    #[error("frame truncated: {0} bytes")]
    Truncated(usize),
    /// A version this build does not speak.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// Larger than [`MAX_PACKET`] or a message larger than [`MAX_MESSAGE`].
    #[error("frame too large: {0} bytes")]
    TooLarge(usize),
    /// index/count make no sense or disagree with earlier packets of the message.
    #[error("inconsistent packet {index}/{count} of message {msg_id}")]
    Inconsistent {
        /// Message id.
        msg_id: u32,
        /// Packet index.
        index: u16,
        /// Packet count.
        count: u16,
    },
    /// The reassembled bytes are not a message.
    #[error("message could not be decoded: {0}")]
    Decode(String),
}

/// What devices say to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message on a new connection: who is talking, and a fresh challenge that the
    /// other side must bind its frames to (see [`crate::seal`]).
    Hello {
        /// The sender's device id bytes.
        device: [u8; 16],
        /// The sender's device name.
        name: String,
        /// Random per connection.
        challenge: [u8; 16],
    },
    /// Answer to a hello, sealed under its challenge: proves knowledge of the frame key on
    /// this very connection. Nothing of the space is sent before it arrives.
    Proof,
    /// An automerge sync message.
    Sync(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A file transfer message; only on the bulk lane, only between authenticated peers.
    /// (Variants are only ever appended: postcard names them by position.)
    Blob(crate::blobs::BlobMessage),
}

impl Message {
    /// Encodes into packets, each at most [`MAX_PACKET`] bytes.
    pub fn to_packets(&self, msg_id: u32) -> Result<Vec<Vec<u8>>, WireError> {
        let body = postcard::to_allocvec(self).map_err(|e| WireError::Decode(e.to_string()))?;
        if body.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(body.len()));
        }
        let parts: Vec<&[u8]> = if body.is_empty() {
            vec![&[][..]]
        } else {
            body.chunks(PACKET_DATA).collect()
        };
        let count = u16::try_from(parts.len()).map_err(|_| WireError::TooLarge(body.len()))?;
        Ok(parts
            .iter()
            .enumerate()
            .map(|(i, data)| {
                let mut p = Vec::with_capacity(HEADER + data.len());
                p.push(VERSION);
                p.extend_from_slice(&msg_id.to_le_bytes());
                p.extend_from_slice(&(i as u16).to_le_bytes());
                p.extend_from_slice(&count.to_le_bytes());
                p.extend_from_slice(data);
                p
            })
            .collect())
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        postcard::from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))
    }
}

struct Header {
    msg_id: u32,
    index: u16,
    count: u16,
}

fn parse_header(p: &[u8]) -> Result<Header, WireError> {
    if p.len() > MAX_PACKET {
        return Err(WireError::TooLarge(p.len()));
    }
    if p.len() < HEADER {
        return Err(WireError::Truncated(p.len()));
    }
    if p[0] != VERSION {
        return Err(WireError::UnknownVersion(p[0]));
    }
    let msg_id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
    let index = u16::from_le_bytes([p[5], p[6]]);
    let count = u16::from_le_bytes([p[7], p[8]]);
    let bad = WireError::Inconsistent {
        msg_id,
        index,
        count,
    };
    if count == 0 || index >= count || usize::from(count) * PACKET_DATA > MAX_MESSAGE + PACKET_DATA
    {
        return Err(bad);
    }
    Ok(Header {
        msg_id,
        index,
        count,
    })
}

#[derive(Default)]
struct Partial {
    count: u16,
    parts: BTreeMap<u16, Vec<u8>>,
    seq: u64,
}

/// Reassembles packets from one peer into messages.
#[derive(Default)]
pub struct Reassembler {
    partial: BTreeMap<u32, Partial>,
    seq: u64,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reassembler({} partial)", self.partial.len())
    }
}

impl Reassembler {
    /// Feeds one packet; returns a message once all of its packets have arrived.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<Message>, WireError> {
        let h = parse_header(packet)?;
        let data = &packet[HEADER..];
        if h.count == 1 {
            return Message::decode(data).map(Some);
        }
        self.seq += 1;
        let seq = self.seq;
        let entry = self.partial.entry(h.msg_id).or_insert_with(|| Partial {
            count: h.count,
            parts: BTreeMap::new(),
            seq,
        });
        if entry.count != h.count || (h.index + 1 < h.count && data.len() != PACKET_DATA) {
            self.partial.remove(&h.msg_id);
            return Err(WireError::Inconsistent {
                msg_id: h.msg_id,
                index: h.index,
                count: h.count,
            });
        }
        entry.parts.insert(h.index, data.to_vec());
        if entry.parts.len() == usize::from(entry.count) {
            let done = self.partial.remove(&h.msg_id).unwrap_or_default();
            let body: Vec<u8> = done.parts.into_values().flatten().collect();
            return Message::decode(&body).map(Some);
        }
        while self.partial.len() > MAX_PARTIAL {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.seq)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.partial.remove(&id);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_bytes_of_version_1_hello() {
        let m = Message::Hello {
            device: [7; 16],
            name: "pc".into(),
            challenge: [9; 16],
        };
        let p = m.to_packets(5).unwrap();
        let expected = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hello_v1.bin"
        ))
        .unwrap();
        assert_eq!(p, vec![expected]);
    }

    #[test]
    fn a_large_sync_message_is_split_and_reassembled() {
        let m = Message::Sync((0..200_000u32).map(|i| (i % 251) as u8).collect());
        let packets = m.to_packets(1).unwrap();
        assert_eq!(packets.len(), 4);
        assert!(
            packets
                .iter()
                .all(|p| p.len() + crate::budget::SEAL_OVERHEAD <= MAX_PACKET)
        );
        assert!(packets.iter().all(|p| p.len() <= MAX_PACKET));
        let mut r = Reassembler::default();
        let mut got = None;
        for p in &packets {
            got = r.push(p).unwrap();
        }
        assert_eq!(got, Some(m));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = Reassembler::default();
            let _ = r.push(&bytes);
        }

        #[test]
        fn truncated_or_flipped_packets_are_refused_or_decode_to_something_harmless(
            cut in 0usize..40, flip in 0usize..40, bit in 0u8..8
        ) {
            let m = Message::Hello { device: [1; 16], name: "laptop".into(), challenge: [2; 16] };
            let mut p = m.to_packets(9).unwrap().remove(0);
            let cut = cut.min(p.len());
            let mut r = Reassembler::default();
            prop_assert!(r.push(&p[..cut]).map(|m| m.is_none()).unwrap_or(true) || cut == p.len());
            let i = flip % p.len();
            p[i] ^= 1 << bit;
            let _ = r.push(&p);
        }
    }

    #[test]
    fn byte_payloads_keep_the_plain_sequence_encoding() {
        // serde_bytes only changes speed: variant 2, varint length, the bytes.
        let body = postcard::to_allocvec(&Message::Sync(vec![7; 300])).unwrap();
        let mut expected = vec![2, 0xac, 0x02];
        expected.extend([7; 300]);
        assert_eq!(body, expected);
    }

    #[test]
    fn bad_headers_are_named() {
        let mut r = Reassembler::default();
        assert_eq!(r.push(&[1, 2]).unwrap_err(), WireError::Truncated(2));
        assert_eq!(
            r.push(&[9, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap_err(),
            WireError::UnknownVersion(9)
        );
        assert!(matches!(
            r.push(&[1, 0, 0, 0, 0, 3, 0, 2, 0]),
            Err(WireError::Inconsistent { .. })
        ));
        assert!(matches!(
            r.push(&vec![1; MAX_PACKET + 1]),
            Err(WireError::TooLarge(_))
        ));
    }
}
