//! The mailbox client protocol, as far as it has moved into the device engine: the server's
//! answer to a fetch (`GET /mailbox/<room>?after=<seq>&limit=<n>`), parsed and bounded before
//! anything acts on it. The server is not trusted with it: an answer that is not the shape an
//! honest server sends is refused as a whole; an entry the server numbered impossibly is
//! refused by the cursor ([`crate::MailboxCursor::opened_checked`]).

use crate::mailbox::{MAX_ENTRY_BYTES, MailboxError};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Entries one answer may carry (ferry-signal sends at most the requested `limit`, 64).
pub const MAX_FETCH_ENTRIES: usize = 256;
/// Device cursors one answer may list (ferry-signal registers at most a few dozen devices).
pub const MAX_FETCH_CURSORS: usize = 1024;
/// Bytes of an answer (a full page of the largest entries, in base64, with room to spare;
/// the browser adapter refuses larger bodies before reading them).
pub const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

/// One sealed entry of an answer: its number, and its bytes unless they were not base64
/// (the entry is then read and skipped, never applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedEntry {
    /// The server's number for it.
    pub seq: u64,
    /// The sealed bytes, or `None` when the server sent something that is not base64.
    pub blob: Option<Vec<u8>>,
}

/// What the server says it holds for the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Held {
    /// Entries held.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A parsed fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchAnswer {
    /// The entries after the requested one, in increasing order.
    pub entries: Vec<FetchedEntry>,
    /// More entries wait after these.
    pub more: bool,
    /// The room's newest entry.
    pub last_seq: u64,
    /// The last entry of the newest compacted snapshot, if there is one.
    pub base_to: Option<u64>,
    /// Registered devices (opaque tags) and their cursors.
    pub cursors: BTreeMap<String, u64>,
    /// What the room holds.
    pub held: Held,
}

#[derive(Deserialize)]
struct RawEntry {
    seq: u64,
    blob: String,
}

#[derive(Deserialize)]
struct RawBase {
    to: u64,
}

#[derive(Deserialize)]
struct Raw {
    entries: Vec<RawEntry>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    last_seq: u64,
    #[serde(default)]
    base: Option<RawBase>,
    #[serde(default)]
    cursors: BTreeMap<String, u64>,
    #[serde(default)]
    stored: Held,
}

impl FetchAnswer {
    /// Parses an answer. Refused whole: bodies over [`MAX_FETCH_BYTES`], anything but the
    /// answer's JSON shape, more than [`MAX_FETCH_ENTRIES`] entries or
    /// [`MAX_FETCH_CURSORS`] cursors, entries not in strictly increasing order or past
    /// `last_seq`, and entries longer than a sealed entry can be.
    pub fn parse(body: &[u8]) -> Result<Self, MailboxError> {
        if body.len() > MAX_FETCH_BYTES {
            return Err(MailboxError::BadAnswer(format!(
                "{} bytes is more than any answer",
                body.len()
            )));
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| MailboxError::BadAnswer(format!("not a fetch answer: {e}")))?;
        if raw.entries.len() > MAX_FETCH_ENTRIES {
            return Err(MailboxError::BadAnswer(format!(
                "{} entries in one answer",
                raw.entries.len()
            )));
        }
        if raw.cursors.len() > MAX_FETCH_CURSORS {
            return Err(MailboxError::BadAnswer(format!(
                "{} device cursors",
                raw.cursors.len()
            )));
        }
        let mut last = 0u64;
        let mut entries = Vec::with_capacity(raw.entries.len());
        for e in raw.entries {
            if e.seq <= last || e.seq > raw.last_seq {
                return Err(MailboxError::BadAnswer(format!(
                    "entry {} out of order (after {last}, newest {})",
                    e.seq, raw.last_seq
                )));
            }
            last = e.seq;
            // Base64 of a sealed entry is at most 4/3 of its bytes, plus padding.
            if e.blob.len() > MAX_ENTRY_BYTES.div_ceil(3) * 4 {
                return Err(MailboxError::BadAnswer(format!(
                    "entry {} has {} characters",
                    e.seq,
                    e.blob.len()
                )));
            }
            let blob = base64::engine::general_purpose::STANDARD
                .decode(&e.blob)
                .ok();
            entries.push(FetchedEntry { seq: e.seq, blob });
        }
        Ok(FetchAnswer {
            entries,
            more: raw.more,
            last_seq: raw.last_seq,
            base_to: raw.base.map(|b| b.to),
            cursors: raw.cursors,
            held: raw.stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(entries: &[(u64, &str)], last_seq: u64) -> Vec<u8> {
        let entries: Vec<_> = entries
            .iter()
            .map(|(seq, blob)| serde_json::json!({ "seq": seq, "blob": blob }))
            .collect();
        serde_json::json!({
            "entries": entries, "more": true, "last_seq": last_seq,
            "base": { "from": 1, "to": 2 }, "cursors": { "ab12": 3 },
            "stored": { "entries": 2, "bytes": 512 },
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_honest_answer_is_read_whole() {
        let a = FetchAnswer::parse(&answer(&[(3, "AAEC"), (5, "not base64!")], 9)).unwrap();
        assert_eq!(
            a.entries,
            vec![
                FetchedEntry {
                    seq: 3,
                    blob: Some(vec![0, 1, 2])
                },
                FetchedEntry { seq: 5, blob: None },
            ]
        );
        assert!(a.more);
        assert_eq!((a.last_seq, a.base_to), (9, Some(2)));
        assert_eq!(a.cursors.get("ab12"), Some(&3));
        assert_eq!(
            a.held,
            Held {
                entries: 2,
                bytes: 512
            }
        );
    }

    #[test]
    fn answers_no_honest_server_sends_are_refused() {
        for (body, why) in [
            (answer(&[(3, "AA"), (3, "AA")], 9), "repeated"),
            (answer(&[(5, "AA"), (4, "AA")], 9), "backwards"),
            (answer(&[(0, "AA")], 9), "entry 0"),
            (answer(&[(10, "AA")], 9), "past the newest"),
            (
                answer(&[(1, &"A".repeat(MAX_ENTRY_BYTES * 2))], 9),
                "oversized entry",
            ),
            (b"{\"entries\": 3}".to_vec(), "wrong shape"),
            (b"\xff\xfe".to_vec(), "not JSON"),
            (vec![b' '; MAX_FETCH_BYTES + 1], "too long"),
        ] {
            assert!(
                matches!(FetchAnswer::parse(&body), Err(MailboxError::BadAnswer(_))),
                "{why} accepted"
            );
        }
        let many: Vec<(u64, &str)> = (1..=MAX_FETCH_ENTRIES as u64 + 1)
            .map(|s| (s, "AA"))
            .collect();
        assert!(FetchAnswer::parse(&answer(&many, 1000)).is_err());
    }

    proptest! {
        /// Whatever bytes a server sends, parsing never panics, and what it accepts is in
        /// strictly increasing order within `last_seq`, bounded in size.
        #[test]
        fn any_answer_is_parsed_or_refused_never_trusted(
            body in prop::collection::vec(any::<u8>(), 0..512),
            seqs in prop::collection::vec(0u64..40, 0..12),
            last in 0u64..40,
            blobs in prop::collection::vec("[A-Za-z0-9+/=!]{0,12}", 12),
        ) {
            let _ = FetchAnswer::parse(&body);
            let entries: Vec<(u64, &str)> =
                seqs.iter().zip(&blobs).map(|(s, b)| (*s, b.as_str())).collect();
            if let Ok(a) = FetchAnswer::parse(&answer(&entries, last)) {
                let mut prev = 0;
                for e in &a.entries {
                    prop_assert!(e.seq > prev && e.seq <= a.last_seq);
                    prev = e.seq;
                    prop_assert!(e.blob.as_ref().is_none_or(|b| b.len() <= MAX_ENTRY_BYTES));
                }
            }
        }
    }
}
