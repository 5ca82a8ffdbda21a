//! `amber verify`: every sealed block read back through its decoder (CRC32 first, then every
//! column, then its timestamps against its window), and every record of the head's log checked
//! as replay reads it, over a [`ReadOnlyStore`] (safe beside a running Amber). Each corrupt
//! block is reported with its tenant, series and window.

use crate::SeriesId;
use crate::block;
use crate::error::Result;
use crate::inspect::{BLOCK_CFS, Progress, ReadOnlyStore, scan_options};
use crate::keys;
use crate::labels::Labels;
use crate::wal;

/// Blocks read per batch: decoded on several threads, then their problems collected.
const BATCH_BLOCKS: usize = 4096;
/// Bytes of blocks read per batch, at most (a batch of large histogram blocks stays bounded).
const BATCH_BYTES: usize = 64 << 20;

/// What `amber verify` found.
#[derive(Debug, Clone, Default)]
pub struct Verification {
    /// Blocks read per block column family: `(column family, blocks, bytes)`.
    pub blocks_checked: Vec<(&'static str, u64, u64)>,
    pub corrupt_blocks: Vec<CorruptBlock>,
    /// Problems not tied to one block: a key that is not `window series`, a column family whose
    /// scan RocksDB stopped (a corrupt or missing table file), a log segment that cannot be read.
    pub other_problems: Vec<String>,
    pub wal_segments_checked: u64,
    pub wal_records_checked: u64,
    pub corrupt_wal_records: Vec<CorruptRecord>,
    /// Segments ending in an incomplete record (a write in progress, or one a crash cut short,
    /// never acknowledged): `(segment, bytes)`. Not corruption; replay ignores them.
    pub torn_wal_tails: Vec<(u64, u64)>,
}

impl Verification {
    /// Corrupt blocks, corrupt log records and other problems.
    pub fn problems(&self) -> usize {
        self.corrupt_blocks.len() + self.corrupt_wal_records.len() + self.other_problems.len()
    }

    pub fn blocks(&self) -> u64 {
        self.blocks_checked.iter().map(|(_, n, _)| n).sum()
    }
}

/// A block that does not read back.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptBlock {
    pub column_family: &'static str,
    pub series: SeriesId,
    /// The series' tenant name and labels; `None` when the index has none for the id (or they
    /// do not decode).
    pub tenant: Option<String>,
    pub labels: Option<Labels>,
    /// The block's window, `[window_start, window_end)`, in milliseconds.
    pub window_start: i64,
    pub window_end: i64,
    pub problem: String,
}

/// A log record replay would lose data at, or refuse to start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    pub segment: u64,
    /// Byte offset of the record's frame in the segment.
    pub offset: u64,
    pub problem: String,
}

/// A block read off disk: its column family, window, series and bytes.
struct Read {
    cf: &'static str,
    window: i64,
    series: SeriesId,
    bytes: Vec<u8>,
}

impl ReadOnlyStore {
    /// Reads and checks every block of every block column family, then every log segment.
    pub fn verify(&self, progress: &dyn Progress) -> Result<Verification> {
        let mut v = Verification::default();
        progress.begin("blocks", Some(self.estimated_blocks()));
        let block_ms = self.block_duration_ms();
        let mut found: Vec<(Read, String)> = Vec::new();
        for cf in BLOCK_CFS {
            let (mut blocks, mut bytes) = (0u64, 0u64);
            let mut iter = self.storage.db.raw_iterator_cf_opt(self.storage.cf(cf), scan_options());
            iter.seek_to_first();
            let mut batch: Vec<Read> = Vec::new();
            let mut batch_bytes = 0;
            loop {
                let entry = iter.key().zip(iter.value());
                if let Some((k, value)) = entry {
                    blocks += 1;
                    bytes += value.len() as u64;
                    if k.len() == 16 {
                        let read = Read {
                            cf,
                            window: keys::read_ordered_i64(&k[..8]),
                            series: keys::read_u64(&k[8..]),
                            bytes: value.to_vec(),
                        };
                        batch_bytes += read.bytes.len();
                        batch.push(read);
                    } else {
                        v.other_problems
                            .push(format!("{cf}: a key of {} bytes, not window and series: {k:02x?}", k.len()));
                    }
                }
                if entry.is_none() || batch.len() == BATCH_BLOCKS || batch_bytes >= BATCH_BYTES {
                    let n = batch.len() as u64;
                    found.extend(check_batch(std::mem::take(&mut batch), block_ms));
                    batch_bytes = 0;
                    progress.advance(n);
                }
                if entry.is_none() {
                    break;
                }
                iter.next();
            }
            if let Err(e) = iter.status() {
                v.other_problems.push(format!("{cf}: reading stopped after {blocks} blocks: {e}"));
            }
            v.blocks_checked.push((cf, blocks, bytes));
        }
        let ids: Vec<SeriesId> = found.iter().map(|(r, _)| r.series).collect();
        for ((read, problem), labels) in found.into_iter().zip(self.labels_of(&ids)) {
            let (tenant, labels) = match labels {
                Some((t, l)) => (Some(self.tenant_name(t)), Some(l)),
                None => (None, None),
            };
            v.corrupt_blocks.push(CorruptBlock {
                column_family: read.cf,
                series: read.series,
                tenant,
                labels,
                window_start: read.window,
                window_end: read.window.saturating_add(block_ms),
                problem,
            });
        }
        self.verify_wal(&mut v, progress);
        Ok(v)
    }

    /// Checks every segment of the head's log. A segment the running Amber deletes before it is
    /// read was sealed: it is skipped.
    fn verify_wal(&self, v: &mut Verification, progress: &dyn Progress) {
        let dir = self.data_dir.join("wal");
        let numbers = match wal::segment_numbers(&dir) {
            Ok(n) => n,
            Err(e) => {
                v.other_problems.push(format!("listing the WAL directory {}: {e}", dir.display()));
                return;
            }
        };
        progress.begin("WAL segments", Some(numbers.len() as u64));
        for n in numbers {
            match wal::check_segment(&wal::segment_path(&dir, n)) {
                Ok(check) => {
                    v.wal_segments_checked += 1;
                    v.wal_records_checked += check.records;
                    if check.torn_tail_bytes > 0 {
                        v.torn_wal_tails.push((n, check.torn_tail_bytes));
                    }
                    if let Some((offset, problem)) = check.corrupt {
                        v.corrupt_wal_records.push(CorruptRecord { segment: n, offset, problem });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => v.other_problems.push(format!("reading WAL segment {n:010}: {e}")),
            }
            progress.advance(1);
        }
    }
}

/// Decodes a batch of blocks on [`crate::querier::decode_threads`] threads; returns the corrupt
/// ones with what is wrong, in batch order.
fn check_batch(batch: Vec<Read>, block_ms: i64) -> Vec<(Read, String)> {
    let threads = crate::querier::decode_threads();
    let per_thread = batch.len().div_ceil(threads).max(1);
    let problems: Vec<Option<String>> = std::thread::scope(|scope| {
        let parts: Vec<_> = batch
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(|r| check_block(r, block_ms)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("decoders do not panic")).collect()
    });
    batch.into_iter().zip(problems).filter_map(|(r, p)| Some((r, p?))).collect()
}

/// What is wrong with one block, if anything: it must decode with its column family's decoder
/// and hold only timestamps of its window, which must be aligned to the block duration.
fn check_block(r: &Read, block_ms: i64) -> Option<String> {
    if r.window.rem_euclid(block_ms) != 0 {
        return Some(format!("its key's window start {} ms is not a multiple of the block duration", r.window));
    }
    let decoded: std::result::Result<Vec<i64>, block::BlockError> = match r.cf {
        keys::CF_BLOCKS => block::decode_samples(&r.bytes).map(|s| s.iter().map(|s| s.ts).collect()),
        keys::CF_HISTOGRAM_BLOCKS => block::decode_histograms(&r.bytes).map(|s| s.iter().map(|s| s.ts).collect()),
        keys::CF_EXEMPLAR_BLOCKS => block::decode_exemplars(&r.bytes).map(|s| s.iter().map(|e| e.ts).collect()),
        _ => unreachable!("BLOCK_CFS are the three above"),
    };
    let end = r.window.saturating_add(block_ms);
    match decoded {
        Err(e) => Some(e.to_string()),
        Ok(ts) => ts
            .iter()
            .find(|&&t| t < r.window || t >= end)
            .map(|t| format!("it holds an entry at {t} ms, outside its window")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{SeriesCreation, SeriesWrite};
    use crate::inspect::tests::{BLOCK, fixture};
    use crate::labels::Label;
    use crate::{Exemplar, Sample, TenantId};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    #[test]
    fn verify_names_each_corrupt_block_by_tenant_series_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, w) = fixture(dir.path());
        // One record in the log: a sample the head holds.
        let head = SeriesWrite {
            labels: labels(&[("__name__", "up")]),
            samples: vec![Sample { ts: crate::now_ms(), value: 1.0, start_ts: 0 }],
            histograms: Vec::new(),
            exemplars: Vec::new(),
        };
        storage.append(TenantId::DEFAULT, &[head], &[], SeriesCreation::UNLIMITED).unwrap();

        let clean = ReadOnlyStore::open(dir.path(), "anonymous").unwrap().verify(&()).unwrap();
        assert_eq!(clean.problems(), 0, "{clean:?}");
        let checked: Vec<(&str, u64)> = clean.blocks_checked.iter().map(|(cf, n, _)| (*cf, *n)).collect();
        assert_eq!(checked, [("blocks", 10), ("histogram_blocks", 1), ("exemplar_blocks", 2)]);
        assert_eq!((clean.wal_segments_checked, clean.wal_records_checked), (1, 1));

        // Corrupt blocks written through the running primary, as bit rot or a bug would leave them.
        let id = |pairs: &[(&str, &str)]| {
            let key = keys::series_by_labels(TenantId::DEFAULT, &labels(pairs));
            keys::read_u64(&storage.db.get_cf(storage.cf(keys::CF_INDEX), key).unwrap().unwrap())
        };
        let (path_b, up, bucket) = (
            id(&[("__name__", "requests_total"), ("path", "b")]),
            id(&[("__name__", "up")]),
            id(&[("__name__", "latency_bucket"), ("le", "1")]),
        );
        let blocks = storage.cf(keys::CF_BLOCKS);
        let key = keys::block(w + BLOCK, path_b);
        let mut flipped = storage.db.get_cf(blocks, key).unwrap().unwrap();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        storage.db.put_cf(blocks, key, &flipped).unwrap();
        let h = crate::chunkenc::histogram::tests::shapes().remove(0);
        let histogram = block::encode_histograms(&[crate::HistogramSample { ts: w + BLOCK, start_ts: 0, h }]);
        storage.db.put_cf(blocks, keys::block(w + BLOCK, up), &histogram).unwrap();
        storage.db.put_cf(blocks, keys::block(w + BLOCK, 999), b"garbage").unwrap();
        storage.db.put_cf(blocks, b"short", b"x").unwrap();
        let late = Exemplar { ts: w + 3 * BLOCK, value: 1.0, labels: Labels::default() };
        storage
            .db
            .put_cf(storage.cf(keys::CF_EXEMPLAR_BLOCKS), keys::block(w, bucket), block::encode_exemplars(&[late]))
            .unwrap();

        let v = ReadOnlyStore::open(dir.path(), "anonymous").unwrap().verify(&()).unwrap();
        /// Column family, tenant, labels, window start and end, problem.
        type Row<'a> = (&'a str, Option<&'a str>, Option<String>, i64, i64, &'a str);
        let got: Vec<Row> = v
            .corrupt_blocks
            .iter()
            .map(|c| {
                let labels = c.labels.as_ref().map(|l| l.to_string());
                (c.column_family, c.tenant.as_deref(), labels, c.window_start, c.window_end, c.problem.as_str())
            })
            .collect();
        let end = w + 2 * BLOCK;
        let crc = &got[0].5;
        assert!(crc.starts_with("block checksum mismatch"), "{crc}");
        let late_at = format!("it holds an entry at {} ms, outside its window", w + 3 * BLOCK);
        assert_eq!(
            got,
            [
                (
                    "blocks",
                    Some("anonymous"),
                    Some(r#"{__name__="requests_total", path="b"}"#.into()),
                    w + BLOCK,
                    end,
                    *crc
                ),
                (
                    "blocks",
                    Some("anonymous"),
                    Some(r#"{__name__="up"}"#.into()),
                    w + BLOCK,
                    end,
                    "block holds kind 3, expected 1"
                ),
                (
                    "blocks",
                    None,
                    None,
                    w + BLOCK,
                    end,
                    "block checksum mismatch: stored 0x62616765, computed 0x70344e41"
                ),
                (
                    "exemplar_blocks",
                    Some("anonymous"),
                    Some(r#"{__name__="latency_bucket", le="1"}"#.into()),
                    w,
                    w + BLOCK,
                    late_at.as_str()
                ),
            ]
        );
        assert_eq!(v.corrupt_blocks[2].series, 999);
        assert_eq!(v.other_problems.len(), 1, "{:?}", v.other_problems);
        assert!(v.other_problems[0].starts_with("blocks: a key of 5 bytes"), "{:?}", v.other_problems);
        assert_eq!(v.problems(), 5);
        // Two more keys in `blocks` (series 999, the short key); the others replaced blocks.
        assert_eq!(v.blocks(), 12 + 1 + 2);
    }
}
