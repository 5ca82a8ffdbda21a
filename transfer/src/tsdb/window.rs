//! Positioned reads from a file through one buffered window.
//!
//! A block's index and chunk segments can each be hundreds of megabytes, so they are not read
//! into memory whole. Reading a block walks both files mostly forwards (series in index order,
//! and chunk references increase with them), so one window of [`WINDOW`] bytes, refilled where
//! a read falls outside it, turns the many small reads into few large ones and bounds memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// How many bytes a refill reads: large enough that a walk through a file costs few system
/// calls, small enough not to matter beside the series being decoded.
const WINDOW: usize = 1 << 20;

/// An open file and the window of it last read.
#[derive(Debug)]
pub(crate) struct FileWindow {
    path: PathBuf,
    file: File,
    len: u64,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl FileWindow {
    pub(crate) fn open(path: &Path) -> Result<FileWindow> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("reading the size of {}", path.display()))?.len();
        Ok(FileWindow { path: path.to_owned(), file, len, start: 0, buf: Vec::new() })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Exactly `n` bytes at `offset`; an error when the file ends before them.
    pub(crate) fn read(&mut self, offset: u64, n: usize) -> Result<&[u8]> {
        let end = offset.checked_add(n as u64).filter(|&end| end <= self.len);
        let Some(end) = end else {
            bail!("{}: offset {offset}: wanted {n} bytes, the file ends at {}", self.path.display(), self.len);
        };
        let buffered = offset >= self.start && end <= self.start + self.buf.len() as u64;
        if !buffered {
            self.fill(offset, n.max(WINDOW))?;
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }

    /// Up to `n` bytes at `offset`, fewer where the file ends: for a varint length prefix, whose
    /// size is unknown until it is decoded.
    pub(crate) fn read_up_to(&mut self, offset: u64, n: usize) -> Result<&[u8]> {
        let available = self.len.saturating_sub(offset).min(n as u64) as usize;
        if available == 0 {
            bail!("{}: offset {offset} is at or past the end of the file ({} bytes)", self.path.display(), self.len);
        }
        self.read(offset, available)
    }

    /// `n` bytes at `offset` into a buffer of their own, leaving the window alone: for the
    /// sections read once when a block is opened.
    pub(crate) fn read_owned(&mut self, offset: u64, n: usize) -> Result<Vec<u8>> {
        if offset.checked_add(n as u64).is_none_or(|end| end > self.len) {
            bail!("{}: offset {offset}: wanted {n} bytes, the file ends at {}", self.path.display(), self.len);
        }
        let mut out = vec![0; n];
        self.read_exact_at(offset, &mut out)?;
        Ok(out)
    }

    /// Refills the window with up to `want` bytes from `offset` (fewer at the end of the file).
    fn fill(&mut self, offset: u64, want: usize) -> Result<()> {
        let n = (self.len - offset).min(want as u64) as usize;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(n, 0);
        // On failure the window is left empty, so nothing stale is ever served.
        self.start = offset;
        self.read_exact_at(offset, &mut buf)?;
        self.buf = buf;
        Ok(())
    }

    fn read_exact_at(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(out))
            .with_context(|| format!("{}: reading {} bytes at offset {offset}", self.path.display(), out.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_and_across_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * WINDOW + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut w = FileWindow::open(&path).unwrap();
        assert_eq!(w.len(), data.len() as u64);
        for &(offset, n) in &[(0, 10), (5, 3), (WINDOW - 2, 4), (10, 2 * WINDOW), (data.len() - 1, 1)] {
            assert_eq!(w.read(offset as u64, n).unwrap(), &data[offset..offset + n]);
        }
        assert_eq!(w.read_up_to(data.len() as u64 - 2, 10).unwrap(), &data[data.len() - 2..]);
        assert_eq!(w.read_owned(7, 9).unwrap(), &data[7..16]);
        assert!(w.read(data.len() as u64 - 1, 2).is_err());
        assert!(w.read(u64::MAX, 2).is_err());
        assert!(w.read_up_to(data.len() as u64, 1).is_err());
        assert!(w.read_owned(u64::MAX - 1, 4).is_err());
    }
}
