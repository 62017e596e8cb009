//! Sending a file from this device, sans-IO: the runtime reads the slices it is asked for and
//! performs what each step returns.
//!
//! Two passes, so a large file is never held whole in memory and never blocks sync:
//! 1. **hash** every slice into the manifest (its hash is the file's id). Then the runtime
//!    stores the manifest, notes the send (so a send the tab never finishes is found at the
//!    next start) and adds the item to the history at once: the other devices see it while
//!    the bytes are still being stored;
//! 2. **store**: every slice is read again and checked against the manifest (the file may
//!    have changed on disk since), then stored. What is stored is served early, at doubling
//!    sizes, so other devices start fetching before the last chunk is in.
//!
//! A failure after pass 1 leaves an item whose bytes exist nowhere: the runtime takes it out
//! of the history ([`SendJob::root`] says whether there is one).

use crate::blobs::{
    BlobError, BlobId, CHUNK_SIZE, Have, MAX_FILE_SIZE, Manifest, ManifestBuilder, chunk_key,
};
use crate::store::StoreKey;

/// Chunks a send job reads per turn (2 MiB): a turn stays short, so sync stays responsive.
pub const CHUNKS_PER_TURN: u32 = 8;
/// Partial files are served from this many stored chunks on (then at every doubling).
const SERVE_EARLY_FROM: u32 = 16;

/// Why a file is not (or no longer) being sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Over [`MAX_FILE_SIZE`].
    #[error("it is larger than the {max} bytes Ferry sends")]
    TooLarge {
        /// The largest size sent.
        max: u64,
    },
    /// Its bytes on disk are not the ones hashed: changed, shortened or grown.
    #[error("the file changed while it was being sent")]
    Changed,
    /// A slice the manifest cannot take (a read that returned a wrong length).
    #[error("{0}")]
    Read(#[from] BlobError),
}

enum Pass {
    Hashing(ManifestBuilder),
    Storing(Manifest),
}

/// One file being sent (see the module docs).
pub struct SendJob {
    size: u64,
    chunks: u32,
    pass: Pass,
    next: u32,
    /// Chunks handed out by the last [`SendJob::read`] of pass 2, not yet stored.
    unstored: u32,
    /// [`SendJob::stored`] said the whole file is stored.
    finished: bool,
}

/// What the runtime does after handing in a turn's slices.
#[derive(Debug, PartialEq, Eq)]
pub enum SendStep {
    /// Pass 1 goes on: read the next slices.
    Hashing,
    /// Every slice is hashed: store the manifest, note the send, add the item; then pass 2.
    Hashed(Manifest),
    /// Write these chunks (one transaction), then report with [`SendJob::stored`].
    Store(Vec<(StoreKey, Vec<u8>)>),
}

impl std::fmt::Debug for SendJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendJob")
            .field("size", &self.size)
            .field("root", &self.root())
            .field("next", &self.next)
            .finish()
    }
}

impl SendJob {
    /// A job for a file of `size` bytes; refused over [`MAX_FILE_SIZE`].
    pub fn new(size: u64) -> Result<Self, SendError> {
        if size > MAX_FILE_SIZE {
            return Err(SendError::TooLarge { max: MAX_FILE_SIZE });
        }
        Ok(SendJob {
            size,
            // At most MAX_CHUNKS, which fits.
            chunks: u32::try_from(size.div_ceil(CHUNK_SIZE as u64)).unwrap_or(u32::MAX),
            pass: Pass::Hashing(ManifestBuilder::new()),
            next: 0,
            unstored: 0,
            finished: false,
        })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's id, once it is hashed (then an item may exist for it).
    pub fn root(&self) -> Option<BlobId> {
        self.manifest().map(Manifest::root)
    }

    /// The manifest, once the file is hashed.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.pass {
            Pass::Storing(m) => Some(m),
            Pass::Hashing(_) => None,
        }
    }

    /// The byte ranges (`start..end`) to read this turn, in order: hand their bytes to
    /// [`SendJob::read`]. Empty for a zero-byte file (hand in nothing).
    pub fn next_reads(&self) -> Vec<std::ops::Range<u64>> {
        let end = self.next.saturating_add(CHUNKS_PER_TURN).min(self.chunks);
        (self.next..end)
            .map(|i| {
                let start = u64::from(i) * CHUNK_SIZE as u64;
                start..(start + CHUNK_SIZE as u64).min(self.size)
            })
            .collect()
    }

    /// The bytes of [`SendJob::next_reads`], in order.
    pub fn read(&mut self, slices: Vec<Vec<u8>>) -> Result<SendStep, SendError> {
        // A read shorter or longer than asked for: the file on disk is not the one picked.
        let wanted = self.next_reads();
        if slices.len() != wanted.len()
            || wanted
                .iter()
                .zip(&slices)
                .any(|(r, s)| s.len() as u64 != r.end - r.start)
        {
            return Err(SendError::Changed);
        }
        let count = wanted.len() as u32;
        match &mut self.pass {
            Pass::Hashing(builder) => {
                for s in &slices {
                    builder.push(s)?;
                }
                self.next += count;
                if self.next < self.chunks {
                    return Ok(SendStep::Hashing);
                }
                if builder.size() != self.size {
                    return Err(SendError::Changed);
                }
                let manifest = std::mem::take(builder).finish();
                self.pass = Pass::Storing(manifest.clone());
                self.next = 0;
                Ok(SendStep::Hashed(manifest))
            }
            Pass::Storing(manifest) => {
                let root = manifest.root();
                let mut entries = Vec::with_capacity(slices.len());
                for (i, data) in (self.next..).zip(slices) {
                    manifest
                        .verify_chunk(i, &data)
                        .map_err(|_| SendError::Changed)?;
                    entries.push((chunk_key(&root, i), data));
                }
                self.unstored = count;
                Ok(SendStep::Store(entries))
            }
        }
    }

    /// The chunks of the last [`SendStep::Store`] are stored. Returns what to serve now: the
    /// whole file once done, the stored part at doubling sizes, else nothing.
    pub fn stored(&mut self) -> Option<Have> {
        if !matches!(self.pass, Pass::Storing(_)) || self.finished {
            return None;
        }
        self.next += std::mem::take(&mut self.unstored);
        let end = self.next;
        if end >= self.chunks {
            self.finished = true;
            Some(Have::All)
        } else if end >= SERVE_EARLY_FROM && end.is_power_of_two() {
            Some(Have::Chunks((0..end).collect()))
        } else {
            None
        }
    }

    /// Every chunk is stored ([`SendJob::stored`] returned [`Have::All`]; a zero-byte file
    /// too goes through one empty [`SendStep::Store`]).
    pub fn is_done(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(chunks: usize, tail: usize) -> Vec<u8> {
        (0..chunks * CHUNK_SIZE + tail)
            .map(|i| (i % 251) as u8)
            .collect()
    }

    fn slices(bytes: &[u8], reads: &[std::ops::Range<u64>]) -> Vec<Vec<u8>> {
        reads
            .iter()
            .map(|r| bytes[r.start as usize..(r.end as usize).min(bytes.len())].to_vec())
            .collect()
    }

    /// The manifest, the chunks stored, and what was served after how many chunks.
    type Sent = (Manifest, Vec<(StoreKey, Vec<u8>)>, Vec<(u32, Have)>);

    /// Drives a job to its end over `on_disk` (what pass 1 read) and `later` (what pass 2
    /// reads); returns the manifest, what was stored and what was served when.
    fn send(on_disk: &[u8], later: &[u8]) -> Result<Sent, (SendError, SendJob)> {
        let mut job = SendJob::new(on_disk.len() as u64).unwrap();
        let mut manifest = None;
        let mut stored = vec![];
        let mut served = vec![];
        let mut turns = 0;
        while !job.is_done() {
            turns += 1;
            assert!(turns < 1000, "a job that never ends");
            let disk = if manifest.is_some() { later } else { on_disk };
            let read = slices(disk, &job.next_reads());
            match job.read(read) {
                Ok(SendStep::Hashing) => {}
                Ok(SendStep::Hashed(m)) => manifest = Some(m),
                Ok(SendStep::Store(entries)) => {
                    stored.extend(entries);
                    if let Some(have) = job.stored() {
                        served.push((stored.len() as u32, have));
                    }
                }
                Err(e) => return Err((e, job)),
            }
        }
        Ok((manifest.unwrap(), stored, served))
    }

    #[test]
    fn a_file_is_hashed_then_stored_and_served_early_at_doubling_sizes() {
        let bytes = file(40, 1000);
        let (manifest, stored, served) = send(&bytes, &bytes).unwrap();
        let mut whole = ManifestBuilder::new();
        for c in bytes.chunks(CHUNK_SIZE) {
            whole.push(c).unwrap();
        }
        assert_eq!(manifest, whole.finish(), "the manifest of the whole file");
        let root = manifest.root();
        assert_eq!(stored.len(), 41);
        for (i, (key, data)) in (0..).zip(&stored) {
            assert_eq!(key, &chunk_key(&root, i));
            manifest.verify_chunk(i, data).unwrap();
        }
        assert_eq!(
            served,
            vec![
                (16, Have::Chunks((0..16).collect())),
                (32, Have::Chunks((0..32).collect())),
                (41, Have::All),
            ]
        );
    }

    #[test]
    fn a_file_changed_between_the_passes_is_not_stored_and_its_item_is_named() {
        let bytes = file(20, 7);
        let mut changed = bytes.clone();
        changed[CHUNK_SIZE * 9 + 3] ^= 1;
        let (e, job) = send(&bytes, &changed).unwrap_err();
        assert_eq!(e, SendError::Changed);
        assert!(
            job.root().is_some(),
            "hashed: an item may exist, take it out"
        );
        assert!(!job.is_done());
        // Shorter on disk than when it was picked.
        let (e, job) = send(&bytes, &bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(e, SendError::Changed);
        assert!(job.root().is_some());
    }

    #[test]
    fn a_file_that_reads_short_while_hashing_has_no_item() {
        let bytes = file(3, 0);
        let mut job = SendJob::new(bytes.len() as u64 + 10).unwrap();
        let reads = job.next_reads();
        let e = job.read(slices(&bytes, &reads)).unwrap_err();
        assert_eq!(e, SendError::Changed);
        assert_eq!(job.root(), None, "no item was added");
        // A slice missing altogether.
        let mut job = SendJob::new(bytes.len() as u64).unwrap();
        assert_eq!(job.read(vec![]), Err(SendError::Changed));
    }

    #[test]
    fn an_empty_file_is_sent_as_an_item_with_nothing_to_store() {
        let (manifest, stored, served) = send(&[], &[]).unwrap();
        assert_eq!((manifest.size, manifest.chunk_count()), (0, 0));
        assert!(stored.is_empty());
        assert_eq!(served, vec![(0, Have::All)]);
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_it_is_read() {
        assert_eq!(
            SendJob::new(MAX_FILE_SIZE + 1).unwrap_err(),
            SendError::TooLarge { max: MAX_FILE_SIZE }
        );
        assert!(SendJob::new(MAX_FILE_SIZE).is_ok());
    }
}
