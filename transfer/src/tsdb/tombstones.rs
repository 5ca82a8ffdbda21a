//! A block's `tombstones` file: the time ranges deleted from its series, which readers must
//! leave out (Prometheus's `tsdb/tombstones`, `tsdb/docs/format/tombstones.md`).
//!
//! ```text
//! magic(0x0130BA30) <4b> │ version(1) <1b> │ tombstone* │ CRC32 <4b>
//! tombstone: series ref <uvarint64> │ mint <varint64> │ maxt <varint64>
//! ```
//!
//! Prometheus's format document also mentions a trailing offset to the tombstones; no version
//! of Prometheus 2 or 3 writes one, so this follows the code (`ReadTombstones`), as Prometheus
//! does. The CRC covers the tombstones only: not the magic, nor the version byte.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::encoding::{Decbuf, check_crc};

const MAGIC_TOMBSTONES: u32 = 0x0130_BA30;
const TOMBSTONES_FORMAT_V1: u8 = 1;
/// Magic and version.
const HEADER_LEN: usize = 5;
const CRC_LEN: usize = 4;

/// A deleted time range, inclusive at both ends (`[mint, maxt]`, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interval {
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
}

impl Interval {
    pub(crate) fn contains(&self, t: i64) -> bool {
        self.min_time <= t && t <= self.max_time
    }
}

/// The deleted ranges of a block's series, by series id (the id postings hold, which in index
/// format 2 is the series entry's offset / 16).
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    /// Sorted and merged: no two of a series' intervals overlap or touch.
    by_series: HashMap<u64, Vec<Interval>>,
}

impl Tombstones {
    /// Reads `path`; a block without the file has no tombstones.
    pub(crate) fn read(path: &Path) -> Result<Tombstones> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tombstones::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Tombstones::parse(&bytes).with_context(|| format!("{}", path.display()))
    }

    /// Parses a whole tombstones file.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Tombstones> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            bail!("{} bytes is too short for a tombstones file", bytes.len());
        }
        let mut header = Decbuf::new(&bytes[..HEADER_LEN], 0);
        let magic = header.be32()?;
        if magic != MAGIC_TOMBSTONES {
            bail!("offset 0: bad magic number {magic:08x} (want {MAGIC_TOMBSTONES:08x})");
        }
        let version = header.bytes(1)?[0];
        if version != TOMBSTONES_FORMAT_V1 {
            bail!("offset 4: unknown tombstones format version {version}");
        }
        let (body, crc) = bytes[HEADER_LEN..].split_at(bytes.len() - HEADER_LEN - CRC_LEN);
        check_crc(body, crc, || "tombstones".into())?;

        let mut by_series: HashMap<u64, Vec<Interval>> = HashMap::new();
        let mut d = Decbuf::new(body, HEADER_LEN as u64);
        while d.remaining() > 0 {
            let at = d.offset();
            let (series, min_time, max_time) = (|| Ok::<_, anyhow::Error>((d.uvarint()?, d.varint()?, d.varint()?)))()
                .with_context(|| format!("tombstone at offset {at}"))?;
            by_series.entry(series).or_default().push(Interval { min_time, max_time });
        }
        for intervals in by_series.values_mut() {
            merge(intervals);
        }
        Ok(Tombstones { by_series })
    }

    /// The deleted ranges of series `id`, sorted; empty for most series.
    pub(crate) fn get(&self, id: u64) -> &[Interval] {
        self.by_series.get(&id).map_or(&[], Vec::as_slice)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_series.values().map(Vec::len).sum()
    }
}

/// Sorts `intervals` and merges those that overlap or touch (timestamps are whole milliseconds,
/// so `[1, 5]` and `[6, 9]` together delete `[1, 9]`), as Prometheus's `Intervals.Add` does.
fn merge(intervals: &mut Vec<Interval>) {
    intervals.sort_by_key(|i| i.min_time);
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for &i in intervals.iter() {
        match merged.last_mut() {
            Some(last) if i.min_time <= last.max_time.saturating_add(1) => {
                last.max_time = last.max_time.max(i.max_time)
            }
            _ => merged.push(i),
        }
    }
    *intervals = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tombstones file with `stones` (series id, mint, maxt), built by the documented format.
    fn file(stones: &[(u64, i64, i64)]) -> Vec<u8> {
        fn uvarint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push(v as u8 | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        let mut body = Vec::new();
        for &(series, mint, maxt) in stones {
            uvarint(&mut body, series);
            uvarint(&mut body, ((mint << 1) ^ (mint >> 63)) as u64);
            uvarint(&mut body, ((maxt << 1) ^ (maxt >> 63)) as u64);
        }
        let mut out = MAGIC_TOMBSTONES.to_be_bytes().to_vec();
        out.push(TOMBSTONES_FORMAT_V1);
        out.extend(&body);
        out.extend(crc32c::crc32c(&body).to_be_bytes());
        out
    }

    fn iv(min_time: i64, max_time: i64) -> Interval {
        Interval { min_time, max_time }
    }

    #[test]
    fn parses_the_documented_format() {
        // What Prometheus writes for a block without deletions.
        let empty = [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0];
        assert_eq!(Tombstones::parse(&empty).unwrap().len(), 0);

        let t = Tombstones::parse(&file(&[(3, 100, 200), (1 << 40, i64::MIN, i64::MAX), (3, -50, -10), (7, 5, 5)]))
            .unwrap();
        assert_eq!(t.get(3), [iv(-50, -10), iv(100, 200)]);
        assert_eq!(t.get(1 << 40), [iv(i64::MIN, i64::MAX)]);
        assert_eq!(t.get(7), [iv(5, 5)]);
        assert!(t.get(7)[0].contains(5) && !t.get(7)[0].contains(6) && !t.get(7)[0].contains(4));
        assert_eq!(t.get(4), []);
    }

    #[test]
    fn overlapping_and_touching_ranges_merge() {
        let t = Tombstones::parse(&file(&[(1, 10, 20), (1, 21, 30), (1, 15, 16), (1, 40, 50), (1, 0, 5), (1, 45, 60)]))
            .unwrap();
        assert_eq!(t.get(1), [iv(0, 5), iv(10, 30), iv(40, 60)]);
        let t = Tombstones::parse(&file(&[(1, i64::MIN, 0), (1, 1, i64::MAX)])).unwrap();
        assert_eq!(t.get(1), [iv(i64::MIN, i64::MAX)]);
    }

    #[test]
    fn corruption_is_an_error() {
        let good = file(&[(3, 100, 200), (9, 1, 2)]);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            assert!(Tombstones::parse(&bad).is_err(), "flipped byte {i}");
        }
        for len in 0..good.len() {
            assert!(Tombstones::parse(&good[..len]).is_err(), "truncated to {len}");
        }
        // A checksum that matches a body ending inside a tombstone.
        let mut cut = good[..HEADER_LEN + 2].to_vec();
        cut.extend(crc32c::crc32c(&good[HEADER_LEN..HEADER_LEN + 2]).to_be_bytes());
        let err = format!("{:#}", Tombstones::parse(&cut).unwrap_err());
        assert!(err.contains("tombstone at offset 5"), "{err}");
    }

    #[test]
    fn a_missing_file_means_no_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Tombstones::read(&dir.path().join("tombstones")).unwrap().len(), 0);
        std::fs::write(dir.path().join("tombstones"), [1, 2, 3]).unwrap();
        let err = format!("{:#}", Tombstones::read(&dir.path().join("tombstones")).unwrap_err());
        assert!(err.contains("tombstones") && err.contains("too short"), "{err}");
    }
}
