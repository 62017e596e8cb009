//! The client side of the end-to-end encrypted mailbox (issue #9): how devices that are never
//! online together hand each other history through `ferry-signal`, which stores only opaque
//! blobs it cannot read.
//!
//! Keys (HKDF-SHA256 over the space secret, salt `ferry/space/v1`, see [`crate::pairing`]):
//!
//! - `mailbox-auth` (32 bytes) = `K`, shown to the server as `Authorization: Bearer <hex K>`.
//!   The server keeps only `BLAKE3(K)` ([`MailboxKeys::verifier`]): at `PUT /mailbox/<room>`
//!   it hashes the `K` it is shown and stores the hash. `K` opens the box but cannot decrypt
//!   anything in it.
//! - `mailbox-key/epoch-0` (32 bytes): the content key. Never leaves the devices.
//!
//! One message ([`MailboxPayload`]) becomes one or more *entries*, each one `POST` body:
//!
//! ```text
//! entry     = version:u8 (=1) | epoch:u8 (=0) | room hint:[u8;8] | nonce:[u8;24]
//!             | XChaCha20-Poly1305(plaintext)                       (tag: 16 bytes)
//! aad       = "ferry/mailbox/v1" | room id (16 bytes) | version | epoch | room hint
//! plaintext = from:[u8;16] | msg_id:u64 LE | part:u32 LE | parts:u32 LE | len:u32 LE
//!             | data[len] | zeros (padding)
//! message   = kind:u8 | fields (see MailboxPayload::encode), split into `parts` pieces
//! ```
//!
//! - Sizes: every entry is padded to a power-of-two bucket from 256 bytes to 64 KiB
//!   ([`bucket`]), so lengths are multiples of 256 (what the server demands) and leak only a
//!   size class, not the length of a text. A message larger than one entry is split into
//!   full 64 KiB entries plus one bucketed tail; the server still sees the entry count.
//! - The room hint (the room id's first 8 bytes, which the server knows anyway) only lets a
//!   reader say "another room" instead of "forged"; it is authenticated like everything else.
//! - `msg_id` is chosen by the sender, unique per sender ([`random_msg_id`]); readers use
//!   `(from, msg_id)` to reassemble parts and to drop duplicates.

use crate::blobs::{BlobId, CHUNK_SIZE};
use crate::doc::SpaceDoc;
use crate::ids::DeviceId;
use crate::pairing::{RoomId, SpaceSecret};
use automerge::ChangeHash;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// HKDF label of the server access key `K`.
pub const AUTH_LABEL: &str = "mailbox-auth";
/// HKDF label of the content key (epoch 0).
pub const CONTENT_LABEL: &str = "mailbox-key/epoch-0";
/// HKDF label of the key that names devices on the server (their tags): a key of its own,
/// so no use of the content key but sealing remains (issue #15).
pub const TAG_LABEL: &str = "mailbox-device-tag";
/// Version byte of mailbox entries.
pub const MAILBOX_VERSION: u8 = 1;
/// The content key epoch this build seals with.
pub const MAILBOX_EPOCH: u8 = 0;
/// Largest entry the server accepts.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// Entry lengths are multiples of this (the server refuses anything else).
pub const PAD_BYTES: usize = 256;
/// Largest serialized message (bounds the parts of one message and the reader's memory).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

const AAD_LABEL: &[u8] = b"ferry/mailbox/v1";
const OUTER: usize = 1 + 1 + 8 + 24;
const TAG: usize = 16;
const INNER: usize = 16 + 8 + 4 + 4 + 4;
/// Bytes an entry adds around its data.
pub const ENTRY_OVERHEAD: usize = OUTER + TAG + INNER;
/// Most message bytes in one entry.
pub const MAX_PART_DATA: usize = MAX_ENTRY_BYTES - ENTRY_OVERHEAD;
/// Most entries one message may span.
pub const MAX_PARTS: u32 = MAX_MESSAGE_BYTES.div_ceil(MAX_PART_DATA) as u32;

const KIND_CHANGES: u8 = 0;
const KIND_MANIFEST: u8 = 1;
const KIND_CHUNK: u8 = 2;
const KIND_RECEIPT: u8 = 3;
/// Authors one receipt may name (a space has a handful of devices).
const MAX_RECEIPT_AUTHORS: usize = 1024;

/// Why a mailbox entry was not sealed or not accepted. None of these reveal the key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MailboxError {
    /// The room id is not 32 hex digits (never happens for ids from [`SpaceSecret::room_id`]).
    #[error("not a Ferry room id")]
    BadRoomId,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("mailbox message too large: {0} bytes (at most {MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    /// Entry length is not a multiple of 256 in 256..=64 KiB.
    #[error("mailbox entry has an impossible length: {0} bytes")]
    BadLength(usize),
    /// Not an entry of a version this build reads.
    #[error("unknown mailbox entry version {0}")]
    UnknownVersion(u8),
    /// Sealed with a content key epoch this device does not have.
    #[error("mailbox entry sealed with unknown key epoch {0}")]
    UnknownEpoch(u8),
    /// The entry belongs to another space's mailbox.
    #[error("mailbox entry belongs to another room")]
    WrongRoom,
    /// Authentication failed: wrong key or altered bytes.
    #[error("mailbox entry failed authentication (wrong key or altered)")]
    Forged,
    /// Authenticated, yet its contents are inconsistent (a buggy sender).
    #[error("mailbox entry is malformed: {0}")]
    Malformed(&'static str),
    /// A single message needs more buffer than the reader's limits allow.
    #[error("mailbox message of {0} bytes exceeds this reader's buffer")]
    ReaderFull(usize),
    /// The server numbered an entry outside what the mailbox can hold now.
    #[error("mailbox entry number {seq} is out of range (after {read}, up to {last})")]
    OutOfRange {
        /// The entry's number.
        seq: u64,
        /// The last entry read before it.
        read: u64,
        /// The mailbox's last entry, as the server said.
        last: u64,
    },
    /// The server's answer is not one an honest server sends.
    #[error("the mailbox's answer is refused: {0}")]
    BadAnswer(String),
}

/// Mailbox keys of one space. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MailboxKeys {
    auth: [u8; 32],
    content: [u8; 32],
    tag: [u8; 32],
}

impl fmt::Debug for MailboxKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxKeys(..)")
    }
}

impl MailboxKeys {
    /// Derives both keys from the space secret.
    pub fn derive(secret: &SpaceSecret) -> Self {
        let mut auth = [0u8; 32];
        secret.derive(AUTH_LABEL, &mut auth);
        let mut content = [0u8; 32];
        secret.derive(CONTENT_LABEL, &mut content);
        let mut tag = [0u8; 32];
        secret.derive(TAG_LABEL, &mut tag);
        MailboxKeys { auth, content, tag }
    }

    /// `K` as 64 lowercase hex digits, for `Authorization: Bearer <token>`. A secret: send it
    /// only to the signaling server, never log it; the copy is wiped when dropped.
    pub fn auth_token(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(self.auth.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `BLAKE3(K)`: what the server stores (safe to reveal).
    pub fn verifier(&self) -> [u8; 32] {
        *blake3::hash(&self.auth).as_bytes()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.content.into())
    }

    /// The name a device goes by on the server (its cursor, the uploader of its entries): 24
    /// hex digits keyed by the tag key, so the server (which knows `K`) cannot link it to the
    /// device id, while every device of the space can map it back.
    pub fn device_tag(&self, device: DeviceId) -> String {
        Self::tag_with(&self.tag, b"ferry/mailbox/device-tag/v2", device)
    }

    /// The tag the first version gave a device, keyed by the content key: a device that
    /// upgrades unregisters it once (else the server would hold file chunks back for it).
    pub fn legacy_device_tag(&self, device: DeviceId) -> String {
        Self::tag_with(&self.content, b"ferry/mailbox/device-tag/v1", device)
    }

    fn tag_with(key: &[u8; 32], label: &[u8], device: DeviceId) -> String {
        let mut input = label.to_vec();
        input.extend_from_slice(device.as_bytes());
        blake3::keyed_hash(key, &input).as_bytes()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// One mailbox message.
#[derive(Clone, PartialEq, Eq)]
pub enum MailboxPayload {
    /// Automerge changes (from [`plan_upload`] / [`SpaceDoc::save_after`]); apply with
    /// [`SpaceDoc::apply_changes`] or [`crate::Replica::apply_mailbox_changes`].
    Changes {
        /// Incremental automerge bytes.
        bytes: Vec<u8>,
    },
    /// A file's manifest (check with [`crate::Manifest::decode`] against `root`).
    Manifest {
        /// The file's id.
        root: BlobId,
        /// Canonical manifest bytes.
        bytes: Vec<u8>,
    },
    /// One chunk of a file (check with [`crate::Manifest::verify_chunk`]).
    Chunk {
        /// The file's id.
        root: BlobId,
        /// Chunk index.
        index: u32,
        /// Chunk bytes (at most [`CHUNK_SIZE`]).
        data: Vec<u8>,
    },
    /// A device's sealed word that it has *stored* the items of each author up to a moment
    /// (wall time, HLC scale), with the bytes of their files: what "on Laptop" through the
    /// mailbox is based on. Server cursors are not: anyone holding the access key can move
    /// them, and a cursor also moves past entries a device failed to store.
    Receipt {
        /// Per author: every item it wrote at or before this moment is stored on the sender.
        stored: Vec<(DeviceId, u64)>,
    },
}

impl fmt::Debug for MailboxPayload {
    // Contents are private history: print only kinds and sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxPayload::Changes { bytes } => write!(f, "Changes({} bytes)", bytes.len()),
            MailboxPayload::Manifest { root, bytes } => {
                write!(f, "Manifest({root:?}, {} bytes)", bytes.len())
            }
            MailboxPayload::Chunk { root, index, data } => {
                write!(f, "Chunk({root:?} #{index}, {} bytes)", data.len())
            }
            MailboxPayload::Receipt { stored } => write!(f, "Receipt({} authors)", stored.len()),
        }
    }
}

impl MailboxPayload {
    fn encode(&self) -> Vec<u8> {
        match self {
            MailboxPayload::Changes { bytes } => {
                let mut out = Vec::with_capacity(1 + bytes.len());
                out.push(KIND_CHANGES);
                out.extend_from_slice(bytes);
                out
            }
            MailboxPayload::Manifest { root, bytes } => {
                let mut out = Vec::with_capacity(33 + bytes.len());
                out.push(KIND_MANIFEST);
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(bytes);
                out
            }
            MailboxPayload::Chunk { root, index, data } => {
                let mut out = Vec::with_capacity(37 + data.len());
                out.push(KIND_CHUNK);
                out.extend_from_slice(root.as_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(data);
                out
            }
            MailboxPayload::Receipt { stored } => {
                let mut out = Vec::with_capacity(1 + 24 * stored.len());
                out.push(KIND_RECEIPT);
                for (device, ms) in stored {
                    out.extend_from_slice(device.as_bytes());
                    out.extend_from_slice(&ms.to_le_bytes());
                }
                out
            }
        }
    }

    fn decode(mut msg: Vec<u8>) -> Result<Self, MailboxError> {
        let Some(&kind) = msg.first() else {
            return Err(MailboxError::Malformed("empty message"));
        };
        let root = |m: &[u8]| -> Result<BlobId, MailboxError> {
            m.get(1..33)
                .and_then(|r| <[u8; 32]>::try_from(r).ok())
                .map(BlobId)
                .ok_or(MailboxError::Malformed("truncated file id"))
        };
        match kind {
            KIND_CHANGES => {
                msg.remove(0);
                Ok(MailboxPayload::Changes { bytes: msg })
            }
            KIND_MANIFEST => {
                let root = root(&msg)?;
                Ok(MailboxPayload::Manifest {
                    root,
                    bytes: msg.split_off(33),
                })
            }
            KIND_CHUNK => {
                let root = root(&msg)?;
                let index = msg
                    .get(33..37)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes)
                    .ok_or(MailboxError::Malformed("truncated chunk index"))?;
                let data = msg.split_off(37);
                if data.len() > CHUNK_SIZE {
                    return Err(MailboxError::Malformed("chunk larger than CHUNK_SIZE"));
                }
                Ok(MailboxPayload::Chunk { root, index, data })
            }
            KIND_RECEIPT => {
                let body = &msg[1..];
                if !body.len().is_multiple_of(24) || body.len() > 24 * MAX_RECEIPT_AUTHORS {
                    return Err(MailboxError::Malformed("receipt of the wrong length"));
                }
                let stored = body
                    .chunks_exact(24)
                    .filter_map(|c| {
                        let id = <[u8; 16]>::try_from(&c[..16]).ok()?;
                        let ms = <[u8; 8]>::try_from(&c[16..]).ok()?;
                        Some((DeviceId::from_bytes(id), u64::from_le_bytes(ms)))
                    })
                    .collect();
                Ok(MailboxPayload::Receipt { stored })
            }
            _ => Err(MailboxError::Malformed("unknown message kind")),
        }
    }
}

/// A fresh random message id (ids must be unique per sending device).
pub fn random_msg_id() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the platform random number generator is unavailable");
    u64::from_le_bytes(b)
}

/// The sealed length of an entry whose message data is `data_len` bytes: the smallest power of
/// two ≥ 256 that fits, capped at [`MAX_ENTRY_BYTES`]. Power-of-two buckets leak ~1 bit of
/// size per doubling instead of every 256 bytes, at worst doubling the stored bytes of one
/// (the last) entry per message.
pub fn bucket(data_len: usize) -> usize {
    (data_len + ENTRY_OVERHEAD)
        .next_power_of_two()
        .clamp(PAD_BYTES, MAX_ENTRY_BYTES)
}

fn room_bytes(room: &RoomId) -> Result<[u8; 16], MailboxError> {
    let s = room.as_str().as_bytes();
    if s.len() != 32 {
        return Err(MailboxError::BadRoomId);
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hex = std::str::from_utf8(pair).map_err(|_| MailboxError::BadRoomId)?;
        *o = u8::from_str_radix(hex, 16).map_err(|_| MailboxError::BadRoomId)?;
    }
    Ok(out)
}

fn aad(room: &[u8; 16], header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16 + 10);
    aad.extend_from_slice(AAD_LABEL);
    aad.extend_from_slice(room);
    aad.extend_from_slice(&header[..10]);
    aad
}

/// Seals one message into entries, each a valid `POST /mailbox/<room>` body (length a
/// multiple of 256, at most 64 KiB). Post them in order; readers accept any order.
pub fn seal_payload(
    keys: &MailboxKeys,
    room: &RoomId,
    from: DeviceId,
    msg_id: u64,
    payload: &MailboxPayload,
) -> Result<Vec<Vec<u8>>, MailboxError> {
    let room = room_bytes(room)?;
    if let MailboxPayload::Chunk { data, .. } = payload
        && data.len() > CHUNK_SIZE
    {
        return Err(MailboxError::TooLarge(data.len()));
    }
    let msg = payload.encode();
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(MailboxError::TooLarge(msg.len()));
    }
    let pieces: Vec<&[u8]> = msg.chunks(MAX_PART_DATA).collect();
    let parts = pieces.len() as u32; // ≥ 1: a message always has its kind byte
    let cipher = keys.cipher();
    let mut entries = Vec::with_capacity(pieces.len());
    for (i, data) in pieces.into_iter().enumerate() {
        let total = bucket(data.len());
        let mut plain = Vec::with_capacity(total - OUTER - TAG);
        plain.extend_from_slice(from.as_bytes());
        plain.extend_from_slice(&msg_id.to_le_bytes());
        plain.extend_from_slice(&(i as u32).to_le_bytes());
        plain.extend_from_slice(&parts.to_le_bytes());
        plain.extend_from_slice(&(data.len() as u32).to_le_bytes());
        plain.extend_from_slice(data);
        plain.resize(total - OUTER - TAG, 0);
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the platform random number generator is unavailable");
        let mut out = Vec::with_capacity(total);
        out.push(MAILBOX_VERSION);
        out.push(MAILBOX_EPOCH);
        out.extend_from_slice(&room[..8]);
        out.extend_from_slice(&nonce);
        let aad = aad(&room, &out);
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            // Encryption only fails for messages beyond 256 GiB.
            .expect("XChaCha20-Poly1305 encryption of a bounded entry");
        plain.zeroize();
        out.extend_from_slice(&ct);
        debug_assert_eq!(out.len(), total);
        entries.push(out);
    }
    Ok(entries)
}

/// Memory bounds of a [`MailboxReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Incomplete messages kept at once; the oldest is dropped beyond this.
    pub max_partial: usize,
    /// Bytes of incomplete messages kept at once; the oldest are dropped beyond this.
    pub max_buffered_bytes: usize,
    /// Completed `(from, msg_id)` remembered to drop duplicates (older ones may be delivered
    /// again, which is harmless: every payload kind is idempotent to apply).
    pub max_remembered: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_partial: 16,
            max_buffered_bytes: MAX_MESSAGE_BYTES + 4 * MAX_ENTRY_BYTES,
            max_remembered: 4096,
        }
    }
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
    born: u64,
}

/// Opens the entries of one room's mailbox on one device and reassembles messages.
pub struct MailboxReader {
    keys: MailboxKeys,
    room: [u8; 16],
    skip: Option<DeviceId>,
    limits: ReaderLimits,
    partial: HashMap<(DeviceId, u64), Partial>,
    buffered: usize,
    clock: u64,
    done: HashSet<(DeviceId, u64)>,
    done_order: VecDeque<(DeviceId, u64)>,
}

impl fmt::Debug for MailboxReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxReader")
            .field("partial", &self.partial.len())
            .field("buffered", &self.buffered)
            .finish_non_exhaustive()
    }
}

impl MailboxReader {
    /// A reader for `room` with default limits.
    pub fn new(keys: MailboxKeys, room: &RoomId) -> Result<Self, MailboxError> {
        Self::with_limits(keys, room, ReaderLimits::default())
    }

    /// A reader with explicit memory bounds.
    pub fn with_limits(
        keys: MailboxKeys,
        room: &RoomId,
        limits: ReaderLimits,
    ) -> Result<Self, MailboxError> {
        Ok(MailboxReader {
            keys,
            room: room_bytes(room)?,
            skip: None,
            limits,
            partial: HashMap::new(),
            buffered: 0,
            clock: 0,
            done: HashSet::new(),
            done_order: VecDeque::new(),
        })
    }

    /// Entries this device sent itself are verified, then ignored (`Ok(None)`).
    pub fn skip_from(mut self, me: DeviceId) -> Self {
        self.skip = Some(me);
        self
    }

    /// Forgets every incomplete message and which messages were completed, as after a
    /// reload. Used when what a message carried could not be stored: its parts are fetched
    /// again and must reassemble (a remembered completion would drop it as a duplicate).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.buffered = 0;
        self.done.clear();
        self.done_order.clear();
    }

    /// Incomplete messages currently buffered, and their bytes.
    pub fn buffered(&self) -> (usize, usize) {
        (self.partial.len(), self.buffered)
    }

    /// Opens one entry. `Ok(Some(..))` when it completes a message; `Ok(None)` for a part of
    /// a message still incomplete, a duplicate, or this device's own entry. An error means the
    /// entry is not from this space's mailbox (or altered): skip it and carry on.
    pub fn open(
        &mut self,
        entry: &[u8],
    ) -> Result<Option<(DeviceId, MailboxPayload)>, MailboxError> {
        let (from, msg_id, part, parts, data) = self.decrypt(entry)?;
        if self.skip == Some(from) {
            return Ok(None);
        }
        let id = (from, msg_id);
        if self.done.contains(&id) {
            return Ok(None);
        }
        if parts == 1 {
            return self.finish(id, data);
        }
        if !self.partial.contains_key(&id) {
            let cap = parts as usize * MAX_PART_DATA;
            if cap > self.limits.max_buffered_bytes {
                return Err(MailboxError::ReaderFull(cap));
            }
            self.clock += 1;
            self.partial.insert(
                id,
                Partial {
                    parts: vec![None; parts as usize],
                    bytes: 0,
                    born: self.clock,
                },
            );
        }
        let p = self
            .partial
            .get_mut(&id)
            .ok_or(MailboxError::Malformed("lost partial message"))?;
        if p.parts.len() != parts as usize {
            return Err(MailboxError::Malformed(
                "part count changed within a message",
            ));
        }
        let slot = &mut p.parts[part as usize];
        if slot.is_some() {
            return Ok(None);
        }
        p.bytes += data.len();
        self.buffered += data.len();
        *slot = Some(data);
        if p.parts.iter().all(Option::is_some) {
            let p = self
                .partial
                .remove(&id)
                .ok_or(MailboxError::Malformed("lost partial message"))?;
            self.buffered -= p.bytes;
            let msg: Vec<u8> = p.parts.into_iter().flatten().flatten().collect();
            return self.finish(id, msg);
        }
        self.evict(id);
        Ok(None)
    }

    /// Drops the oldest incomplete messages (never `keep`) until within limits.
    fn evict(&mut self, keep: (DeviceId, u64)) {
        while self.partial.len() > self.limits.max_partial
            || self.buffered > self.limits.max_buffered_bytes
        {
            let oldest = self
                .partial
                .iter()
                .filter(|(k, _)| **k != keep)
                .min_by_key(|(_, p)| p.born)
                .map(|(k, _)| *k);
            let Some(k) = oldest else { break };
            if let Some(p) = self.partial.remove(&k) {
                self.buffered -= p.bytes;
            }
        }
    }

    fn finish(
        &mut self,
        id: (DeviceId, u64),
        msg: Vec<u8>,
    ) -> Result<Option<(DeviceId, MailboxPayload)>, MailboxError> {
        if self.done.insert(id) {
            self.done_order.push_back(id);
            while self.done_order.len() > self.limits.max_remembered {
                if let Some(old) = self.done_order.pop_front() {
                    self.done.remove(&old);
                }
            }
        }
        Ok(Some((id.0, MailboxPayload::decode(msg)?)))
    }

    #[allow(clippy::type_complexity)]
    fn decrypt(&self, entry: &[u8]) -> Result<(DeviceId, u64, u32, u32, Vec<u8>), MailboxError> {
        let len = entry.len();
        if !(PAD_BYTES..=MAX_ENTRY_BYTES).contains(&len) || !len.is_multiple_of(PAD_BYTES) {
            return Err(MailboxError::BadLength(len));
        }
        if entry[0] != MAILBOX_VERSION {
            return Err(MailboxError::UnknownVersion(entry[0]));
        }
        if entry[1] != MAILBOX_EPOCH {
            return Err(MailboxError::UnknownEpoch(entry[1]));
        }
        if entry[2..10] != self.room[..8] {
            return Err(MailboxError::WrongRoom);
        }
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&entry[10..OUTER]);
        let mut plain = self
            .keys
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &entry[OUTER..],
                    aad: &aad(&self.room, entry),
                },
            )
            .map_err(|_| MailboxError::Forged)?;
        let u32_at = |b: &[u8], at: usize| -> u32 {
            let mut x = [0u8; 4];
            x.copy_from_slice(&b[at..at + 4]);
            u32::from_le_bytes(x)
        };
        // plain.len() = len - OUTER - TAG ≥ 256 - 50 > INNER, so the header is present.
        let mut from = [0u8; 16];
        from.copy_from_slice(&plain[..16]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&plain[16..24]);
        let (part, parts, data_len) = (
            u32_at(&plain, 24),
            u32_at(&plain, 28),
            u32_at(&plain, 32) as usize,
        );
        if parts == 0 || parts > MAX_PARTS || part >= parts {
            return Err(MailboxError::Malformed("bad part numbering"));
        }
        if data_len > plain.len() - INNER {
            return Err(MailboxError::Malformed("data length beyond the entry"));
        }
        if plain[INNER + data_len..].iter().any(|&b| b != 0) {
            return Err(MailboxError::Malformed("non-zero padding"));
        }
        plain.truncate(INNER + data_len);
        let data = plain.split_off(INNER);
        Ok((
            DeviceId::from_bytes(from),
            u64::from_le_bytes(id),
            part,
            parts,
            data,
        ))
    }
}

/// What to upload after a local change: the changes not yet in the mailbox, and the heads to
/// record as "uploaded" once every entry was accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// Incremental automerge bytes: send as [`MailboxPayload::Changes`].
    pub changes: Vec<u8>,
    /// The document heads these changes reach; pass them as `since` next time.
    pub heads: Vec<ChangeHash>,
}

/// Changes since the heads last uploaded (`since`, empty for "everything"), or `None` when
/// the mailbox already has them all. The heads are taken with the bytes, so writes made while
/// the upload is in flight are planned next time rather than lost.
pub fn plan_upload(doc: &mut SpaceDoc, since: &[ChangeHash]) -> Option<UploadPlan> {
    let heads = doc.heads();
    let mut sorted = since.to_vec();
    sorted.sort();
    if heads == sorted {
        return None;
    }
    let changes = doc.save_after(since);
    if changes.is_empty() {
        return None;
    }
    Some(UploadPlan { changes, heads })
}

/// Entries after the newest base that make the next upload a fresh base (a compacted
/// snapshot) instead of a delta, so the server can let the old ones go.
pub const BASE_AFTER: u64 = 16;

/// Whether this visit should upload a base: there is something new to upload, everything in
/// the mailbox has been applied here (a base claims to cover it), and either no base exists
/// yet or [`BASE_AFTER`] entries came after it.
pub fn base_due(last_seq: u64, base_to: Option<u64>, applied: u64, have_new: bool) -> bool {
    have_new
        && applied >= last_seq
        && base_to.is_none_or(|to| last_seq.saturating_sub(to) >= BASE_AFTER)
}

/// How far an incomplete message may hold the saved cursor back: twice the most parts one
/// message may have. An uploader killed mid-message leaves parts that never complete; they
/// must not pin the cursor (and the server's storage) for ever.
const MAX_HOLD_BACK: u64 = 2 * MAX_PARTS as u64;

/// A device's position in the mailbox. What it may *save and acknowledge* is not simply the
/// last entry read: parts of a message still incomplete live only in memory, so after a
/// reload they must be fetched again. And what a base (a compacted snapshot) may claim to
/// cover is less still: only entries whose contents are in this device's document
/// ([`MailboxCursor::base_covers`]).
///
/// Entry numbers come from the server, which is not trusted with them: an entry numbered 0 or
/// beyond the mailbox's last would otherwise wrap the cursor or pin it past every future
/// entry. [`MailboxCursor::opened_checked`] refuses both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxCursor {
    read: u64,
    pending_since: Option<u64>,
    unapplied_from: Option<u64>,
    unstored_from: Option<u64>,
}

impl MailboxCursor {
    /// Resumes from a saved cursor. Entries up to `saved` are taken as applied (what a device
    /// that saved only the number believed); [`MailboxCursor::resume`] restores the truth.
    pub fn new(saved: u64) -> Self {
        MailboxCursor {
            read: saved,
            pending_since: None,
            unapplied_from: None,
            unstored_from: None,
        }
    }

    /// Resumes from a saved cursor and the saved [`MailboxCursor::first_unapplied`].
    pub fn resume(saved: u64, first_unapplied: Option<u64>) -> Self {
        MailboxCursor {
            // Entries after `saved` are fetched again, so only an earlier one still counts.
            unapplied_from: first_unapplied.filter(|u| (1..=saved).contains(u)),
            ..Self::new(saved)
        }
    }

    /// The last entry read (the next fetch starts after it).
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Records that entry `seq` was read and applied (or needs no applying: this device's own,
    /// a duplicate, a part of a message still incomplete); `incomplete` says whether the
    /// reader still buffers an unfinished message afterwards ([`MailboxReader::buffered`]).
    ///
    /// Numbers no entry can have (0 and `u64::MAX`) are ignored; prefer
    /// [`MailboxCursor::opened_checked`], which also knows the mailbox's last entry.
    pub fn opened(&mut self, seq: u64, incomplete: bool) {
        if seq == 0 || seq == u64::MAX {
            return;
        }
        self.read = self.read.max(seq);
        self.pending_since = match (incomplete, self.pending_since) {
            (false, _) => None,
            (true, Some(p)) => Some(p),
            (true, None) => Some(seq),
        };
    }

    /// [`MailboxCursor::opened`] for an entry the server numbered `seq` in a mailbox whose
    /// last entry is `last_seq`: refused unless `read < seq <= last_seq`, so a server cannot
    /// wind the cursor back, wrap it, or push it past entries still to come.
    pub fn opened_checked(
        &mut self,
        seq: u64,
        last_seq: u64,
        incomplete: bool,
    ) -> Result<(), MailboxError> {
        self.check(seq, last_seq)?;
        self.opened(seq, incomplete);
        Ok(())
    }

    /// Records that entry `seq` was read but its contents are *not* in this device's document:
    /// refused by the reader (another version, altered, malformed) or failed to apply. The
    /// cursor moves past it (fetching it again would not help), but no base of this device
    /// may cover it. When it completed a multi-part message, the earlier parts are not
    /// covered either.
    pub fn opened_unapplied(
        &mut self,
        seq: u64,
        last_seq: u64,
        incomplete: bool,
    ) -> Result<(), MailboxError> {
        self.check(seq, last_seq)?;
        let from = self.message_start(seq);
        self.unapplied_from = Some(self.unapplied_from.map_or(from, |u| u.min(from)));
        self.opened(seq, incomplete);
        Ok(())
    }

    /// The earliest entry the message that `seq` finished may have begun at: no earlier than
    /// the oldest message still open before it (without knowing which parts were its own,
    /// all of them count).
    fn message_start(&self, seq: u64) -> u64 {
        self.pending_since.map_or(seq, |p| p.min(seq))
    }

    /// Records that entry `seq` completed a message this device could not store (storage
    /// full). Reading goes on past it (history behind a file chunk must not wait for space),
    /// but nothing from the message's first part on is saved, acknowledged or covered until
    /// [`MailboxCursor::rewind`] has it read again and it is stored.
    pub fn opened_unstored(
        &mut self,
        seq: u64,
        last_seq: u64,
        incomplete: bool,
    ) -> Result<(), MailboxError> {
        self.check(seq, last_seq)?;
        let from = self.message_start(seq);
        self.unstored_from = Some(self.unstored_from.map_or(from, |u| u.min(from)));
        self.opened(seq, incomplete);
        Ok(())
    }

    /// Whether a message could not be stored since the last [`MailboxCursor::rewind`].
    pub fn has_unstored(&self) -> bool {
        self.unstored_from.is_some()
    }

    fn check(&self, seq: u64, last_seq: u64) -> Result<(), MailboxError> {
        if seq == 0 || seq <= self.read || seq > last_seq {
            return Err(MailboxError::OutOfRange {
                seq,
                read: self.read,
                last: last_seq,
            });
        }
        Ok(())
    }

    /// What to save and acknowledge: everything before the oldest incomplete message.
    pub fn safe(&self) -> u64 {
        let safe = match self.pending_since {
            Some(p) if self.read - p < MAX_HOLD_BACK => p.saturating_sub(1),
            _ => self.read,
        };
        // Unlike a message whose uploader vanished, one not stored here never expires.
        self.unstored_from
            .map_or(safe, |u| safe.min(u.saturating_sub(1)))
    }

    /// Goes back to [`MailboxCursor::safe`], as a reload would: the next fetch reads again
    /// from the oldest message still incomplete or not stored. After a message could not be
    /// stored (storage full): together with [`MailboxReader::reset`], its parts are read and
    /// reassembled again next visit, never skipped, so it is neither lost nor acknowledged.
    pub fn rewind(&mut self) {
        let safe = self.safe();
        *self = MailboxCursor::resume(safe, self.first_unapplied());
    }

    /// The highest entry a base uploaded now may claim to cover: every entry up to it was
    /// applied here. Below both the oldest incomplete message (however long it has been
    /// waiting: a base covering some of its parts would delete them before others read them)
    /// and the first entry not applied. `None` when that is no entry at all.
    pub fn base_covers(&self) -> Option<u64> {
        let mut covers = self.read;
        if let Some(p) = self.pending_since {
            covers = covers.min(p.saturating_sub(1));
        }
        for u in [self.unapplied_from, self.unstored_from]
            .into_iter()
            .flatten()
        {
            covers = covers.min(u.saturating_sub(1));
        }
        (covers > 0).then_some(covers)
    }

    /// The oldest entry read but not applied, to save next to [`MailboxCursor::safe`] and pass
    /// to [`MailboxCursor::resume`] (entries after the saved cursor are fetched again anyway).
    pub fn first_unapplied(&self) -> Option<u64> {
        self.unapplied_from.filter(|u| *u <= self.safe())
    }
}

/// This device's uploads, newest last: the last entry of each and the newest item time it
/// carried. A server cursor past an upload means that device has those items.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadLog(VecDeque<(u64, u64)>);

impl UploadLog {
    /// Uploads remembered (older ones are covered by newer ones for delivery purposes).
    const KEEP: usize = 64;

    /// Parses the saved form (`"<seq> <ms>"` lines); bad lines are skipped.
    pub fn decode(text: &str) -> Self {
        UploadLog(
            text.lines()
                .filter_map(|l| {
                    let (a, b) = l.split_once(' ')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The saved form.
    pub fn encode(&self) -> String {
        self.0.iter().map(|(s, m)| format!("{s} {m}\n")).collect()
    }

    /// Records an upload ending at entry `seq` that carried items up to `ms`.
    pub fn record(&mut self, seq: u64, ms: u64) {
        self.0.push_back((seq, ms));
        while self.0.len() > Self::KEEP {
            self.0.pop_front();
        }
    }

    /// The newest item time a device whose cursor is `cursor` has received from here.
    pub fn delivered_ms(&self, cursor: u64) -> Option<u64> {
        self.0
            .iter()
            .filter(|(seq, _)| *seq <= cursor)
            .map(|(_, ms)| *ms)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_receipt_is_sealed_by_its_device_and_refused_when_malformed() {
        let (k, room) = space(7);
        let laptop = DeviceId::from_bytes([3; 16]);
        let receipt = MailboxPayload::Receipt {
            stored: vec![(DeviceId::from_bytes([4; 16]), 1_700_000_123_456)],
        };
        let entries = seal_payload(&k, &room, laptop, 11, &receipt).unwrap();
        assert_eq!(entries.len(), 1);
        let mut r = MailboxReader::new(k.clone(), &room).unwrap();
        assert_eq!(r.open(&entries[0]).unwrap(), Some((laptop, receipt)));
        // Its own receipts are skipped like its other entries.
        let mut own = MailboxReader::new(k, &room).unwrap().skip_from(laptop);
        assert_eq!(own.open(&entries[0]).unwrap(), None);
        for bad in [
            &[KIND_RECEIPT, 1, 2, 3][..],
            &[KIND_RECEIPT; 10],
            &[KIND_RECEIPT; 26],
        ] {
            assert!(MailboxPayload::decode(bad.to_vec()).is_err());
        }
        assert_eq!(
            MailboxPayload::decode(vec![KIND_RECEIPT]).unwrap(),
            MailboxPayload::Receipt { stored: vec![] }
        );
    }

    #[test]
    fn device_tags_are_pinned_per_space_and_device() {
        let (k, _) = space(42);
        let d = DeviceId::from_bytes([9; 16]);
        let tag = k.device_tag(d);
        assert_eq!(tag.len(), 24);
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tag, k.device_tag(d));
        assert_ne!(tag, k.device_tag(DeviceId::from_bytes([8; 16])));
        assert_ne!(tag, space(43).0.device_tag(d));
        let expected = &blake3::keyed_hash(&k.tag, b"ferry/mailbox/device-tag/v2\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09").to_hex()[..24];
        assert_eq!(tag, expected);
        // Its own key: not the content key (the first version's tag, kept to unregister it).
        assert_ne!(k.tag, k.content);
        let legacy = &blake3::keyed_hash(&k.content, b"ferry/mailbox/device-tag/v1\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09").to_hex()[..24];
        assert_eq!(k.legacy_device_tag(d), *legacy);
        assert_ne!(tag, k.legacy_device_tag(d));
    }

    #[test]
    fn a_base_is_due_only_when_everything_is_applied_and_enough_came_after() {
        assert!(base_due(3, None, 3, true));
        assert!(!base_due(3, None, 3, false), "nothing new to say");
        assert!(!base_due(3, None, 2, true), "entry 3 not applied here");
        assert!(
            !base_due(20, Some(5), 20, true),
            "15 entries since the base"
        );
        assert!(base_due(21, Some(5), 21, true));
    }

    #[test]
    fn the_saved_cursor_stays_before_an_incomplete_message() {
        let mut c = MailboxCursor::new(10);
        c.opened(11, false);
        assert_eq!((c.read(), c.safe()), (11, 11));
        // 12 starts a two-part message; 13 is a whole one from another device.
        c.opened(12, true);
        c.opened(13, true);
        assert_eq!((c.read(), c.safe()), (13, 11));
        c.opened(14, false);
        assert_eq!(c.safe(), 14);
        // A message whose uploader died never completes: it holds the cursor back only so far.
        c.opened(15, true);
        c.opened(15 + MAX_HOLD_BACK - 1, true);
        assert_eq!(c.safe(), 14);
        c.opened(15 + MAX_HOLD_BACK, true);
        assert_eq!(c.safe(), 15 + MAX_HOLD_BACK);
    }

    /// A full disk when a file chunk's last part completes it: the device reads on (the
    /// history behind it arrives), but neither skips the chunk nor acknowledges it, and
    /// reassembles it on the next visit. (Before `opened_unstored`/`rewind`/`reset`, the next
    /// visit read only the last part, the reader dropped it as a duplicate, and the cursor,
    /// then acknowledged, passed the chunk: the server let go of held chunks the device never
    /// stored.)
    #[test]
    fn a_message_that_could_not_be_stored_is_read_again_whole() {
        let (k, room) = space(5);
        let laptop = DeviceId::from_bytes([1; 16]);
        let chunk = MailboxPayload::Chunk {
            root: crate::blobs::BlobId([7; 32]),
            index: 0,
            data: (0..2 * MAX_PART_DATA as u32 + 1000)
                .map(|i| i as u8)
                .collect(),
        };
        let mut entries = seal_payload(&k, &room, laptop, 9, &chunk).unwrap();
        assert_eq!(entries.len(), 3);
        let text = MailboxPayload::Changes {
            bytes: vec![1, 2, 3],
        };
        entries.extend(seal_payload(&k, &room, laptop, 10, &text).unwrap());
        let mut reader = MailboxReader::new(k, &room).unwrap();
        let mut cursor = MailboxCursor::new(0);
        // Entries 1..=3 are the chunk's parts, 4 the history behind it. The chunk's bytes do
        // not fit on this device.
        let mut got = vec![];
        for (seq, entry) in (1..).zip(&entries) {
            let opened = reader.open(entry).unwrap();
            let busy = reader.buffered().0 > 0;
            match opened {
                Some((_, MailboxPayload::Chunk { .. })) => {
                    cursor.opened_unstored(seq, 4, busy).unwrap()
                }
                Some(m) => {
                    got.push(m);
                    cursor.opened_checked(seq, 4, busy).unwrap()
                }
                None => cursor.opened_checked(seq, 4, busy).unwrap(),
            }
        }
        assert_eq!(got, vec![(laptop, text.clone())], "the history arrived");
        assert_eq!(cursor.read(), 4);
        assert_eq!(
            cursor.safe(),
            0,
            "nothing from the chunk on may be acknowledged"
        );
        assert_eq!(cursor.base_covers(), None);
        cursor.rewind();
        reader.reset();
        assert_eq!(cursor.read(), 0, "the next fetch starts at its first part");
        assert!(!cursor.has_unstored());
        // The next visit (space freed): read whole again, stored, then acknowledged.
        let mut got = vec![];
        for (seq, entry) in (1..).zip(&entries) {
            if let Some(m) = reader.open(entry).unwrap() {
                got.push(m);
            }
            let busy = reader.buffered().0 > 0;
            cursor.opened_checked(seq, 4, busy).unwrap();
        }
        assert_eq!(got, vec![(laptop, chunk), (laptop, text)]);
        assert_eq!((cursor.safe(), cursor.base_covers()), (4, Some(4)));
    }

    #[test]
    fn impossible_entry_numbers_neither_wrap_nor_pin_the_cursor() {
        let mut c = MailboxCursor::new(0);
        // Entry 0 while a message is incomplete: `safe` used to compute 0 - 1.
        c.opened(0, true);
        assert_eq!((c.read(), c.safe()), (0, 0));
        c.opened(u64::MAX, false);
        assert_eq!(c.read(), 0, "no entry can be numbered u64::MAX");
        c.opened(3, false);
        assert_eq!((c.read(), c.safe()), (3, 3));
    }

    #[test]
    fn checked_entry_numbers_stay_between_the_cursor_and_the_last_entry() {
        let mut c = MailboxCursor::new(5);
        let out = |seq, read, last| MailboxError::OutOfRange { seq, read, last };
        assert_eq!(c.opened_checked(0, 9, false), Err(out(0, 5, 9)));
        assert_eq!(c.opened_checked(5, 9, false), Err(out(5, 5, 9)), "again");
        assert_eq!(
            c.opened_checked(4, 9, false),
            Err(out(4, 5, 9)),
            "backwards"
        );
        assert_eq!(c.opened_checked(10, 9, false), Err(out(10, 5, 9)));
        assert_eq!(
            c.opened_checked(u64::MAX, 9, false),
            Err(out(u64::MAX, 5, 9))
        );
        assert_eq!(c.opened_unapplied(0, 9, false), Err(out(0, 5, 9)));
        assert_eq!(c.read(), 5, "nothing refused moved the cursor");
        assert_eq!(c.opened_checked(9, 9, false), Ok(()));
        assert_eq!((c.read(), c.safe()), (9, 9));
    }

    #[test]
    fn a_base_never_covers_an_entry_not_applied_here() {
        let mut c = MailboxCursor::new(10);
        assert_eq!(c.base_covers(), Some(10));
        c.opened_checked(11, 20, false).unwrap();
        // 12 is from a newer Ferry (or altered): read, not applied.
        c.opened_unapplied(12, 20, false).unwrap();
        c.opened_checked(13, 20, false).unwrap();
        assert_eq!((c.read(), c.safe()), (13, 13));
        assert_eq!(c.base_covers(), Some(11));
        assert_eq!(c.first_unapplied(), Some(12));
        // It survives a reload through the saved pair.
        let c = MailboxCursor::resume(c.safe(), c.first_unapplied());
        assert_eq!(c.base_covers(), Some(11));
        // An entry not yet re-read after the reload is not remembered as unapplied.
        assert_eq!(MailboxCursor::resume(11, Some(12)).base_covers(), Some(11));
        assert_eq!(MailboxCursor::resume(11, Some(0)).base_covers(), Some(11));
    }

    #[test]
    fn a_base_never_covers_part_of_a_message_not_applied_here() {
        let mut c = MailboxCursor::new(0);
        assert_eq!(c.base_covers(), None, "nothing to cover");
        c.opened_checked(1, 9, false).unwrap();
        // 2..=4: a three-part message, still incomplete at 3.
        c.opened_checked(2, 9, true).unwrap();
        c.opened_checked(3, 9, true).unwrap();
        assert_eq!(c.base_covers(), Some(1));
        // Completed at 4, it failed to apply: none of its parts is covered.
        c.opened_unapplied(4, 9, false).unwrap();
        c.opened_checked(5, 9, false).unwrap();
        assert_eq!(c.safe(), 5);
        assert_eq!(c.base_covers(), Some(1));
        // An incomplete message holds the base back even after `safe` gave up on it.
        let mut c = MailboxCursor::new(0);
        c.opened(1, true);
        c.opened(1 + MAX_HOLD_BACK, true);
        assert_eq!(c.safe(), 1 + MAX_HOLD_BACK);
        assert_eq!(c.base_covers(), None);
    }

    proptest! {
        #[test]
        fn random_plaintexts_and_saved_logs_never_panic(
            msg in proptest::collection::vec(any::<u8>(), 0..80), kind in 0u8..4, log in ".{0,200}"
        ) {
            // What an authenticated but buggy sender could put inside an entry.
            let mut m = vec![kind];
            m.extend_from_slice(&msg);
            let _ = MailboxPayload::decode(m);
            let _ = MailboxPayload::decode(msg);
            let decoded = UploadLog::decode(&log);
            prop_assert_eq!(UploadLog::decode(&decoded.encode()), decoded);
        }
    }

    proptest! {
        #[test]
        fn a_base_covers_only_applied_entries(
            steps in proptest::collection::vec((0u64..6, any::<bool>(), any::<bool>()), 0..40)
        ) {
            // Model: which entries hold something not in the document (unapplied, or a part of
            // a message that is still open or ended unapplied).
            let mut c = MailboxCursor::new(0);
            let mut seq = 0;
            let mut open_since: Option<u64> = None;
            let mut bad: Vec<u64> = vec![];
            for (gap, applied, incomplete) in steps {
                seq += gap + 1;
                if applied {
                    c.opened_checked(seq, seq + 3, incomplete).unwrap();
                } else {
                    c.opened_unapplied(seq, seq + 3, incomplete).unwrap();
                    bad.extend(open_since.unwrap_or(seq)..=seq);
                }
                open_since = if incomplete { open_since.or(Some(seq)) } else { None };
                let open: Vec<u64> = open_since.map(|p| (p..=seq).collect()).unwrap_or_default();
                if let Some(covers) = c.base_covers() {
                    prop_assert!(covers <= c.read());
                    prop_assert!(bad.iter().chain(&open).all(|b| *b > covers));
                }
            }
        }
    }

    #[test]
    fn the_upload_log_says_what_a_cursor_has() {
        let mut log = UploadLog::default();
        assert_eq!(log.delivered_ms(100), None);
        log.record(3, 1_000);
        log.record(9, 2_000);
        assert_eq!(log.delivered_ms(2), None);
        assert_eq!(log.delivered_ms(3), Some(1_000));
        assert_eq!(log.delivered_ms(8), Some(1_000));
        assert_eq!(log.delivered_ms(9), Some(2_000));
        let back = UploadLog::decode(&(log.encode() + "junk\n7 x\n"));
        assert_eq!(back, log);
        for i in 0..100 {
            log.record(10 + i, 3_000 + i);
        }
        assert_eq!(log.0.len(), UploadLog::KEEP);
        assert_eq!(log.delivered_ms(u64::MAX), Some(3_099));
    }

    fn space(b: u8) -> (MailboxKeys, RoomId) {
        let s = SpaceSecret::from_bytes([b; 32]);
        (MailboxKeys::derive(&s), s.room_id())
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn pseudo(len: usize, seed: u8) -> Vec<u8> {
        let mut x = u32::from(seed) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn round_trip(payload: &MailboxPayload) -> usize {
        let (k, room) = space(1);
        let from = DeviceId::from_bytes([5; 16]);
        let entries = seal_payload(&k, &room, from, 77, payload).unwrap();
        for e in &entries {
            assert_eq!(e.len() % PAD_BYTES, 0);
            assert!(e.len() <= MAX_ENTRY_BYTES && !e.is_empty());
        }
        let mut r = MailboxReader::new(k, &room).unwrap();
        let (last, rest) = entries.split_last().unwrap();
        for e in rest {
            assert_eq!(r.open(e).unwrap(), None);
        }
        assert_eq!(r.open(last).unwrap(), Some((from, payload.clone())));
        assert_eq!(r.buffered(), (0, 0));
        entries.len()
    }

    #[test]
    fn keys_are_pinned_distinct_and_never_printed() {
        let s = SpaceSecret::from_bytes([42; 32]);
        let k = MailboxKeys::derive(&s);
        let fixture = |t: &str| t.trim().to_owned();
        assert_eq!(
            k.auth_token().as_str(),
            fixture(include_str!("../tests/fixtures/mailbox_auth_42.txt"))
        );
        assert_eq!(
            hex(&k.verifier()),
            fixture(include_str!("../tests/fixtures/mailbox_verifier_42.txt"))
        );
        assert_eq!(
            hex(&k.content),
            fixture(include_str!("../tests/fixtures/mailbox_key_42.txt"))
        );
        assert_eq!(hex(&k.verifier()), blake3::hash(&k.auth).to_hex().as_str());
        assert_ne!(k.auth, k.content);
        let frame = include_str!("../tests/fixtures/frame_key_42.txt").trim();
        assert_ne!(hex(&k.content), frame);
        assert_eq!(format!("{k:?}"), "MailboxKeys(..)");
        let (other, _) = space(43);
        assert_ne!(other.auth_token(), k.auth_token());
    }

    #[test]
    fn the_auth_key_cannot_open_entries() {
        let (k, room) = space(1);
        let p = MailboxPayload::Changes {
            bytes: b"secret".to_vec(),
        };
        let e = seal_payload(&k, &room, DeviceId::random(), 1, &p).unwrap();
        let as_content = MailboxKeys {
            auth: k.auth,
            content: k.auth,
            tag: k.tag,
        };
        let mut r = MailboxReader::new(as_content, &room).unwrap();
        assert_eq!(r.open(&e[0]), Err(MailboxError::Forged));
    }

    #[test]
    fn every_kind_round_trips() {
        assert_eq!(
            round_trip(&MailboxPayload::Changes {
                bytes: b"tiny".to_vec()
            }),
            1
        );
        round_trip(&MailboxPayload::Changes { bytes: vec![] });
        round_trip(&MailboxPayload::Manifest {
            root: BlobId([3; 32]),
            bytes: pseudo(13 + 32 * 40, 2),
        });
        let parts = round_trip(&MailboxPayload::Chunk {
            root: BlobId([4; 32]),
            index: 9,
            data: pseudo(CHUNK_SIZE, 3),
        });
        assert_eq!(parts, 5, "a full chunk spans 5 entries");
        let parts = round_trip(&MailboxPayload::Changes {
            bytes: pseudo(3 * 1024 * 1024, 4),
        });
        assert_eq!(parts, (3 * 1024 * 1024 + 1usize).div_ceil(MAX_PART_DATA));
    }

    #[test]
    fn sizes_are_bucketed() {
        assert_eq!(bucket(0), 256);
        assert_eq!(bucket(256 - ENTRY_OVERHEAD), 256);
        assert_eq!(bucket(257 - ENTRY_OVERHEAD), 512);
        assert_eq!(bucket(MAX_PART_DATA), MAX_ENTRY_BYTES);
        let (k, room) = space(1);
        let lens: Vec<usize> = [10, 100, 150]
            .iter()
            .map(|&n| {
                let p = MailboxPayload::Changes { bytes: vec![1; n] };
                seal_payload(&k, &room, DeviceId::random(), 1, &p).unwrap()[0].len()
            })
            .collect();
        assert_eq!(lens, [256, 256, 256], "short texts are indistinguishable");
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let (k, room) = space(1);
        let big = MailboxPayload::Chunk {
            root: BlobId([0; 32]),
            index: 0,
            data: vec![0; CHUNK_SIZE + 1],
        };
        assert!(matches!(
            seal_payload(&k, &room, DeviceId::random(), 1, &big),
            Err(MailboxError::TooLarge(_))
        ));
        let huge = MailboxPayload::Changes {
            bytes: vec![0; MAX_MESSAGE_BYTES],
        };
        assert_eq!(
            seal_payload(&k, &room, DeviceId::random(), 1, &huge),
            Err(MailboxError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
    }

    #[test]
    fn other_rooms_keys_and_tampering_are_refused() {
        let (k, room) = space(1);
        let (k2, room2) = space(2);
        let p = MailboxPayload::Changes {
            bytes: b"hello".to_vec(),
        };
        let e = seal_payload(&k, &room, DeviceId::random(), 1, &p).unwrap();
        let e = &e[0];
        let mut other_space = MailboxReader::new(k2.clone(), &room2).unwrap();
        assert_eq!(other_space.open(e), Err(MailboxError::WrongRoom));
        let mut wrong_key = MailboxReader::new(k2, &room).unwrap();
        assert_eq!(wrong_key.open(e), Err(MailboxError::Forged));
        let mut r = MailboxReader::new(k, &room).unwrap();
        for i in 0..e.len() {
            let mut t = e.clone();
            t[i] ^= 0x40;
            assert!(r.open(&t).is_err(), "byte {i}");
        }
        assert_eq!(r.open(&e[..e.len() - 256]), Err(MailboxError::BadLength(0)));
        assert_eq!(r.open(&e[..100]), Err(MailboxError::BadLength(100)));
        let mut longer = e.clone();
        longer.extend_from_slice(&[0; 256]);
        assert_eq!(r.open(&longer), Err(MailboxError::Forged));
        assert!(r.open(e).unwrap().is_some(), "the untouched entry opens");
    }

    #[test]
    fn duplicates_reordering_and_own_entries() {
        let (k, room) = space(1);
        let me = DeviceId::from_bytes([1; 16]);
        let them = DeviceId::from_bytes([2; 16]);
        let p = MailboxPayload::Chunk {
            root: BlobId([4; 32]),
            index: 0,
            data: pseudo(200_000, 9),
        };
        let mut es = seal_payload(&k, &room, them, 5, &p).unwrap();
        assert_eq!(es.len(), 4);
        es.reverse();
        let mut r = MailboxReader::new(k.clone(), &room).unwrap().skip_from(me);
        assert_eq!(r.open(&es[0]).unwrap(), None);
        assert_eq!(r.open(&es[0]).unwrap(), None, "duplicate part");
        assert_eq!(r.open(&es[2]).unwrap(), None);
        assert_eq!(r.open(&es[1]).unwrap(), None);
        assert_eq!(r.open(&es[3]).unwrap(), Some((them, p.clone())));
        for e in &es {
            assert_eq!(r.open(e).unwrap(), None, "after completion");
        }
        // The same message re-sealed (new nonces) is still a duplicate.
        let again = seal_payload(&k, &room, them, 5, &p).unwrap();
        assert_eq!(r.open(&again[0]).unwrap(), None);
        let mine = seal_payload(&k, &room, me, 1, &p).unwrap();
        for e in &mine {
            assert_eq!(r.open(e).unwrap(), None, "own entries are skipped");
        }
        assert_eq!(r.buffered(), (0, 0));
    }

    #[test]
    fn buffering_is_bounded_and_drops_the_oldest() {
        let (k, room) = space(1);
        let limits = ReaderLimits {
            max_partial: 2,
            max_buffered_bytes: 10 * MAX_ENTRY_BYTES,
            max_remembered: 8,
        };
        let mut r = MailboxReader::with_limits(k.clone(), &room, limits).unwrap();
        let from = DeviceId::random();
        let msg = |id| {
            let p = MailboxPayload::Changes {
                bytes: pseudo(150_000, id as u8),
            };
            (p.clone(), seal_payload(&k, &room, from, id, &p).unwrap())
        };
        let (_, first) = msg(1);
        let (_, second) = msg(2);
        let (p3, third) = msg(3);
        r.open(&first[0]).unwrap();
        r.open(&second[0]).unwrap();
        r.open(&third[0]).unwrap();
        assert_eq!(r.buffered().0, 2, "message 1 was dropped");
        r.open(&third[1]).unwrap();
        assert_eq!(r.open(&third[2]).unwrap(), Some((from, p3)));
        // The dropped message restarts from scratch when its parts come again.
        r.open(&first[1]).unwrap();
        r.open(&first[2]).unwrap();
        assert!(r.open(&first[0]).unwrap().is_some());
        let tiny = ReaderLimits {
            max_buffered_bytes: MAX_ENTRY_BYTES,
            ..limits
        };
        let mut r = MailboxReader::with_limits(k, &room, tiny).unwrap();
        assert!(matches!(
            r.open(&second[0]),
            Err(MailboxError::ReaderFull(_))
        ));
    }

    #[test]
    fn plan_upload_sends_only_new_changes() {
        use crate::hlc::Hlc;
        use crate::ids::ItemId;
        let dev = DeviceId::random();
        let mut a = SpaceDoc::new(dev.as_bytes()).unwrap();
        let at = |ms| Hlc {
            wall_ms: ms,
            counter: 0,
        };
        a.add_text(ItemId::random(), "one", dev, at(1)).unwrap();
        let first = plan_upload(&mut a, &[]).unwrap();
        assert_eq!(plan_upload(&mut a, &first.heads), None, "nothing new");
        a.add_text(ItemId::random(), "two", dev, at(2)).unwrap();
        let second = plan_upload(&mut a, &first.heads).unwrap();
        let mut b = SpaceDoc::new(&[9; 16]).unwrap();
        assert!(
            !b.apply_changes(&second.changes).unwrap(),
            "waits for its dependencies"
        );
        assert!(b.apply_changes(&first.changes).unwrap());
        assert_eq!(b.items().len(), 2, "out-of-order batches converge");
        assert!(!b.apply_changes(&first.changes).unwrap(), "idempotent");
        assert_eq!(b.heads(), a.heads());
    }

    /// The server's retention rule, modelled (the real one is tested in ferry-signal): a
    /// history entry leaves once a base covers it and every registered device has it.
    #[derive(Default)]
    struct ModelServer {
        entries: std::collections::BTreeMap<u64, Vec<u8>>,
        next: u64,
        cursors: HashMap<usize, u64>,
        base: Option<(u64, u64)>, // (to, covers)
    }

    impl ModelServer {
        fn trim(&mut self) {
            let acked = self.cursors.values().copied().min().unwrap_or(0);
            let bound = acked.min(self.base.map_or(0, |b| b.1));
            self.entries.retain(|seq, _| *seq > bound);
        }
        fn post(&mut self, bytes: Vec<u8>) -> u64 {
            self.next += 1;
            self.entries.insert(self.next, bytes);
            self.next
        }
    }

    struct ModelDevice {
        doc: SpaceDoc,
        id: DeviceId,
        cursor: u64,
        uploaded: Vec<ChangeHash>,
    }

    impl ModelDevice {
        fn new(i: u8) -> Self {
            let id = DeviceId::from_bytes([i + 1; 16]);
            ModelDevice {
                doc: SpaceDoc::new(id.as_bytes()).unwrap(),
                id,
                cursor: 0,
                uploaded: Vec::new(),
            }
        }

        /// One mailbox visit, as the app makes it: fetch and apply, acknowledge, upload.
        fn visit(&mut self, me: usize, server: &mut ModelServer) {
            let fetched: Vec<(u64, Vec<u8>)> = server
                .entries
                .range(self.cursor + 1..)
                .map(|(s, b)| (*s, b.clone()))
                .collect();
            for (seq, bytes) in fetched {
                self.doc.apply_changes(&bytes).unwrap();
                self.cursor = seq;
            }
            server.cursors.insert(me, self.cursor);
            server.trim();
            let Some(plan) = plan_upload(&mut self.doc, &self.uploaded) else {
                return;
            };
            if base_due(server.next, server.base.map(|b| b.0), self.cursor, true) {
                let seq = server.post(self.doc.save());
                if server.base.is_none_or(|b| self.cursor >= b.1) {
                    server.base = Some((seq, self.cursor));
                }
                server.trim();
            } else {
                server.post(plan.changes);
            }
            self.uploaded = plan.heads;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Devices that are never online together, each writing and visiting the mailbox in
        /// turn: compaction keeps the mailbox small, yet a device joining at the end, alone,
        /// receives the whole history from what the server still holds.
        #[test]
        fn compaction_never_loses_history_for_a_late_joiner(
            turns in proptest::collection::vec((0usize..3, 0usize..4), 1..60),
        ) {
            use crate::hlc::Hlc;
            use crate::ids::ItemId;
            let mut server = ModelServer::default();
            let mut devices: Vec<ModelDevice> = (0..3).map(ModelDevice::new).collect();
            let mut written = 0;
            for (i, (who, texts)) in turns.iter().enumerate() {
                let d = &mut devices[*who];
                for t in 0..*texts {
                    let at = Hlc { wall_ms: (i * 10 + t) as u64, counter: 0 };
                    d.doc.add_text(ItemId::random(), &format!("{i}.{t}"), d.id, at).unwrap();
                    written += 1;
                }
                d.visit(*who, &mut server);
            }
            let mut late = ModelDevice::new(9);
            late.visit(3, &mut server);
            prop_assert_eq!(late.doc.items().len(), written);
            let bound = server.base.map_or(0, |b| b.1);
            prop_assert!(server.entries.keys().all(|s| *s > bound.min(
                server.cursors.values().copied().min().unwrap_or(0)
            )));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_payload_round_trips_in_any_order(
            len in 0usize..200_000,
            seed in any::<u8>(),
            kind in 0u8..3,
            order_seed in any::<u64>(),
            dup in any::<bool>(),
        ) {
            let data = pseudo(len.min(if kind == 2 { CHUNK_SIZE } else { len }), seed);
            let p = match kind {
                0 => MailboxPayload::Changes { bytes: data },
                1 => MailboxPayload::Manifest { root: BlobId([seed; 32]), bytes: data },
                _ => MailboxPayload::Chunk { root: BlobId([seed; 32]), index: u32::from(seed), data },
            };
            let (k, room) = space(7);
            let from = DeviceId::random();
            let mut es = seal_payload(&k, &room, from, order_seed, &p).unwrap();
            for e in &es {
                prop_assert!(e.len() % 256 == 0 && e.len() <= 65536);
            }
            // Deterministic shuffle.
            let mut x = order_seed | 1;
            for i in (1..es.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                es.swap(i, (x % (i as u64 + 1)) as usize);
            }
            if dup { let d = es[0].clone(); es.insert(es.len() / 2, d); }
            let mut r = MailboxReader::new(k, &room).unwrap();
            let got: Vec<_> = es.iter().filter_map(|e| r.open(e).unwrap()).collect();
            prop_assert_eq!(got, vec![(from, p)]);
        }

        #[test]
        fn garbage_is_never_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let (k, room) = space(7);
            let mut r = MailboxReader::new(k, &room).unwrap();
            prop_assert!(r.open(&bytes).is_err());
        }
    }
}
