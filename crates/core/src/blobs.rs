//! Files of any size: content-addressed chunks, a manifest that names them, and the messages
//! devices use to fetch them from each other (the pull engine lives in [`transfer`]).
//!
//! The app never holds a whole file: it reads `File.slice()` [`CHUNK_SIZE`] bytes at a time
//! into a [`ManifestBuilder`], whose [`Manifest`] lists each chunk's BLAKE3 hash. The file's id
//! in the document is the [`BlobId`] = BLAKE3 of the manifest's canonical encoding, so any
//! device holding the id can check every byte it receives, whoever sent it.
//!
//! Because the root is only known once the whole file was hashed, the sending app reads the
//! file twice: once to build the manifest, then again to store each chunk under
//! [`chunk_key`] (checking it with [`Manifest::verify_chunk`], in case the file changed).
//!
//! Storage keys (see [`crate::store::StoreKey`]):
//!
//! ```text
//! blob/<root hex>/manifest        canonical manifest bytes
//! blob/<root hex>/c/<index:08>    chunk `index` (zero-padded so prefix listing is in order)
//! ```
//!
//! Listing `blob/<root hex>/c` gives the have-set of a resumable download.

pub mod transfer;

use crate::store::StoreKey;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

pub use transfer::{BlobEffect, Have, TransferConfig, TransferStats, Transfers};

/// Bytes per chunk; only a file's last chunk may be shorter.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Largest file accepted. The bound keeps a manifest (32 bytes per chunk, at most 8 MiB here)
/// inside one wire message and stops a forged manifest from making us allocate without limit.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024 * 1024;
/// Most chunks a manifest may list.
pub const MAX_CHUNKS: u64 = MAX_FILE_SIZE.div_ceil(CHUNK_SIZE as u64);
/// Version byte of the canonical manifest encoding.
pub const MANIFEST_VERSION: u8 = 1;
const MANIFEST_HEADER: usize = 1 + 8 + 4;
/// Largest canonical manifest.
pub const MAX_MANIFEST_BYTES: usize = MANIFEST_HEADER + MAX_CHUNKS as usize * 32;
/// Most roots in one [`BlobMessage::Query`].
pub const MAX_QUERY_ROOTS: usize = 64;
/// Most index ranges in one [`BlobMessage::Have`] (a sender with more reports fewer).
pub const MAX_HAVE_RANGES: usize = 1024;
/// Most chunk indices in one [`BlobMessage::Want`].
pub const MAX_WANT_BATCH: usize = 16;

/// Why file data or a blob message was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// A chunk other than the last was shorter than [`CHUNK_SIZE`], or a chunk was longer.
    #[error(
        "chunk {index} has {len} bytes; every chunk but the last must have exactly {CHUNK_SIZE}"
    )]
    BadChunkLength {
        /// Chunk index.
        index: u64,
        /// Its length.
        len: usize,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("files may have at most {MAX_FILE_SIZE} bytes, this one has {0}")]
    TooLarge(u64),
    /// Manifest bytes that do not hash to the expected root.
    #[error("the file description does not match its id")]
    RootMismatch,
    /// Manifest bytes that are not a manifest this build reads.
    #[error("malformed file description: {0}")]
    Malformed(String),
    /// A chunk whose bytes do not hash to the manifest's entry.
    #[error("chunk {0} is damaged (hash mismatch)")]
    BadChunk(u32),
    /// A chunk index beyond the end of the file.
    #[error("chunk {0} is beyond the end of the file")]
    NoSuchChunk(u32),
    /// Text that is not a 64-digit lowercase hex blob id.
    #[error("a file id must be 64 hex digits, got {0:?}")]
    BadId(String),
    /// A message over the bounds above.
    #[error("blob message over its size bounds: {0}")]
    Oversized(&'static str),
}

/// A file's id: BLAKE3 of its canonical manifest. Printed as 64 lowercase hex digits (the
/// document and storage keys hold it as text).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", &self.to_string()[..12])
    }
}

impl FromStr for BlobId {
    type Err = BlobError;
    fn from_str(s: &str) -> Result<Self, BlobError> {
        let bad = || BlobError::BadId(s.chars().take(80).collect());
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(BlobId(out))
    }
}

/// The list of a file's chunk hashes.
///
/// Canonical encoding (the bytes the root hashes; integers little-endian):
///
/// ```text
/// version:u8 (=1) | size:u64 | chunk_size:u32 (=CHUNK_SIZE) | ceil(size/chunk_size) × hash:[u8;32]
/// ```
///
/// The chunk count is implied by `size`, so size and hashes can never disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// File size in bytes.
    pub size: u64,
    /// Bytes per chunk (always [`CHUNK_SIZE`] in version 1).
    pub chunk_size: u32,
    /// BLAKE3 hash of each chunk, in order.
    pub chunks: Vec<[u8; 32]>,
}

impl Manifest {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MANIFEST_HEADER + 32 * self.chunks.len());
        out.push(MANIFEST_VERSION);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        for h in &self.chunks {
            out.extend_from_slice(h);
        }
        out
    }

    /// The file's id.
    pub fn root(&self) -> BlobId {
        BlobId(*blake3::hash(&self.encode()).as_bytes())
    }

    /// Reads manifest bytes from a peer or storage, accepting them only if they are the
    /// canonical manifest of `root`.
    pub fn decode(root: &BlobId, bytes: &[u8]) -> Result<Self, BlobError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(BlobError::Oversized("manifest"));
        }
        if blake3::hash(bytes).as_bytes() != root.as_bytes() {
            return Err(BlobError::RootMismatch);
        }
        let malformed = |m: &str| BlobError::Malformed(m.to_owned());
        if bytes.len() < MANIFEST_HEADER {
            return Err(malformed("truncated"));
        }
        if bytes[0] != MANIFEST_VERSION {
            return Err(malformed("unknown version"));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[1..9]);
        let size = u64::from_le_bytes(size);
        let mut cs = [0u8; 4];
        cs.copy_from_slice(&bytes[9..13]);
        let chunk_size = u32::from_le_bytes(cs);
        if chunk_size as usize != CHUNK_SIZE {
            return Err(malformed("unsupported chunk size"));
        }
        if size > MAX_FILE_SIZE {
            return Err(BlobError::TooLarge(size));
        }
        let count = size.div_ceil(CHUNK_SIZE as u64) as usize;
        let body = &bytes[MANIFEST_HEADER..];
        if body.len() != count * 32 {
            return Err(malformed("chunk count does not match the size"));
        }
        let chunks = body
            .chunks_exact(32)
            .map(|h| {
                let mut a = [0u8; 32];
                a.copy_from_slice(h);
                a
            })
            .collect();
        Ok(Manifest {
            size,
            chunk_size,
            chunks,
        })
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        // Bounded by MAX_CHUNKS (decode and the builder check), which fits in u32.
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    /// Expected length of chunk `index`, if it exists.
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        let start = u64::from(index) * u64::from(self.chunk_size);
        if index >= self.chunk_count() || start >= self.size {
            return None;
        }
        Some((self.size - start).min(u64::from(self.chunk_size)) as usize)
    }

    /// Checks a chunk's length and hash against the manifest.
    pub fn verify_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), BlobError> {
        let len = self.chunk_len(index).ok_or(BlobError::NoSuchChunk(index))?;
        if bytes.len() != len {
            return Err(BlobError::BadChunkLength {
                index: u64::from(index),
                len: bytes.len(),
            });
        }
        if blake3::hash(bytes).as_bytes() != &self.chunks[index as usize] {
            return Err(BlobError::BadChunk(index));
        }
        Ok(())
    }
}

/// Builds a manifest from a file read chunk by chunk.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    size: u64,
    chunks: Vec<[u8; 32]>,
    ended: bool,
}

impl ManifestBuilder {
    /// An empty builder (finishing it at once describes a zero-byte file).
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes the next chunk: exactly [`CHUNK_SIZE`] bytes, except the last, which may be
    /// shorter (but not empty). Returns its index.
    pub fn push(&mut self, chunk: &[u8]) -> Result<u32, BlobError> {
        let index = self.chunks.len() as u64;
        if self.ended || chunk.is_empty() || chunk.len() > CHUNK_SIZE {
            return Err(BlobError::BadChunkLength {
                index: if self.ended { index - 1 } else { index },
                len: chunk.len(),
            });
        }
        let size = self.size + chunk.len() as u64;
        if size > MAX_FILE_SIZE {
            return Err(BlobError::TooLarge(size));
        }
        self.ended = chunk.len() < CHUNK_SIZE;
        self.size = size;
        self.chunks.push(*blake3::hash(chunk).as_bytes());
        Ok(index as u32)
    }

    /// Bytes pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The manifest of everything pushed.
    pub fn finish(self) -> Manifest {
        Manifest {
            size: self.size,
            chunk_size: CHUNK_SIZE as u32,
            chunks: self.chunks,
        }
    }
}

/// What devices say about files, on the bulk lane (see [`crate::replica`]). Pull-based: a
/// device asks who has a file, fetches its manifest, then asks for a bounded number of chunks
/// at a time, so no side ever sends more than was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobMessage {
    /// Which of these files do you hold?
    Query {
        /// At most [`MAX_QUERY_ROOTS`].
        roots: Vec<BlobId>,
    },
    /// The sender holds the manifest of `root` and these chunks.
    Have {
        /// The file.
        root: BlobId,
        /// Every chunk (then `ranges` is empty).
        complete: bool,
        /// Half-open index ranges `[start, end)`, at most [`MAX_HAVE_RANGES`].
        ranges: Vec<(u32, u32)>,
    },
    /// Send me the manifest of `root`.
    WantManifest {
        /// The file.
        root: BlobId,
    },
    /// The canonical manifest bytes of `root`.
    Manifest {
        /// The file.
        root: BlobId,
        /// At most [`MAX_MANIFEST_BYTES`].
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Send me these chunks.
    Want {
        /// The file.
        root: BlobId,
        /// At most [`MAX_WANT_BATCH`].
        indices: Vec<u32>,
    },
    /// One chunk.
    Chunk {
        /// The file.
        root: BlobId,
        /// Its index.
        index: u32,
        /// At most [`CHUNK_SIZE`] bytes. (`serde_bytes`: same bytes on the wire as a plain
        /// sequence, but copied at once instead of one `u8` at a time.)
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The sender does not have this chunk (or, for `None`, the manifest).
    Missing {
        /// The file.
        root: BlobId,
        /// The chunk, or `None` for the manifest.
        index: Option<u32>,
    },
}

impl BlobMessage {
    /// Checks the size bounds of a message from a peer (postcard already bounds the total by
    /// the wire's message limit; these keep each field to what an honest peer sends).
    pub fn validate(&self) -> Result<(), BlobError> {
        let ok = match self {
            BlobMessage::Query { roots } => roots.len() <= MAX_QUERY_ROOTS,
            BlobMessage::Have { ranges, .. } => {
                ranges.len() <= MAX_HAVE_RANGES && ranges.iter().all(|(s, e)| s < e)
            }
            BlobMessage::Manifest { bytes, .. } => bytes.len() <= MAX_MANIFEST_BYTES,
            BlobMessage::Want { indices, .. } => indices.len() <= MAX_WANT_BATCH,
            BlobMessage::Chunk { data, .. } => data.len() <= CHUNK_SIZE,
            BlobMessage::WantManifest { .. } | BlobMessage::Missing { .. } => true,
        };
        if ok {
            Ok(())
        } else {
            Err(BlobError::Oversized(self.kind()))
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            BlobMessage::Query { .. } => "query",
            BlobMessage::Have { .. } => "have",
            BlobMessage::WantManifest { .. } => "want-manifest",
            BlobMessage::Manifest { .. } => "manifest",
            BlobMessage::Want { .. } => "want",
            BlobMessage::Chunk { .. } => "chunk",
            BlobMessage::Missing { .. } => "missing",
        }
    }
}

/// `blob`: every stored file lies below it.
pub fn blobs_prefix() -> StoreKey {
    StoreKey::from_stored("blob".to_owned())
}

/// `blob/<root>`: everything stored for one file (delete all of it to free the file).
pub fn blob_prefix(root: &BlobId) -> StoreKey {
    StoreKey::from_stored(format!("blob/{root}"))
}

/// `blob/<root>/manifest`.
pub fn manifest_key(root: &BlobId) -> StoreKey {
    StoreKey::from_stored(format!("blob/{root}/manifest"))
}

/// `blob/<root>/c`: list its keys for the have-set.
pub fn chunks_prefix(root: &BlobId) -> StoreKey {
    StoreKey::from_stored(format!("blob/{root}/c"))
}

/// `blob/<root>/c/<index, 8 digits>`.
pub fn chunk_key(root: &BlobId, index: u32) -> StoreKey {
    StoreKey::from_stored(format!("blob/{root}/c/{index:08}"))
}

/// The file a key below [`blobs_prefix`] belongs to.
pub fn parse_blob_key(key: &StoreKey) -> Option<BlobId> {
    let mut parts = key.as_str().split('/');
    (parts.next()? == "blob").then_some(())?;
    parts.next()?.parse().ok()
}

/// The file and chunk index of a [`chunk_key`].
pub fn parse_chunk_key(key: &StoreKey) -> Option<(BlobId, u32)> {
    let parts: Vec<&str> = key.as_str().split('/').collect();
    match parts.as_slice() {
        ["blob", root, "c", index] if index.len() == 8 => {
            Some((root.parse().ok()?, index.parse().ok()?))
        }
        _ => None,
    }
}

/// The have-set from keys listed under [`chunks_prefix`] (other keys are ignored).
pub fn have_from_keys(root: &BlobId, keys: &[StoreKey]) -> Vec<u32> {
    keys.iter()
        .filter_map(parse_chunk_key)
        .filter(|(r, _)| r == root)
        .map(|(_, i)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, Reassembler};

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn manifest_of(data: &[u8]) -> Manifest {
        let mut b = ManifestBuilder::new();
        for c in data.chunks(CHUNK_SIZE) {
            b.push(c).unwrap();
        }
        b.finish()
    }

    #[test]
    fn manifest_round_trips_and_verifies_chunks() {
        let data = bytes(2 * CHUNK_SIZE + 1000, 1);
        let m = manifest_of(&data);
        assert_eq!((m.size, m.chunk_count()), (data.len() as u64, 3));
        let root = m.root();
        assert_eq!(Manifest::decode(&root, &m.encode()).unwrap(), m);
        for (i, c) in data.chunks(CHUNK_SIZE).enumerate() {
            m.verify_chunk(i as u32, c).unwrap();
        }
        let mut bad = data[..CHUNK_SIZE].to_vec();
        bad[7] ^= 1;
        assert_eq!(m.verify_chunk(0, &bad), Err(BlobError::BadChunk(0)));
        assert!(matches!(
            m.verify_chunk(2, &data[..CHUNK_SIZE]),
            Err(BlobError::BadChunkLength { .. })
        ));
        assert_eq!(m.verify_chunk(3, b"x"), Err(BlobError::NoSuchChunk(3)));
        assert_eq!(m.chunk_len(2), Some(1000));
    }

    #[test]
    fn a_zero_byte_file_has_no_chunks() {
        let m = ManifestBuilder::new().finish();
        assert_eq!((m.size, m.chunk_count()), (0, 0));
        assert_eq!(Manifest::decode(&m.root(), &m.encode()).unwrap(), m);
        assert_eq!(m.verify_chunk(0, b""), Err(BlobError::NoSuchChunk(0)));
    }

    #[test]
    fn only_the_last_chunk_may_be_short() {
        let mut b = ManifestBuilder::new();
        b.push(&[1; 10]).unwrap();
        assert!(matches!(
            b.push(&[1; CHUNK_SIZE]),
            Err(BlobError::BadChunkLength { .. })
        ));
        assert!(ManifestBuilder::new().push(&[]).is_err());
        assert!(
            ManifestBuilder::new()
                .push(&vec![0; CHUNK_SIZE + 1])
                .is_err()
        );
    }

    #[test]
    fn manifests_not_matching_their_root_or_forged_are_refused() {
        let m = manifest_of(&bytes(CHUNK_SIZE + 5, 2));
        let other = manifest_of(&bytes(10, 3));
        assert_eq!(
            Manifest::decode(&other.root(), &m.encode()),
            Err(BlobError::RootMismatch)
        );
        // A forged manifest whose root is its own hash: huge size, few hashes.
        let mut forged = m.encode();
        forged[1..9].copy_from_slice(&(1u64 << 50).to_le_bytes());
        let root = BlobId(*blake3::hash(&forged).as_bytes());
        assert_eq!(
            Manifest::decode(&root, &forged),
            Err(BlobError::TooLarge(1 << 50))
        );
        // Size and hash count disagree.
        let mut short = m.encode();
        short.truncate(short.len() - 32);
        let root = BlobId(*blake3::hash(&short).as_bytes());
        assert!(matches!(
            Manifest::decode(&root, &short),
            Err(BlobError::Malformed(_))
        ));
        let huge = vec![0u8; MAX_MANIFEST_BYTES + 1];
        assert!(Manifest::decode(&root, &huge).is_err());
    }

    #[test]
    fn blob_ids_round_trip_through_hex_and_keys() {
        let root = manifest_of(b"hello").root();
        let s = root.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<BlobId>(), Ok(root));
        for bad in ["", "xy", &"A".repeat(64), &"0".repeat(63)] {
            assert!(bad.parse::<BlobId>().is_err());
        }
        let k = chunk_key(&root, 42);
        assert_eq!(k.as_str(), format!("blob/{s}/c/00000042"));
        assert_eq!(parse_chunk_key(&k), Some((root, 42)));
        assert_eq!(parse_blob_key(&manifest_key(&root)), Some(root));
        assert_eq!(parse_chunk_key(&manifest_key(&root)), None);
        assert_eq!(have_from_keys(&root, &[k, manifest_key(&root)]), vec![42]);
    }

    fn every_message() -> Vec<BlobMessage> {
        let root = manifest_of(b"x").root();
        vec![
            BlobMessage::Query { roots: vec![root] },
            BlobMessage::Have {
                root,
                complete: false,
                ranges: vec![(0, 3), (5, 6)],
            },
            BlobMessage::WantManifest { root },
            BlobMessage::Manifest {
                root,
                bytes: vec![1, 2, 3],
            },
            BlobMessage::Want {
                root,
                indices: vec![1, 2],
            },
            BlobMessage::Chunk {
                root,
                index: 4,
                data: bytes(CHUNK_SIZE, 9),
            },
            BlobMessage::Missing {
                root,
                index: Some(3),
            },
            BlobMessage::Missing { root, index: None },
        ]
    }

    #[test]
    fn every_blob_message_round_trips_through_packets() {
        for m in every_message() {
            m.validate().unwrap();
            let msg = Message::Blob(m);
            let mut r = Reassembler::default();
            let mut got = None;
            for p in msg.to_packets(3).unwrap() {
                assert!(p.len() + crate::seal::OVERHEAD <= crate::wire::MAX_PACKET);
                got = r.push(&p).unwrap();
            }
            assert_eq!(got, Some(msg));
        }
    }

    #[test]
    fn oversized_blob_messages_are_refused() {
        let root = BlobId([0; 32]);
        let too_many = BlobMessage::Want {
            root,
            indices: vec![0; MAX_WANT_BATCH + 1],
        };
        assert!(too_many.validate().is_err());
        let big = BlobMessage::Chunk {
            root,
            index: 0,
            data: vec![0; CHUNK_SIZE + 1],
        };
        assert!(big.validate().is_err());
        let empty_range = BlobMessage::Have {
            root,
            complete: false,
            ranges: vec![(3, 3)],
        };
        assert!(empty_range.validate().is_err());
    }
}
