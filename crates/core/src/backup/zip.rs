//! A streaming ZIP writer: entries are *stored* (not compressed: the files are mostly
//! compressed already, and a backup must be written at the speed of storage), each followed by
//! a data descriptor, so an entry's bytes go out as they are read and only the central
//! directory (one small record per entry) is kept in memory.
//!
//! Every local header carries a ZIP64 extra field and every data descriptor 8-byte sizes, so
//! an entry's size need not be known when it starts; the central directory and the end
//! records use ZIP64 fields only where a value does not fit 32 (or 16) bits, so a small
//! backup opens in every unzip tool.

use super::BackupError;

/// CRC-32 (IEEE 802.3, reflected), what ZIP checks entries with.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

impl Default for Crc32 {
    fn default() -> Self {
        Crc32(0xFFFF_FFFF)
    }
}

impl Crc32 {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for &b in data {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The checksum of everything added.
    pub fn value(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// One finished entry, as the central directory lists it.
#[derive(Debug)]
struct Central {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
}

/// The entry being written.
#[derive(Debug)]
struct Open {
    name: String,
    offset: u64,
    crc: Crc32,
    size: u64,
}

/// The writer. It returns the bytes to emit; the caller emits each entry's data itself
/// (after passing it to [`ZipWriter::data`]), so data is never copied here.
#[derive(Debug)]
pub struct ZipWriter {
    offset: u64,
    entries: Vec<Central>,
    open: Option<Open>,
    dos: (u16, u16),
    /// Values at or above this go into ZIP64 fields (`u32::MAX` in real use; tests lower it).
    limit: u64,
}

/// Longest entry name (bytes of UTF-8).
pub const MAX_NAME: usize = 1024;

fn le16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn le32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn le64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// MS-DOS time and date of a moment (UTC, ms since the epoch): what ZIP entries are stamped
/// with (years before 1980 are 1980).
pub fn dos_time(ms: u64) -> (u16, u16) {
    let (y, mo, d, h, mi, s) = super::civil(ms);
    let y = y.clamp(1980, 2107);
    let time = (h << 11) | (mi << 5) | (s / 2);
    let date = ((y - 1980) << 9) | (mo << 5) | d;
    (time as u16, date as u16)
}

impl ZipWriter {
    /// A new archive whose entries are stamped `modified_ms`.
    pub fn new(modified_ms: u64) -> Self {
        ZipWriter {
            offset: 0,
            entries: Vec::new(),
            open: None,
            dos: dos_time(modified_ms),
            limit: u64::from(u32::MAX),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_zip64_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Bytes emitted so far.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Starts an entry: returns its local header.
    pub fn start(&mut self, name: &str) -> Result<Vec<u8>, BackupError> {
        if self.open.is_some() {
            return Err(BackupError::Zip("an entry is still open"));
        }
        if name.is_empty() || name.len() > MAX_NAME || name.starts_with('/') || name.contains('\\')
        {
            return Err(BackupError::Zip("bad entry name"));
        }
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        le32(&mut h, 0x0403_4B50);
        le16(&mut h, 45); // version needed: ZIP64
        le16(&mut h, 0x0808); // data descriptor follows; UTF-8 name
        le16(&mut h, 0); // stored
        le16(&mut h, self.dos.0);
        le16(&mut h, self.dos.1);
        le32(&mut h, 0); // crc: in the descriptor
        le32(&mut h, u32::MAX); // sizes: in the ZIP64 extra and the descriptor
        le32(&mut h, u32::MAX);
        le16(&mut h, name.len() as u16);
        le16(&mut h, 20);
        h.extend_from_slice(name.as_bytes());
        le16(&mut h, 0x0001);
        le16(&mut h, 16);
        le64(&mut h, 0);
        le64(&mut h, 0);
        self.open = Some(Open {
            name: name.to_owned(),
            offset: self.offset,
            crc: Crc32::default(),
            size: 0,
        });
        self.offset += h.len() as u64;
        Ok(h)
    }

    /// Counts bytes of the open entry (the caller emits them).
    pub fn data(&mut self, data: &[u8]) -> Result<(), BackupError> {
        let open = self
            .open
            .as_mut()
            .ok_or(BackupError::Zip("no entry is open"))?;
        open.crc.update(data);
        open.size += data.len() as u64;
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Ends the open entry: returns its data descriptor.
    pub fn end(&mut self) -> Result<Vec<u8>, BackupError> {
        let open = self
            .open
            .take()
            .ok_or(BackupError::Zip("no entry is open"))?;
        let crc = open.crc.value();
        let mut d = Vec::with_capacity(24);
        le32(&mut d, 0x0807_4B50);
        le32(&mut d, crc);
        le64(&mut d, open.size);
        le64(&mut d, open.size);
        self.offset += d.len() as u64;
        self.entries.push(Central {
            name: open.name,
            crc,
            size: open.size,
            offset: open.offset,
        });
        Ok(d)
    }

    /// A whole entry held in memory: header, the data, descriptor.
    pub fn entry(&mut self, name: &str, data: &[u8]) -> Result<Vec<u8>, BackupError> {
        let mut out = self.start(name)?;
        self.data(data)?;
        out.extend_from_slice(data);
        out.extend(self.end()?);
        Ok(out)
    }

    /// Ends the archive: the central directory and the end records.
    pub fn finish(mut self) -> Result<Vec<u8>, BackupError> {
        if self.open.is_some() {
            return Err(BackupError::Zip("an entry is still open"));
        }
        let start = self.offset;
        let mut out = Vec::new();
        let limit = self.limit;
        for e in &self.entries {
            let big_size = e.size >= limit;
            let big_offset = e.offset >= limit;
            let mut extra = Vec::new();
            if big_size || big_offset {
                le16(&mut extra, 0x0001);
                let len = 16 * u16::from(big_size) + 8 * u16::from(big_offset);
                le16(&mut extra, len);
                if big_size {
                    le64(&mut extra, e.size);
                    le64(&mut extra, e.size);
                }
                if big_offset {
                    le64(&mut extra, e.offset);
                }
            }
            let small = |v: u64, big: bool| if big { u32::MAX } else { v as u32 };
            le32(&mut out, 0x0201_4B50);
            le16(&mut out, (3 << 8) | 45); // made by: Unix, 4.5
            le16(&mut out, 45);
            le16(&mut out, 0x0808);
            le16(&mut out, 0);
            le16(&mut out, self.dos.0);
            le16(&mut out, self.dos.1);
            le32(&mut out, e.crc);
            le32(&mut out, small(e.size, big_size));
            le32(&mut out, small(e.size, big_size));
            le16(&mut out, e.name.len() as u16);
            le16(&mut out, extra.len() as u16);
            le16(&mut out, 0); // comment
            le16(&mut out, 0); // disk
            le16(&mut out, 0); // internal attributes
            le32(&mut out, 0o100_644 << 16); // a regular file, rw-r--r--
            le32(&mut out, small(e.offset, big_offset));
            out.extend_from_slice(e.name.as_bytes());
            out.extend(extra);
        }
        let size = out.len() as u64;
        let count = self.entries.len() as u64;
        let zip64 = count >= 0xFFFF.min(limit) || start >= limit || size >= limit;
        if zip64 {
            let record = start + size;
            le32(&mut out, 0x0606_4B50);
            le64(&mut out, 44);
            le16(&mut out, (3 << 8) | 45);
            le16(&mut out, 45);
            le32(&mut out, 0);
            le32(&mut out, 0);
            le64(&mut out, count);
            le64(&mut out, count);
            le64(&mut out, size);
            le64(&mut out, start);
            le32(&mut out, 0x0706_4B50);
            le32(&mut out, 0);
            le64(&mut out, record);
            le32(&mut out, 1);
        }
        le32(&mut out, 0x0605_4B50);
        le16(&mut out, 0);
        le16(&mut out, 0);
        let n16 = if zip64 { 0xFFFF } else { count as u16 };
        le16(&mut out, n16);
        le16(&mut out, n16);
        le32(&mut out, if zip64 { u32::MAX } else { size as u32 });
        le32(&mut out, if zip64 { u32::MAX } else { start as u32 });
        le16(&mut out, 0);
        self.offset += out.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        let mut c = Crc32::default();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.value(), 0xCBF4_3926);
        assert_eq!(Crc32::default().value(), 0);
    }

    #[test]
    fn dos_time_of_a_known_moment() {
        // 2026-12-07 21:30:42 UTC.
        let (time, date) = dos_time(1_796_679_042_000);
        assert_eq!(time, (21 << 11) | (30 << 5) | 21);
        assert_eq!(date, (46 << 9) | (12 << 5) | 7);
        assert_eq!(dos_time(0).1, (1 << 5) | 1, "before 1980: 1980-01-01");
    }

    #[test]
    fn misuse_is_an_error() {
        let mut z = ZipWriter::new(0);
        assert!(z.data(b"x").is_err());
        assert!(z.end().is_err());
        assert!(z.start("").is_err());
        assert!(z.start("/abs").is_err());
        z.start("a").unwrap();
        assert!(z.start("b").is_err());
        assert!(z.finish().is_err());
    }
}

/// One entry of an archive being read: where its data is and what it must check to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// Its name.
    pub name: String,
    /// Offset of its local header.
    pub header: u64,
    /// Its size (stored: compressed and uncompressed are equal).
    pub size: u64,
    /// Its CRC-32.
    pub crc: u32,
}

/// Where the central directory is: `(offset, size, entries)`, read from the archive's last
/// bytes (`tail`, which ends at `len`). At most the last 64 KiB + 98 bytes are needed.
pub fn find_central(tail: &[u8], len: u64) -> Result<(u64, u64, u64), BackupError> {
    let bad = BackupError::Damaged("this is not a Ferry backup (no ZIP directory at its end)");
    let base = len
        .checked_sub(tail.len() as u64)
        .ok_or(BackupError::Damaged("the backup's end could not be read"))?;
    let at = tail
        .windows(4)
        .rposition(|w| w == [0x50, 0x4B, 0x05, 0x06])
        .ok_or(bad)?;
    let e = &tail[at..];
    if e.len() < 22 {
        return Err(BackupError::Damaged("the backup's end is cut off"));
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |b: &[u8], i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let (count, size, offset) = (u16_at(e, 10), u32_at(e, 12), u32_at(e, 16));
    if count != 0xFFFF && size != u32::MAX && offset != u32::MAX {
        return Ok((u64::from(offset), u64::from(size), u64::from(count)));
    }
    // ZIP64: the locator sits right before the end record and names the ZIP64 end record.
    let loc = at
        .checked_sub(20)
        .filter(|&l| tail[l..l + 4] == [0x50, 0x4B, 0x06, 0x07])
        .ok_or(BackupError::Damaged("the backup's ZIP64 end is missing"))?;
    let record = u64_at(tail, loc + 8);
    let r = record
        .checked_sub(base)
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r + 56 <= tail.len() && tail[r..r + 4] == [0x50, 0x4B, 0x06, 0x06])
        .ok_or(BackupError::Damaged(
            "the backup's ZIP64 end record is missing",
        ))?;
    Ok((
        u64_at(tail, r + 48),
        u64_at(tail, r + 40),
        u64_at(tail, r + 32),
    ))
}

/// The entries of a central directory (`dir`, read from where [`find_central`] said).
pub fn read_central(dir: &[u8], count: u64) -> Result<Vec<ReadEntry>, BackupError> {
    let cut = BackupError::Damaged("the backup's directory is damaged");
    let mut out = Vec::new();
    let mut i = 0usize;
    for _ in 0..count {
        let h = dir
            .get(i..i + 46)
            .ok_or(BackupError::Damaged("the backup's directory is cut off"))?;
        if h[..4] != [0x50, 0x4B, 0x01, 0x02] {
            return Err(cut);
        }
        let u16_at = |i: usize| usize::from(u16::from_le_bytes([h[i], h[i + 1]]));
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        if u16_at(10) != 0 {
            return Err(BackupError::Damaged(
                "the backup holds a compressed entry (Ferry writes none)",
            ));
        }
        let (name_len, extra_len, comment_len) = (u16_at(28), u16_at(30), u16_at(32));
        let name = dir
            .get(i + 46..i + 46 + name_len)
            .and_then(|n| std::str::from_utf8(n).ok())
            .ok_or(BackupError::Damaged("an entry's name is damaged"))?
            .to_owned();
        let extra = dir
            .get(i + 46 + name_len..i + 46 + name_len + extra_len)
            .ok_or(BackupError::Damaged("the backup's directory is cut off"))?;
        let mut size = u64::from(u32_at(24));
        let mut header = u64::from(u32_at(42));
        // ZIP64 extra: the 64-bit values, in order, of the fields that are 0xFFFFFFFF.
        let mut x = 0;
        while x + 4 <= extra.len() {
            let id = u16::from_le_bytes([extra[x], extra[x + 1]]);
            let len = usize::from(u16::from_le_bytes([extra[x + 2], extra[x + 3]]));
            let body = extra.get(x + 4..x + 4 + len).ok_or(cut_extra())?;
            if id == 0x0001 {
                let mut vals = body.chunks_exact(8).map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    u64::from_le_bytes(a)
                });
                if u32_at(24) == u32::MAX {
                    size = vals.next().ok_or(cut_extra())?;
                    // The compressed size (equal: stored).
                    vals.next().ok_or(cut_extra())?;
                }
                if u32_at(42) == u32::MAX {
                    header = vals.next().ok_or(cut_extra())?;
                }
            }
            x += 4 + len;
        }
        out.push(ReadEntry {
            name,
            header,
            size,
            crc: u32_at(16),
        });
        i += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

fn cut_extra() -> BackupError {
    BackupError::Damaged("an entry's ZIP64 field is damaged")
}

/// Where an entry's data starts, from the first 30 bytes of its local header (and the length
/// of what follows them, which those bytes name).
pub fn data_start(entry: &ReadEntry, local: &[u8]) -> Result<u64, BackupError> {
    if local.len() < 30 || local[..4] != [0x50, 0x4B, 0x03, 0x04] {
        return Err(BackupError::Damaged("an entry's header is damaged"));
    }
    let name_len = u64::from(u16::from_le_bytes([local[26], local[27]]));
    let extra_len = u64::from(u16::from_le_bytes([local[28], local[29]]));
    Ok(entry.header + 30 + name_len + extra_len)
}

#[cfg(test)]
mod read_tests {
    use super::*;

    fn archive(limit: u64) -> Vec<u8> {
        let mut z = ZipWriter::new(0).with_zip64_limit(limit);
        let mut out = z.entry("a.txt", b"hello").unwrap();
        out.extend(z.entry("files/big", &[7u8; 10_000]).unwrap());
        out.extend(z.finish().unwrap());
        out
    }

    /// What this writer writes, this reader reads back, with and without ZIP64; damage is a
    /// clear error, never a panic.
    #[test]
    fn reads_back_what_it_wrote() {
        for limit in [u64::from(u32::MAX), 100] {
            let bytes = archive(limit);
            let len = bytes.len() as u64;
            let tail = &bytes[bytes.len().saturating_sub(66_000)..];
            let (offset, size, count) = find_central(tail, len).unwrap();
            let dir = &bytes[offset as usize..(offset + size) as usize];
            let entries = read_central(dir, count).unwrap();
            assert_eq!(entries.len(), 2);
            for (e, want) in entries.iter().zip([&b"hello"[..], &[7u8; 10_000][..]]) {
                let start = data_start(e, &bytes[e.header as usize..]).unwrap() as usize;
                let data = &bytes[start..start + e.size as usize];
                assert_eq!(data, want, "{}", e.name);
                let mut crc = Crc32::default();
                crc.update(data);
                assert_eq!(crc.value(), e.crc);
            }
            // Damage anywhere in the end or the directory: an error.
            for cut in 1..60 {
                let short = &bytes[..bytes.len() - cut];
                let tail = &short[short.len().saturating_sub(66_000)..];
                if let Ok((offset, size, count)) = find_central(tail, short.len() as u64)
                    && let Some(dir) = short.get(offset as usize..(offset + size) as usize)
                {
                    let _ = read_central(dir, count);
                }
            }
        }
        assert!(find_central(b"not a zip at all", 16).is_err());
    }
}
