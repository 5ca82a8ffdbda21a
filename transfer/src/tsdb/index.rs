//! A block's `index` file: its series, their labels, and where their chunks are (Prometheus's
//! `tsdb/index`, `tsdb/docs/format/index.md`).
//!
//! ```text
//! magic(0xBAAAD700) <4b> │ version <1b>
//! symbol table │ series │ label indices │ postings │ label offset table │ postings offset table │ TOC
//! ```
//!
//! Reading every series needs three of the sections: the symbol table (every label name and
//! value, which series entries refer to by number), the postings offset table (to find the
//! postings list of the empty label pair, which holds every series id, in label order) and the
//! series entries themselves. The label indices and the label offset table are no longer used
//! by Prometheus and are not read. Each section ends with a CRC32-C of its contents, which is
//! checked before anything in it is used.
//!
//! Format 2 (Prometheus 2.x and 3.x) numbers symbols by position and aligns series entries to
//! 16 bytes, so a series id is its entry's offset / 16. Format 1 (Prometheus 2.0 to 2.7 or so)
//! refers to both by byte offset and is otherwise the same; format 3 is read as 2, as Prometheus
//! does (it reserved the number for a planned change of postings encoding).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::encoding::{Decbuf, check_crc, uvarint};
use super::window::FileWindow;

const MAGIC_INDEX: u32 = 0xBAAA_D700;
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
/// Magic and version.
const HEADER_LEN: u64 = 5;
/// Six section offsets and a CRC.
const TOC_LEN: usize = 6 * 8 + 4;
/// Series entries of format 2 start at multiples of this; an entry's id is its offset / 16.
const SERIES_ALIGN: u64 = 16;
/// The length of a series entry is a `<uvarint>` of at most this many bytes (Go's
/// `MaxVarintLen32`).
const MAX_VARINT_LEN32: usize = 5;

/// A chunk of a series, as the index describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    /// Timestamps of the chunk's first and last samples (inclusive).
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    /// Segment file number << 32 | offset in it (see `chunks`).
    pub(crate) chunk_ref: u64,
}

/// A series entry: labels sorted by name, and chunks in time order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) chunks: Vec<ChunkMeta>,
}

/// The parts of the table of contents at the end of the file that reading every series needs:
/// where sections start (0 for a section the file does not have).
#[derive(Debug)]
struct Toc {
    symbols: u64,
    series: u64,
    postings_table: u64,
}

/// An opened index: what is read once up front. Series entries are read as they are iterated,
/// through a [`FileWindow`] of the caller's.
#[derive(Debug)]
pub(crate) struct Index {
    path: PathBuf,
    version: u8,
    symbols: Symbols,
    /// Every series id, from the postings list of the empty label pair.
    series: Vec<u32>,
}

impl Index {
    /// Reads the header, table of contents, symbol table and series ids of the index at `path`,
    /// checking their checksums.
    pub(crate) fn open(path: &Path) -> Result<Index> {
        let mut file = FileWindow::open(path)?;
        let p = path.display();
        if file.len() < HEADER_LEN + TOC_LEN as u64 {
            bail!("{p}: {} bytes is too short for an index", file.len());
        }
        let mut header = Decbuf::new(file.read(0, HEADER_LEN as usize)?, 0);
        let magic = header.be32()?;
        if magic != MAGIC_INDEX {
            bail!("{p}: offset 0: bad magic number {magic:08x} (want {MAGIC_INDEX:08x})");
        }
        let version = header.bytes(1)?[0];
        if ![FORMAT_V1, FORMAT_V2, FORMAT_V3].contains(&version) {
            bail!("{p}: offset 4: unknown index format version {version}");
        }

        let toc = read_toc(&mut file)?;
        let symbols = if toc.symbols == 0 {
            Symbols::default()
        } else {
            let (content, base) = read_section(&mut file, toc.symbols, "symbol table")?;
            Symbols::parse(content, base, version).with_context(|| format!("{p}: symbol table"))?
        };
        let series = match all_postings_offset(&mut file, toc.postings_table)? {
            Some(offset) => read_postings(&mut file, offset)?,
            // As in Prometheus, an index without the list has no series.
            None => Vec::new(),
        };
        if !series.is_empty() && toc.series == 0 {
            bail!("{p}: the postings list has {} series, but the index has no series section", series.len());
        }
        Ok(Index { path: path.to_owned(), version, symbols, series })
    }

    /// Every series id, in label order.
    pub(crate) fn series_ids(&self) -> &[u32] {
        &self.series
    }

    /// A window to read series entries through; each iteration has its own.
    pub(crate) fn window(&self) -> Result<FileWindow> {
        FileWindow::open(&self.path)
    }

    /// Reads and decodes the entry of series `id`.
    pub(crate) fn read_series(&self, file: &mut FileWindow, id: u32) -> Result<SeriesEntry> {
        let offset = if self.version == FORMAT_V1 { u64::from(id) } else { u64::from(id) * SERIES_ALIGN };
        let what = || format!("{}: series {id} at offset {offset}", self.path.display());
        let (len, len_len) = uvarint(file.read_up_to(offset, MAX_VARINT_LEN32).with_context(what)?)
            .filter(|&(_, n)| n <= MAX_VARINT_LEN32)
            .with_context(|| format!("{}: bad length", what()))?;
        let len = usize::try_from(len).with_context(what)?;
        let content_at = offset + len_len as u64;
        let bytes = file.read(content_at, len.saturating_add(4)).with_context(what)?;
        let (content, crc) = bytes.split_at(len);
        check_crc(content, crc, what)?;
        decode_series(Decbuf::new(content, content_at), &self.symbols).with_context(what)
    }
}

/// Reads the table of contents from the end of the file.
fn read_toc(file: &mut FileWindow) -> Result<Toc> {
    let at = file.len() - TOC_LEN as u64;
    let path = file.path().to_owned();
    let bytes = file.read(at, TOC_LEN)?;
    let (content, crc) = bytes.split_at(TOC_LEN - 4);
    check_crc(content, crc, || format!("{}: table of contents at offset {at}", path.display()))?;
    let mut d = Decbuf::new(content, at);
    let symbols = d.be64()?;
    let series = d.be64()?;
    // The label indices, the label offset table and the start of the postings.
    d.bytes(3 * 8)?;
    Ok(Toc { symbols, series, postings_table: d.be64()? })
}

/// Reads a `len <4b> │ contents │ CRC32 <4b>` section at `offset`, checks its checksum, and
/// returns its contents and their file offset.
fn read_section(file: &mut FileWindow, offset: u64, what: &str) -> Result<(Vec<u8>, u64)> {
    let path = file.path().to_owned();
    let name = || format!("{}: {what} at offset {offset}", path.display());
    let len = Decbuf::new(file.read(offset, 4).with_context(name)?, offset).be32()? as usize;
    let mut bytes = file.read_owned(offset + 4, len + 4).with_context(name)?;
    let (content, crc) = bytes.split_at(len);
    check_crc(content, crc, name)?;
    bytes.truncate(len);
    Ok((bytes, offset + 4))
}

/// Finds the postings list of the empty label pair (`"" = ""`), which lists every series, in
/// the postings offset table at `offset`.
fn all_postings_offset(file: &mut FileWindow, offset: u64) -> Result<Option<u64>> {
    if offset == 0 {
        return Ok(None);
    }
    let (table, base) = read_section(file, offset, "postings offset table")?;
    let path = file.path().to_owned();
    let what = || format!("{}: postings offset table at offset {offset}", path.display());
    let mut d = Decbuf::new(&table, base);
    let entries = d.be32().with_context(what)?;
    // The table is sorted by name and value, so in format 2 the empty pair comes first; format
    // 1's table is not sorted, hence the search.
    for _ in 0..entries {
        let at = d.offset();
        let entry = (|| {
            let keys = d.uvarint()?;
            if keys != 2 {
                bail!("{keys} keys in an entry, want 2");
            }
            Ok((d.uvarint_bytes()?, d.uvarint_bytes()?, d.uvarint()?))
        })();
        let (name, value, postings) = entry.with_context(|| format!("{}: entry at offset {at}", what()))?;
        if name.is_empty() && value.is_empty() {
            return Ok(Some(postings));
        }
    }
    Ok(None)
}

/// Reads the postings list at `offset`: `#entries <4b>` series ids of 4 bytes each.
fn read_postings(file: &mut FileWindow, offset: u64) -> Result<Vec<u32>> {
    let (list, base) = read_section(file, offset, "postings list")?;
    let mut d = Decbuf::new(&list, base);
    let entries = d.be32()? as usize;
    if d.remaining() != entries * 4 {
        bail!(
            "{}: postings list at offset {offset}: {entries} entries need {} bytes, the list has {}",
            file.path().display(),
            entries * 4,
            d.remaining()
        );
    }
    (0..entries).map(|_| d.be32()).collect()
}

/// Decodes a series entry's contents: labels as pairs of symbol references, then chunk metas,
/// delta-encoded against the previous chunk (its `maxt` and its reference).
fn decode_series(mut d: Decbuf, symbols: &Symbols) -> Result<SeriesEntry> {
    let count = d.uvarint()?;
    // Each label takes at least two bytes: a corrupt count must not size an allocation.
    let mut labels = Vec::with_capacity((count as usize).min(d.remaining() / 2));
    for _ in 0..count {
        let at = d.offset();
        let name = symbols.lookup(d.uvarint32()?).with_context(|| format!("label name at offset {at}"))?;
        let at = d.offset();
        let value = symbols.lookup(d.uvarint32()?).with_context(|| format!("label value at offset {at}"))?;
        labels.push((name.to_owned(), value.to_owned()));
    }

    let count = d.uvarint()?;
    let mut chunks = Vec::with_capacity((count as usize).min(d.remaining() / 3));
    // The arithmetic wraps as Go's does: a corrupt entry gives odd numbers, not a panic.
    let mut prev: Option<ChunkMeta> = None;
    for _ in 0..count {
        let meta = match prev {
            None => {
                let min_time = d.varint()?;
                let max_time = min_time.wrapping_add(d.uvarint()? as i64);
                ChunkMeta { min_time, max_time, chunk_ref: d.uvarint()? }
            }
            Some(prev) => {
                let min_time = prev.max_time.wrapping_add(d.uvarint()? as i64);
                let max_time = min_time.wrapping_add(d.uvarint()? as i64);
                ChunkMeta { min_time, max_time, chunk_ref: prev.chunk_ref.wrapping_add_signed(d.varint()?) }
            }
        };
        chunks.push(meta);
        prev = Some(meta);
    }
    Ok(SeriesEntry { labels, chunks })
}

/// The symbol table: every string that occurs in a label, sorted, each stored once.
///
/// Kept as the section's bytes plus where each symbol starts, rather than as a `String` each:
/// a large block has millions of symbols, and this costs 4 bytes a symbol over the section.
#[derive(Debug, Default)]
struct Symbols {
    /// The section's contents: `#symbols <4b>`, then `len <uvarint> │ bytes` per symbol.
    data: Vec<u8>,
    /// Where each symbol's length prefix is in `data`, ascending.
    starts: Vec<u32>,
    /// File offset of `data[0]`: format 1 refers to symbols by file offset.
    base: u64,
    version: u8,
}

impl Symbols {
    /// Indexes the section's contents, checking that every symbol is within it and is UTF-8
    /// (Prometheus only accepts UTF-8 labels, so anything else is corruption).
    fn parse(data: Vec<u8>, base: u64, version: u8) -> Result<Symbols> {
        let mut d = Decbuf::new(&data, base);
        let count = d.be32()? as usize;
        // Each symbol takes at least a byte.
        let mut starts = Vec::with_capacity(count.min(d.remaining()));
        for _ in 0..count {
            let start = d.offset() - base;
            let at = d.offset();
            let bytes = d.uvarint_bytes()?;
            std::str::from_utf8(bytes).with_context(|| format!("symbol at offset {at} is not UTF-8"))?;
            starts.push(start as u32);
        }
        Ok(Symbols { data, starts, base, version })
    }

    /// The symbol `reference` points to: its number (format 2) or its file offset (format 1).
    fn lookup(&self, reference: u32) -> Result<&str> {
        let index = if self.version == FORMAT_V1 {
            u64::from(reference)
                .checked_sub(self.base)
                .and_then(|rel| u32::try_from(rel).ok())
                .and_then(|rel| self.starts.binary_search(&rel).ok())
        } else {
            Some(reference as usize).filter(|&i| i < self.starts.len())
        };
        let Some(index) = index else {
            bail!("no symbol {reference} (the table has {})", self.starts.len());
        };
        let start = self.starts[index] as usize;
        let mut d = Decbuf::new(&self.data[start..], self.base + start as u64);
        // Both were checked by `parse`; errors here would be a bug, but are still not panics.
        Ok(std::str::from_utf8(d.uvarint_bytes()?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uvarint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn varint(out: &mut Vec<u8>, v: i64) {
        uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    fn symbol_table(symbols: &[&str]) -> Vec<u8> {
        let mut out = (symbols.len() as u32).to_be_bytes().to_vec();
        for s in symbols {
            uvarint(&mut out, s.len() as u64);
            out.extend(s.as_bytes());
        }
        out
    }

    #[test]
    fn symbols_by_number_and_by_offset() {
        let table = symbol_table(&["", "__name__", "a", "up"]);
        let v2 = Symbols::parse(table.clone(), 1000, FORMAT_V2).unwrap();
        assert_eq!(v2.lookup(0).unwrap(), "");
        assert_eq!(v2.lookup(3).unwrap(), "up");
        assert!(v2.lookup(4).is_err());
        // Format 1: by file offset; "__name__" starts after the count (4 bytes) and "" (1 byte).
        let v1 = Symbols::parse(table, 1000, FORMAT_V1).unwrap();
        assert_eq!(v1.lookup(1005).unwrap(), "__name__");
        assert_eq!(v1.lookup(1004).unwrap(), "");
        assert!(v1.lookup(1006).is_err(), "not the start of a symbol");
        assert!(v1.lookup(10).is_err());

        let mut not_utf8 = symbol_table(&["ok", "x"]);
        *not_utf8.last_mut().unwrap() = 0xff;
        let err = format!("{:#}", Symbols::parse(not_utf8, 0, FORMAT_V2).unwrap_err());
        assert!(err.contains("symbol at offset 7 is not UTF-8"), "{err}");
        let mut short = symbol_table(&["abc"]);
        short.pop();
        assert!(Symbols::parse(short, 0, FORMAT_V2).is_err());
    }

    #[test]
    fn series_entries_decode_deltas() {
        let symbols = Symbols::parse(symbol_table(&["__name__", "job", "node", "up"]), 0, FORMAT_V2).unwrap();
        let mut entry = Vec::new();
        uvarint(&mut entry, 2);
        for r in [0, 3, 1, 2] {
            uvarint(&mut entry, r);
        }
        uvarint(&mut entry, 3);
        // [-100, 50] at ref 8; [60, 60] at ref 200; [61, 1000] at ref 150 (a negative delta, which
        // the format allows in the encoding if not in the ordering).
        varint(&mut entry, -100);
        uvarint(&mut entry, 150);
        uvarint(&mut entry, 8);
        uvarint(&mut entry, 10);
        uvarint(&mut entry, 0);
        varint(&mut entry, 192);
        uvarint(&mut entry, 1);
        uvarint(&mut entry, 939);
        varint(&mut entry, -50);
        let series = decode_series(Decbuf::new(&entry, 0), &symbols).unwrap();
        assert_eq!(series.labels, [("__name__".into(), "up".into()), ("job".into(), "node".into())]);
        let meta = |min_time, max_time, chunk_ref| ChunkMeta { min_time, max_time, chunk_ref };
        assert_eq!(series.chunks, [meta(-100, 50, 8), meta(60, 60, 200), meta(61, 1000, 150)]);

        for len in 0..entry.len() {
            assert!(decode_series(Decbuf::new(&entry[..len], 0), &symbols).is_err(), "truncated to {len}");
        }
        let mut unknown = entry.clone();
        unknown[1] = 9;
        let err = format!("{:#}", decode_series(Decbuf::new(&unknown, 0), &symbols).unwrap_err());
        assert!(err.contains("label name at offset 1") && err.contains("no symbol 9"), "{err}");
    }

    #[test]
    fn garbage_series_entries_never_panic() {
        let symbols = Symbols::parse(symbol_table(&["a", "b"]), 0, FORMAT_V2).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes: Vec<u8> = (0..(x % 40)).map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8).collect();
            let _ = decode_series(Decbuf::new(&bytes, 0), &symbols);
        }
    }
}
