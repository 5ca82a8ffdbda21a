//! A block's chunk segment files, `chunks/000001`, `chunks/000002`, … (Prometheus's
//! `tsdb/chunks`, `tsdb/docs/format/chunks.md`).
//!
//! ```text
//! segment: magic(0x85BD40DD) <4b> │ version(1) <1b> │ padding(0) <3b> │ chunk*
//! chunk:   len <uvarint> │ encoding <1b> │ data <len bytes> │ CRC32-C of encoding and data <4b>
//! ```
//!
//! The index refers to a chunk as `segment << 32 | offset`, where `segment` counts the files in
//! name order from 0 (so `000001` is segment 0) and `offset` is where its `len` starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::encoding::{Decbuf, check_crc, uvarint};
use super::window::FileWindow;

const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
const CHUNKS_FORMAT_V1: u8 = 1;
/// Magic, version and padding.
const SEGMENT_HEADER_LEN: u64 = 8;
/// A chunk's `len` is a uvarint of at most this many bytes (Go's `MaxVarintLen32`).
const MAX_LEN_LEN: usize = 5;

/// Chunk encodings (`tsdb/chunkenc/chunk.go`). Only XOR is decoded; the others are counted.
pub(crate) const ENC_NONE: u8 = 0;
pub(crate) const ENC_XOR: u8 = 1;
// 2 histogram, 3 float histogram, 4 XOR2 (floats with start timestamps, Prometheus 3.x, opt-in),
// 5 histogram with start timestamps, 6 float histogram with start timestamps.

/// A block's segment files, in order; each was checked to have a valid header.
#[derive(Debug)]
pub(crate) struct Segments {
    paths: Vec<PathBuf>,
}

impl Segments {
    /// Lists the segment files in `dir` (names made of digits, as Prometheus requires) and checks
    /// their headers.
    pub(crate) fn open(dir: &Path) -> Result<Segments> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
                paths.push(entry.path());
            }
        }
        // Prometheus numbers segments by their position in the directory listing, which Go sorts
        // by name.
        paths.sort();
        for path in &paths {
            let mut file = FileWindow::open(path)?;
            let mut header = Decbuf::new(file.read(0, SEGMENT_HEADER_LEN as usize)?, 0);
            let magic = header.be32()?;
            if magic != MAGIC_CHUNKS {
                bail!("{}: offset 0: bad magic number {magic:08x} (want {MAGIC_CHUNKS:08x})", path.display());
            }
            let version = header.bytes(1)?[0];
            if version != CHUNKS_FORMAT_V1 {
                bail!("{}: offset 4: unknown chunks format version {version}", path.display());
            }
        }
        Ok(Segments { paths })
    }

    /// A reader that keeps one segment file open at a time.
    pub(crate) fn reader(&self) -> ChunkReader<'_> {
        ChunkReader { segments: self, open: None }
    }
}

/// A chunk's encoding and data.
pub(crate) struct Chunk<'a> {
    pub(crate) encoding: u8,
    pub(crate) data: &'a [u8],
}

/// Reads chunks by reference. Chunk references rise through a block in index order, so a walk
/// through the series opens each segment once and reads it front to back.
pub(crate) struct ChunkReader<'a> {
    segments: &'a Segments,
    open: Option<(usize, FileWindow)>,
}

impl ChunkReader<'_> {
    /// Reads the chunk `chunk_ref` points to and checks its checksum.
    pub(crate) fn read(&mut self, chunk_ref: u64) -> Result<Chunk<'_>> {
        let segment = (chunk_ref >> 32) as usize;
        let offset = chunk_ref & 0xffff_ffff;
        let segments = self.segments;
        let Some(path) = segments.paths.get(segment) else {
            bail!("chunk reference {chunk_ref:#x}: no segment {segment} (the block has {})", segments.paths.len());
        };
        if offset < SEGMENT_HEADER_LEN {
            bail!("{}: chunk reference {chunk_ref:#x}: offset {offset} is inside the header", path.display());
        }
        if self.open.as_ref().is_none_or(|(open, _)| *open != segment) {
            self.open = Some((segment, FileWindow::open(path)?));
        }
        let Some((_, file)) = self.open.as_mut() else { unreachable!("opened above") };

        let what = || format!("{}: chunk at offset {offset}", path.display());
        let (len, len_len) = uvarint(file.read_up_to(offset, MAX_LEN_LEN).with_context(what)?)
            .filter(|&(_, n)| n <= MAX_LEN_LEN)
            .with_context(|| format!("{}: bad length", what()))?;
        // Encoding byte, data, checksum.
        let total = usize::try_from(len).ok().and_then(|len| len.checked_add(1 + 4)).with_context(what)?;
        let bytes = file.read(offset + len_len as u64, total).with_context(what)?;
        let (covered, crc) = bytes.split_at(total - 4);
        check_crc(covered, crc, what)?;
        Ok(Chunk { encoding: covered[0], data: &covered[1..] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment file holding `chunks` (encoding, data); returns it and each chunk's offset.
    fn segment(chunks: &[(u8, &[u8])]) -> (Vec<u8>, Vec<u64>) {
        let mut out = MAGIC_CHUNKS.to_be_bytes().to_vec();
        out.extend([CHUNKS_FORMAT_V1, 0, 0, 0]);
        let mut offsets = Vec::new();
        for (encoding, data) in chunks {
            offsets.push(out.len() as u64);
            assert!(data.len() < 128);
            out.push(data.len() as u8);
            let start = out.len();
            out.push(*encoding);
            out.extend(*data);
            let crc = crc32c::crc32c(&out[start..]);
            out.extend(crc.to_be_bytes());
        }
        (out, offsets)
    }

    #[test]
    fn reads_chunks_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (first, first_offsets) = segment(&[(ENC_XOR, b"abc"), (2, b"histogram")]);
        let (second, second_offsets) = segment(&[(ENC_XOR, b"")]);
        std::fs::write(dir.path().join("000001"), first).unwrap();
        std::fs::write(dir.path().join("000002"), second).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let mut reader = segments.reader();
        let chunk = reader.read(first_offsets[1]).unwrap();
        assert_eq!((chunk.encoding, chunk.data), (2, &b"histogram"[..]));
        let chunk = reader.read(1 << 32 | second_offsets[0]).unwrap();
        assert_eq!((chunk.encoding, chunk.data), (ENC_XOR, &b""[..]));
        let chunk = reader.read(first_offsets[0]).unwrap();
        assert_eq!((chunk.encoding, chunk.data), (ENC_XOR, &b"abc"[..]));

        let err = format!("{:#}", reader.read(2 << 32 | 8).err().unwrap());
        assert!(err.contains("no segment 2"), "{err}");
        assert!(reader.read(3).is_err(), "inside the header");
        assert!(reader.read(first_offsets[0] + 1).is_err(), "not the start of a chunk");
        assert!(reader.read(1 << 32 | 1000).is_err(), "past the end");
    }

    #[test]
    fn bad_headers_and_checksums_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (good, offsets) = segment(&[(ENC_XOR, b"abcdef")]);
        let path = dir.path().join("000001");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            std::fs::write(&path, &bad).unwrap();
            let result = Segments::open(dir.path()).and_then(|s| s.reader().read(offsets[0]).map(|c| c.data.to_vec()));
            match i {
                // The header's padding is not checked, by Prometheus either.
                5..=7 => assert_eq!(result.unwrap(), b"abcdef"),
                _ => assert!(result.is_err(), "flipped byte {i}"),
            }
        }
        std::fs::write(&path, &good[..6]).unwrap();
        assert!(Segments::open(dir.path()).is_err());
        let mut bad = good.clone();
        bad[good.len() - 1] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = format!("{:#}", Segments::open(dir.path()).unwrap().reader().read(offsets[0]).err().unwrap());
        assert!(err.contains("000001: chunk at offset 8: checksum mismatch"), "{err}");
    }
}
