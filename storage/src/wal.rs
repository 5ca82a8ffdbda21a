//! The head's write-ahead log: what makes in-memory head data durable.
//!
//! Every write request that accepts anything appends one record (the accepted samples and
//! exemplars of every series in it) to the current segment file and waits until the file is
//! fsynced past that record. Concurrent requests share one fsync: whoever syncs covers every
//! record appended before it started (group commit), so a busy store pays one `fdatasync` per
//! batch of requests, not per request, and never one per sample.
//!
//! Segments are files `wal/<number>` (ten decimal digits), appended to in number order and
//! replaced by a new one at [`SEGMENT_BYTES`] or when sealing wants the older data in a closed
//! segment. A closed segment is deleted once every sample and exemplar in it is in a sealed block
//! (see [`crate::seal`]). The layout is in `docs/format/wal.md`.
//!
//! On open, every segment is read in order; a record that is cut short or fails its checksum
//! ends its segment (it can only be the tail of a write that was never acknowledged, since
//! acknowledged records were fsynced, and appends are sequential). Replay never refuses what it
//! reads: a record only holds data that was accepted when it was written.
//!
//! A failed append or fsync leaves the head holding data that may not be on disk, so the log
//! refuses every later append with [`Error::WalFailed`] until the process restarts and rebuilds
//! the head from what is on disk. Writes are refused before the disk fills (`min_free_disk_bytes`
//! in the server), so this is for failing disks, not full ones.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::chunkenc::histogram as hcodec;
use crate::chunkenc::varint::{Reader, put_uvarint, put_varint};
use crate::error::{Error, Result};
use crate::labels::Labels;
use crate::{Exemplar, HistogramSample, NO_START, Sample, SeriesId};

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Record type of a write request's accepted data. Numbers are never reused.
const RECORD_SERIES_DATA: u8 = 1;
/// The same with each series' native histogram samples after its exemplars; written only when
/// the request has histograms, so float-only records stay as they were.
const RECORD_SERIES_DATA_HISTOGRAMS: u8 = 2;
/// A record of type 1, 2 or 4, zstd-compressed: `3 │ raw length <uvarint> │ zstd frame`.
const RECORD_COMPRESSED: u8 = 3;
/// Type 2 with a start timestamp after each sample's value and before each histogram; written
/// only when the request accepted a sample or histogram with one, so other records stay as they
/// were.
const RECORD_SERIES_DATA_STARTS: u8 = 4;

/// zstd level of WAL records: level 1 takes a 2,000-sample record from ~10 to ~3 bytes a sample
/// for about 2 % of the ingest CPU; higher levels cost more than the bytes they save while the
/// record is only kept until its window is sealed.
const COMPRESSION_LEVEL: i32 = 1;
/// No record decompresses to more than this: a corrupt length must not allocate without bound.
const MAX_RECORD_BYTES: usize = 1 << 30;

/// Bytes before each record's payload: `len u32 | crc32 u32`.
const FRAME_HEADER: usize = 8;

/// The time span of what one segment holds, for deciding when it may be deleted.
#[derive(Debug, Clone, Copy)]
struct Span {
    min_ts: i64,
    max_ts: i64,
}

impl Span {
    const EMPTY: Span = Span { min_ts: i64::MAX, max_ts: i64::MIN };

    fn is_empty(&self) -> bool {
        self.min_ts > self.max_ts
    }

    fn add(&mut self, other: Span) {
        self.min_ts = self.min_ts.min(other.min_ts);
        self.max_ts = self.max_ts.max(other.max_ts);
    }

    fn include(&mut self, ts: i64) {
        self.add(Span { min_ts: ts, max_ts: ts });
    }
}

/// The segment being appended to. Guarded by [`Wal::writer`], which the write path holds from
/// its first head insert to its append, so record order is head order.
pub(crate) struct Writer {
    dir: PathBuf,
    file: Arc<File>,
    number: u64,
    bytes: u64,
    span: Span,
    /// Closed segments and the span of what they hold.
    closed: BTreeMap<u64, Span>,
    /// Records appended so far (over the life of the process).
    appended: u64,
    buf: Vec<u8>,
    /// The compressed form of `buf`'s record, framed.
    framed: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
}

pub(crate) struct Wal {
    writer: Mutex<Writer>,
    /// The file to fsync and the record count it will cover, updated at every append; kept apart
    /// from `writer` so a sync never waits for a request's in-memory work.
    tail: Mutex<(Arc<File>, u64)>,
    /// Held by the thread running an fsync; others queue behind it and usually find their record
    /// already covered when they get it.
    syncing: Mutex<()>,
    synced: AtomicU64,
    failed: Mutex<Option<String>>,
    /// `false` (`--wal-fsync=false`): [`Wal::sync`] returns at once, the record having been
    /// written to the file already; segments are still synced when they are closed.
    fsync: bool,
}

/// One series' accepted data in a record.
pub(crate) struct SeriesData<'a> {
    pub id: SeriesId,
    pub samples: &'a [Sample],
    pub histograms: &'a [HistogramSample],
    pub exemplars: &'a [&'a Exemplar],
}

/// One series' data read back from a record: slices of the record's [`DecodedRecord`].
#[derive(Clone, Copy)]
pub(crate) struct ReplayedSeries<'a> {
    pub id: SeriesId,
    pub samples: &'a [Sample],
    pub histograms: &'a [HistogramSample],
    pub exemplars: &'a [Exemplar],
}

/// A record read back: every series' entries in flat lists, and the buffer it was decompressed
/// into, all reused from record to record. Replay allocated a list per series and per record
/// before: a third of a restart's time went to the allocator.
#[derive(Default)]
pub(crate) struct DecodedRecord {
    /// Per series: its id and the ends of its entries in the three lists.
    series: Vec<(SeriesId, [u32; 3])>,
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
    exemplars: Vec<Exemplar>,
    raw: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl DecodedRecord {
    /// The record's series, in record order.
    pub(crate) fn series(&self) -> impl Iterator<Item = ReplayedSeries<'_>> + Clone {
        let mut from = [0usize; 3];
        self.series.iter().map(move |&(id, ends)| {
            let [s, h, e] = ends.map(|x| x as usize);
            let out = ReplayedSeries {
                id,
                samples: &self.samples[from[0]..s],
                histograms: &self.histograms[from[1]..h],
                exemplars: &self.exemplars[from[2]..e],
            };
            from = [s, h, e];
            out
        })
    }

    fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
        self.histograms.clear();
        self.exemplars.clear();
    }

    /// Marks the end of series `id`'s entries.
    fn end_series(&mut self, id: SeriesId) {
        let ends = [self.samples.len(), self.histograms.len(), self.exemplars.len()].map(|n| n as u32);
        self.series.push((id, ends));
    }
}

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}"))
}

fn wal_error(what: &str, e: io::Error) -> Error {
    Error::Wal(format!("{what}: {e}"))
}

/// The series of each record one replay thread applies: those whose id is `index` modulo `of`.
/// Every series is applied by one thread, so its data goes into the head in log order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayShard {
    index: u64,
    of: u64,
}

impl ReplayShard {
    pub(crate) fn holds(&self, id: SeriesId) -> bool {
        id % self.of == self.index
    }
}

impl Wal {
    /// Opens the log in `dir`, calling `apply` with every intact record, oldest first, once for
    /// each of `appliers` shards of its series (on threads of their own, beside the one reading
    /// and decoding), then starts a new segment for appends. `fsync`: whether [`Wal::sync`]
    /// waits for the disk.
    pub(crate) fn open(
        dir: &Path,
        fsync: bool,
        appliers: usize,
        apply: impl Fn(&DecodedRecord, ReplayShard) + Sync,
    ) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(|e| wal_error("creating the WAL directory", e))?;
        let mut numbers: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| wal_error("listing the WAL directory", e))? {
            let entry = entry.map_err(|e| wal_error("listing the WAL directory", e))?;
            if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let spans = replay(dir, &numbers, appliers.max(1), &apply)?;
        let mut closed = BTreeMap::new();
        for (&n, span) in numbers.iter().zip(spans) {
            if span.is_empty() {
                // Nothing durable in it: an empty segment from a previous start, or a torn first write.
                fs::remove_file(segment_path(dir, n)).map_err(|e| wal_error("removing an empty segment", e))?;
            } else {
                closed.insert(n, span);
            }
        }
        let number = numbers.last().map_or(1, |n| n + 1);
        let file = Arc::new(create_segment(dir, number)?);
        Wal::with_writer(dir, file, number, closed, None, fsync)
    }

    /// The log writing to `file`, segment `number` of `dir`, with `closed` segments before it.
    fn with_writer(
        dir: &Path,
        file: Arc<File>,
        number: u64,
        closed: BTreeMap<u64, Span>,
        failed: Option<String>,
        fsync: bool,
    ) -> Result<Wal> {
        let writer = Writer {
            dir: dir.to_path_buf(),
            file: file.clone(),
            number,
            bytes: 0,
            span: Span::EMPTY,
            closed,
            appended: 0,
            buf: Vec::new(),
            framed: Vec::new(),
            compressor: zstd::bulk::Compressor::new(COMPRESSION_LEVEL)
                .map_err(|e| wal_error("creating the WAL's zstd compressor", e))?,
        };
        Ok(Wal {
            writer: Mutex::new(writer),
            tail: Mutex::new((file, 0)),
            syncing: Mutex::new(()),
            synced: AtomicU64::new(0),
            failed: Mutex::new(failed),
            fsync,
        })
    }

    /// A log that refuses every append, sync and rotation, for a store opened read-only
    /// ([`crate::inspect::ReadOnlyStore`]): the segments in `dir` belong to the Amber that may be
    /// running on them, so nothing here opens, creates or deletes one. Its file handle is
    /// `/dev/null`, opened read-only, and never written: appends, syncs, rotations and snapshot
    /// links check the failure first, and [`Wal::delete_sealed`] knows no closed segment.
    pub(crate) fn refusing(dir: &Path, why: &str) -> Result<Wal> {
        let file = Arc::new(File::open("/dev/null").map_err(|e| wal_error("opening /dev/null", e))?);
        Wal::with_writer(dir, file, 0, BTreeMap::new(), Some(why.to_string()), true)
    }

    /// The append lock. Hold it while inserting into the head, then [`Writer::append`].
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.check()?;
        Ok(self.writer.lock())
    }

    fn check(&self) -> Result<()> {
        match &*self.failed.lock() {
            Some(why) => Err(Error::WalFailed(why.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, e: &Error) {
        self.failed.lock().get_or_insert_with(|| e.to_string());
    }

    /// Appends one record holding `series` (already inserted into the head); returns its
    /// sequence number for [`Wal::sync`]. Call with the guard from [`Wal::writer`].
    pub(crate) fn append(&self, w: &mut Writer, series: &[SeriesData<'_>]) -> Result<u64> {
        let result = w.append(series);
        match &result {
            Ok(seq) => *self.tail.lock() = (w.file.clone(), *seq),
            Err(e) => self.fail(e),
        }
        result
    }

    /// Returns once record `seq` and every record before it are on disk (with fsync off: at
    /// once, after checking the log has not failed; the record was written when appended).
    pub(crate) fn sync(&self, seq: u64) -> Result<()> {
        if !self.fsync {
            return self.check();
        }
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _syncing = self.syncing.lock();
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        self.check()?;
        let (file, upto) = self.tail.lock().clone();
        if let Err(e) = file.sync_data() {
            let e = wal_error("fsync of a WAL segment", e);
            self.fail(&e);
            return Err(e);
        }
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Closes the current segment if it holds anything older than `before`, so that it can be
    /// deleted once that data is sealed. Returns the number of the first segment not closed.
    pub(crate) fn rotate_if_older(&self, before: i64) -> Result<u64> {
        let mut w = self.writer()?;
        if !w.span.is_empty() && w.span.min_ts < before {
            if let Err(e) = w.rotate() {
                self.fail(&e);
                return Err(e);
            }
            *self.tail.lock() = (w.file.clone(), w.appended);
        }
        Ok(w.number)
    }

    /// Closes the current segment if it holds anything and hard-links every closed segment into
    /// `into` (a new directory): all of the log up to now, none of what comes after. Returns the
    /// segments linked.
    pub(crate) fn link_closed_segments(&self, into: &Path) -> Result<usize> {
        let mut w = self.writer()?;
        if !w.span.is_empty() {
            if let Err(e) = w.rotate() {
                self.fail(&e);
                return Err(e);
            }
            *self.tail.lock() = (w.file.clone(), w.appended);
        }
        fs::create_dir_all(into).map_err(|e| wal_error("creating the snapshot's WAL directory", e))?;
        for &n in w.closed.keys() {
            fs::hard_link(segment_path(&w.dir, n), segment_path(into, n))
                .map_err(|e| wal_error("linking a segment into the snapshot", e))?;
        }
        File::open(into)
            .and_then(|d| d.sync_all())
            .map_err(|e| wal_error("fsync of the snapshot's WAL directory", e))?;
        Ok(w.closed.len())
    }

    /// Deletes closed segments numbered below `below` whose data all lies before `before`.
    pub(crate) fn delete_sealed(&self, below: u64, before: i64) -> Result<usize> {
        let mut w = self.writer.lock();
        let doomed: Vec<u64> =
            w.closed.range(..below).filter(|(_, span)| span.max_ts < before).map(|(&n, _)| n).collect();
        for n in &doomed {
            fs::remove_file(segment_path(&w.dir, *n)).map_err(|e| wal_error("deleting a sealed segment", e))?;
            w.closed.remove(n);
        }
        Ok(doomed.len())
    }

    /// Bytes in segment files (closed and current).
    pub(crate) fn disk_bytes(&self) -> u64 {
        let w = self.writer.lock();
        let closed: u64 =
            w.closed.keys().filter_map(|&n| fs::metadata(segment_path(&w.dir, n)).ok()).map(|m| m.len()).sum();
        closed + w.bytes
    }
}

fn create_segment(dir: &Path, number: u64) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, number))
        .map_err(|e| wal_error("creating a WAL segment", e))?;
    // The new name must survive a crash too, or a synced record could vanish with its file.
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| wal_error("fsync of the WAL directory", e))?;
    Ok(file)
}

impl Writer {
    /// Records appended so far: [`Wal::sync`] to this covers everything in the head.
    pub(crate) fn appended(&self) -> u64 {
        self.appended
    }

    fn append(&mut self, series: &[SeriesData<'_>]) -> Result<u64> {
        let mut span = Span::EMPTY;
        let buf = &mut self.buf;
        buf.clear();
        buf.extend_from_slice(&[0; FRAME_HEADER]);
        let with_starts = series.iter().any(|s| {
            s.samples.iter().any(|x| x.start_ts != NO_START) || s.histograms.iter().any(|h| h.start_ts != NO_START)
        });
        let with_histograms = with_starts || series.iter().any(|s| !s.histograms.is_empty());
        buf.push(match (with_starts, with_histograms) {
            (true, _) => RECORD_SERIES_DATA_STARTS,
            (false, true) => RECORD_SERIES_DATA_HISTOGRAMS,
            (false, false) => RECORD_SERIES_DATA,
        });
        // Timestamps are written relative to the record's first one: a request's samples are
        // usually from the same few scrapes, so most cost a byte or two instead of six.
        let base = series
            .iter()
            .find_map(|s| s.samples.first().map(|x| x.ts))
            .or_else(|| series.iter().find_map(|s| s.histograms.first().map(|x| x.ts)))
            .unwrap_or(0);
        put_varint(buf, base);
        put_uvarint(buf, series.len() as u64);
        for s in series {
            put_uvarint(buf, s.id);
            put_uvarint(buf, s.samples.len() as u64);
            let mut prev = base;
            // Start timestamps as differences from the previous one (from 0 for the first): a
            // counter's start rarely changes, so most cost a byte.
            let mut prev_start = NO_START;
            for sample in s.samples {
                put_varint(buf, sample.ts.wrapping_sub(prev));
                buf.extend_from_slice(&sample.value.to_bits().to_le_bytes());
                if with_starts {
                    put_varint(buf, sample.start_ts.wrapping_sub(prev_start));
                    prev_start = sample.start_ts;
                }
                prev = sample.ts;
                span.include(sample.ts);
            }
            put_uvarint(buf, s.exemplars.len() as u64);
            for e in s.exemplars {
                put_varint(buf, e.ts.wrapping_sub(base));
                buf.extend_from_slice(&e.value.to_bits().to_le_bytes());
                e.labels.encode_into(buf);
                span.include(e.ts);
            }
            if with_histograms {
                put_uvarint(buf, s.histograms.len() as u64);
                let mut prev_start = NO_START;
                for h in s.histograms {
                    put_varint(buf, h.ts.wrapping_sub(base));
                    if with_starts {
                        put_varint(buf, h.start_ts.wrapping_sub(prev_start));
                        prev_start = h.start_ts;
                    }
                    hcodec::encode(buf, &h.h);
                    span.include(h.ts);
                }
            }
        }
        // Compress the record into its frame; a record too small to gain is written as it is.
        let raw_len = buf.len() - FRAME_HEADER;
        let framed = &mut self.framed;
        framed.clear();
        framed.extend_from_slice(&[0; FRAME_HEADER]);
        framed.push(RECORD_COMPRESSED);
        put_uvarint(framed, raw_len as u64);
        let header_len = framed.len();
        framed.resize(header_len + zstd::zstd_safe::compress_bound(raw_len), 0);
        let written = self
            .compressor
            .compress_to_buffer(&buf[FRAME_HEADER..], &mut framed[header_len..])
            .map_err(|e| wal_error("compressing a WAL record", e))?;
        framed.truncate(header_len + written);
        let out = if framed.len() < buf.len() { &mut self.framed } else { &mut self.buf };
        let payload_len = (out.len() - FRAME_HEADER) as u32;
        let crc = crc32fast::hash(&out[FRAME_HEADER..]);
        out[..4].copy_from_slice(&payload_len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        let frame_len = out.len() as u64;
        if self.bytes > 0 && self.bytes + frame_len > SEGMENT_BYTES {
            self.rotate()?;
        }
        let buf = if self.framed.len() < self.buf.len() { &self.framed } else { &self.buf };
        (&*self.file).write_all(buf).map_err(|e| wal_error("appending to the WAL", e))?;
        self.bytes += buf.len() as u64;
        self.span.add(span);
        self.appended += 1;
        Ok(self.appended)
    }

    /// Syncs and closes the current segment and starts the next.
    fn rotate(&mut self) -> Result<()> {
        // Records in the old file must be durable before any record in the new one is reported
        // synced, since syncs from now on only cover the new file.
        self.file.sync_data().map_err(|e| wal_error("fsync of a WAL segment", e))?;
        let next = self.number + 1;
        self.file = Arc::new(create_segment(&self.dir, next)?);
        if self.span.is_empty() {
            fs::remove_file(segment_path(&self.dir, self.number))
                .map_err(|e| wal_error("removing an empty segment", e))?;
        } else {
            self.closed.insert(self.number, self.span);
        }
        self.number = next;
        self.bytes = 0;
        self.span = Span::EMPTY;
        Ok(())
    }
}

/// Reads and decodes the segments `numbers` of `dir` in order on this thread and applies each
/// record on `appliers` threads, one shard of its series each; returns each segment's span.
/// Applying a record into the head is most of a restart (a cache miss or more per series), and
/// Prometheus shards its replay the same way. Records circulate through a fixed pool, so their
/// lists are reused and memory stays bounded however long the log.
fn replay(
    dir: &Path,
    numbers: &[u64],
    appliers: usize,
    apply: &(impl Fn(&DecodedRecord, ReplayShard) + Sync),
) -> Result<Vec<Span>> {
    // Enough records that the reader decodes the next while every applier has one.
    let pool = 2 * appliers + 1;
    let (free_tx, free_rx) = std::sync::mpsc::channel::<DecodedRecord>();
    for _ in 0..pool {
        free_tx.send(DecodedRecord::default()).expect("the receiver is alive");
    }
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(appliers);
        for index in 0..appliers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<DecodedRecord>>(pool);
            queues.push(tx);
            let free_tx = free_tx.clone();
            let shard = ReplayShard { index: index as u64, of: appliers as u64 };
            scope.spawn(move || {
                for record in rx {
                    apply(&record, shard);
                    // The last applier done with a record hands it back to the reader.
                    if let Some(record) = Arc::into_inner(record) {
                        let _ = free_tx.send(record);
                    }
                }
            });
        }
        drop(free_tx);
        let mut spans = Vec::with_capacity(numbers.len());
        for &n in numbers {
            let path = segment_path(dir, n);
            let span = replay_segment(
                &path,
                || free_rx.recv().ok(),
                |record| {
                    // The last queue gets the reader's own reference: were the reader still
                    // holding one when the appliers finish, none of them would hand the record
                    // back, and the pool would run dry.
                    let record = Arc::new(record);
                    let (last, others) = queues.split_last().expect("at least one applier");
                    others.iter().all(|q| q.send(record.clone()).is_ok()) && last.send(record).is_ok()
                },
            )?;
            spans.push(span);
        }
        Ok(spans)
    })
}

/// Reads one segment: takes a record to decode into from `next`, hands each decoded one to
/// `apply`, and returns the span of what the segment held. Either returning `false`/`None` means
/// an applier is gone (it panicked, and the scope will say so).
fn replay_segment(
    path: &Path,
    mut next: impl FnMut() -> Option<DecodedRecord>,
    mut apply: impl FnMut(DecodedRecord) -> bool,
) -> Result<Span> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| wal_error("reading a WAL segment", e))?;
    let mut span = Span::EMPTY;
    let mut rest = bytes.as_slice();
    let gone = || Error::Wal("a WAL replay thread stopped".to_string());
    while rest.len() >= FRAME_HEADER {
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut record = next().ok_or_else(gone)?;
        if decode_record(payload, &mut record).is_err() {
            return Err(Error::Wal(format!("{}: a record with a valid checksum does not decode", path.display())));
        }
        let histogram_ts = record.histograms.iter().map(|h| h.ts);
        for ts in record.samples.iter().map(|x| x.ts).chain(record.exemplars.iter().map(|e| e.ts)).chain(histogram_ts) {
            span.include(ts);
        }
        if !apply(record) {
            return Err(gone());
        }
        rest = &rest[FRAME_HEADER + len..];
    }
    if !rest.is_empty() {
        tracing::warn!(segment = %path.display(), bytes = rest.len(), "WAL segment ends in an incomplete record (an unacknowledged write); ignored");
    }
    Ok(span)
}

/// The numbers of the segment files in `dir`, in order (none if it does not exist).
pub(crate) fn segment_numbers(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(numbers),
        Err(e) => return Err(e),
    };
    for entry in entries {
        if let Some(n) = entry?.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// What reading one segment found, read as replay reads it but applied to nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SegmentCheck {
    pub bytes: u64,
    /// Records whose checksum matched and that decoded.
    pub records: u64,
    /// Bytes of an incomplete record at the end (a write in progress, or one a crash cut short:
    /// never acknowledged), which replay ignores.
    pub torn_tail_bytes: u64,
    /// A record replay would lose acknowledged data at or refuse to start on: its byte offset
    /// and what is wrong.
    pub corrupt: Option<(u64, String)>,
}

/// Reads the segment at `path` record by record, checking each frame's CRC and decoding each
/// record, as [`Wal::open`] would, without writing anything.
///
/// A frame that runs past the end of the file, or fails its checksum and ends exactly at the
/// end, is a torn tail (replay ignores it with a warning; on a running store it is the record
/// being appended). A failed checksum with more bytes after it is corruption: replay stops at
/// the first bad frame, so every record after it would be lost. A record that passes its
/// checksum and does not decode is corruption too: replay refuses to open the store.
pub(crate) fn check_segment(path: &Path) -> io::Result<SegmentCheck> {
    let bytes = fs::read(path)?;
    let mut check = SegmentCheck { bytes: bytes.len() as u64, ..Default::default() };
    let mut record = DecodedRecord::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(payload) = rest.get(FRAME_HEADER..).and_then(|p| {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            p.get(..len)
        }) else {
            check.torn_tail_bytes = rest.len() as u64;
            break;
        };
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let end = at + FRAME_HEADER + payload.len();
        if crc32fast::hash(payload) != crc {
            if end == bytes.len() {
                check.torn_tail_bytes = rest.len() as u64;
            } else {
                let after = bytes.len() - end;
                let why = format!("record fails its checksum; replay stops here and loses the {after} bytes after it");
                check.corrupt = Some((at as u64, why));
            }
            break;
        }
        if let Err(e) = decode_record(payload, &mut record) {
            check.corrupt = Some((at as u64, format!("record passes its checksum but does not decode: {e}")));
            break;
        }
        check.records += 1;
        at = end;
    }
    Ok(check)
}

/// The WAL record decoder, for the coverage-guided fuzzer (`fuzz/`, built with `--cfg fuzzing`).
#[cfg(fuzzing)]
pub fn fuzz_record(payload: &[u8]) -> bool {
    decode_record(payload, &mut DecodedRecord::default()).is_ok()
}

/// Decodes `payload` into `out` (cleared first).
fn decode_record(payload: &[u8], out: &mut DecodedRecord) -> std::result::Result<(), crate::chunkenc::DecodeError> {
    out.clear();
    if payload.first() == Some(&RECORD_COMPRESSED) {
        let mut r = Reader::new(&payload[1..]);
        let raw_len = usize::try_from(r.uvarint()?).unwrap_or(usize::MAX);
        if raw_len > MAX_RECORD_BYTES {
            return Err(crate::chunkenc::DecodeError::Invalid("WAL record too long"));
        }
        let mut raw = std::mem::take(&mut out.raw);
        raw.clear();
        raw.reserve(raw_len);
        let decompressed = match &mut out.decompressor {
            Some(d) => d.decompress_to_buffer(r.remaining(), &mut raw),
            None => zstd::bulk::Decompressor::new()
                .and_then(|d| out.decompressor.insert(d).decompress_to_buffer(r.remaining(), &mut raw)),
        };
        let decoded = match decompressed {
            Ok(n) if n == raw_len && raw.first() != Some(&RECORD_COMPRESSED) => decode_plain_record(&raw, out),
            Ok(_) => Err(crate::chunkenc::DecodeError::Invalid("WAL record decompresses to the wrong length or type")),
            Err(_) => Err(crate::chunkenc::DecodeError::Invalid("WAL record does not decompress")),
        };
        out.raw = raw;
        return decoded;
    }
    decode_plain_record(payload, out)
}

fn decode_plain_record(
    payload: &[u8],
    out: &mut DecodedRecord,
) -> std::result::Result<(), crate::chunkenc::DecodeError> {
    let mut r = Reader::new(payload);
    let (with_histograms, with_starts) = match r.u8()? {
        RECORD_SERIES_DATA => (false, false),
        RECORD_SERIES_DATA_HISTOGRAMS => (true, false),
        RECORD_SERIES_DATA_STARTS => (true, true),
        _ => return Err(crate::chunkenc::DecodeError::Invalid("unknown WAL record type")),
    };
    let base = r.varint()?;
    let n = r.len()?;
    out.series.reserve(n);
    for _ in 0..n {
        let id = r.uvarint()?;
        let n_samples = r.len()?;
        out.samples.reserve(n_samples);
        let mut prev = base;
        let mut start_ts = NO_START;
        for _ in 0..n_samples {
            let ts = prev.wrapping_add(r.varint()?);
            let value = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes")));
            if with_starts {
                start_ts = start_ts.wrapping_add(r.varint()?);
            }
            out.samples.push(Sample { ts, value, start_ts });
            prev = ts;
        }
        let n_exemplars = r.len()?;
        out.exemplars.reserve(n_exemplars);
        for _ in 0..n_exemplars {
            let ts = base.wrapping_add(r.varint()?);
            let value = f64::from_bits(u64::from_le_bytes(r.bytes(8)?.try_into().expect("8 bytes")));
            let labels = Labels::decode(&mut r)?;
            out.exemplars.push(Exemplar { ts, value, labels });
        }
        if with_histograms {
            let n_histograms = r.len()?;
            out.histograms.reserve(n_histograms);
            let mut start_ts = NO_START;
            for _ in 0..n_histograms {
                let ts = base.wrapping_add(r.varint()?);
                if with_starts {
                    start_ts = start_ts.wrapping_add(r.varint()?);
                }
                out.histograms.push(HistogramSample { ts, start_ts, h: hcodec::decode(&mut r)? });
            }
        }
        out.end_series(id);
    }
    if !r.is_empty() {
        return Err(crate::chunkenc::DecodeError::Invalid("trailing bytes in a WAL record"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Label;

    /// A replayed series' entries, copied out of the record.
    struct Replayed {
        id: SeriesId,
        samples: Vec<Sample>,
        histograms: Vec<HistogramSample>,
        exemplars: Vec<Exemplar>,
    }

    /// Replays `dir` with one applier, so the series come back in log order.
    fn replay(dir: &Path) -> (Wal, Vec<Replayed>) {
        let got = Mutex::new(Vec::new());
        let wal = Wal::open(dir, true, 1, |record, _| {
            got.lock().extend(record.series().map(|s| Replayed {
                id: s.id,
                samples: s.samples.to_vec(),
                histograms: s.histograms.to_vec(),
                exemplars: s.exemplars.to_vec(),
            }))
        })
        .unwrap();
        (wal, got.into_inner())
    }

    #[test]
    fn sharded_replay_applies_every_series_once_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        // 400 records of 25 series each, far more than the pool holds (a record lost from it
        // hangs replay): series ids repeat from record to record, samples ascending per series.
        {
            let (wal, _) = replay(dir.path());
            for r in 0..400i64 {
                let samples: Vec<Vec<Sample>> = (0..25)
                    .map(|s| vec![Sample { ts: r * 15_000 + s, value: (r * 100 + s) as f64, start_ts: 0 }])
                    .collect();
                let data: Vec<SeriesData<'_>> = samples
                    .iter()
                    .enumerate()
                    .map(|(s, x)| SeriesData {
                        id: (s as u64 * 7 + r as u64) % 50,
                        samples: x,
                        histograms: &[],
                        exemplars: &[],
                    })
                    .collect();
                let mut w = wal.writer().unwrap();
                let seq = wal.append(&mut w, &data).unwrap();
                drop(w);
                wal.sync(seq).unwrap();
            }
        }
        let in_order = |appliers: usize| {
            let got: Mutex<BTreeMap<SeriesId, Vec<i64>>> = Mutex::new(BTreeMap::new());
            let applied_by: Mutex<BTreeMap<SeriesId, std::collections::BTreeSet<u64>>> = Mutex::new(BTreeMap::new());
            Wal::open(dir.path(), true, appliers, |record, shard| {
                for s in record.series().filter(|s| shard.holds(s.id)) {
                    got.lock().entry(s.id).or_default().extend(s.samples.iter().map(|x| x.ts));
                    applied_by.lock().entry(s.id).or_default().insert(shard.index);
                }
            })
            .unwrap();
            assert!(applied_by.into_inner().values().all(|shards| shards.len() == 1), "one applier per series");
            got.into_inner()
        };
        let one = in_order(1);
        assert_eq!(one.values().map(Vec::len).sum::<usize>(), 400 * 25);
        assert!(one.values().all(|ts| ts.is_sorted()), "a series' samples come back in log order");
        assert_eq!(in_order(3), one);
    }

    #[test]
    fn records_survive_reopen_in_order_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let exemplar = Exemplar {
            ts: 1_500,
            value: 0.25,
            labels: Labels::from_unsorted(vec![Label::new("trace_id", "4bf92f3577b34da6")]),
        };
        let samples =
            [Sample { ts: 1_000, value: 1.5, start_ts: 0 }, Sample { ts: 16_000, value: f64::NAN, start_ts: 0 }];
        {
            let (wal, got) = replay(dir.path());
            assert!(got.is_empty());
            let mut w = wal.writer().unwrap();
            let seq = wal
                .append(&mut w, &[SeriesData { id: 7, samples: &samples, histograms: &[], exemplars: &[&exemplar] }])
                .unwrap();
            let seq2 = wal
                .append(&mut w, &[SeriesData { id: 3, samples: &samples[..1], histograms: &[], exemplars: &[] }])
                .unwrap();
            drop(w);
            assert_eq!((seq, seq2), (1, 2));
            wal.sync(seq2).unwrap();
        }
        // A write cut short by a crash: a frame header promising more bytes than follow.
        let segment = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9]).unwrap();
        drop(f);

        let (wal, got) = replay(dir.path());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, 7);
        assert_eq!(got[0].samples[0], samples[0]);
        assert!(got[0].samples[1].value.is_nan() && got[0].samples[1].ts == 16_000);
        assert_eq!(got[0].exemplars, vec![exemplar]);
        assert_eq!((got[1].id, got[1].samples.clone()), (3, vec![samples[0]]));
        // The next appends go to a new segment, after the one holding the torn tail.
        let mut w = wal.writer().unwrap();
        assert_eq!(w.number, 2);
        assert_eq!(w.closed.keys().copied().collect::<Vec<_>>(), vec![1]);
        wal.append(&mut w, &[SeriesData { id: 9, samples: &samples[1..], histograms: &[], exemplars: &[] }]).unwrap();
    }

    #[test]
    fn start_timestamps_replay_from_their_own_record_type() {
        let dir = tempfile::tempdir().unwrap();
        let plain = [Sample { ts: 1_000, value: 1.0, start_ts: NO_START }];
        let started = [
            Sample { ts: 2_000, value: 3.0, start_ts: 500 },
            Sample { ts: 3_000, value: 4.0, start_ts: 500 },
            Sample { ts: 4_000, value: 1.0, start_ts: NO_START },
            Sample { ts: 5_000, value: 2.0, start_ts: 6_000 },
        ];
        let h = crate::chunkenc::histogram::tests::shapes().remove(0);
        let histograms = [HistogramSample { ts: 2_500, start_ts: 2_000, h }];
        {
            let (wal, _) = replay(dir.path());
            let mut w = wal.writer().unwrap();
            let plain_only = SeriesData { id: 1, samples: &plain, histograms: &[], exemplars: &[] };
            wal.append(&mut w, &[plain_only]).unwrap();
            let with_starts = [
                SeriesData { id: 1, samples: &plain, histograms: &[], exemplars: &[] },
                SeriesData { id: 2, samples: &started, histograms: &histograms, exemplars: &[] },
            ];
            let seq = wal.append(&mut w, &with_starts).unwrap();
            drop(w);
            wal.sync(seq).unwrap();
        }
        // The first record is type 1 as before start timestamps existed; the second is type 4.
        let bytes = std::fs::read(segment_path(dir.path(), 1)).unwrap();
        assert_eq!(bytes[FRAME_HEADER], RECORD_SERIES_DATA);
        let (_, got) = replay(dir.path());
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].samples.as_slice(), got[1].samples.as_slice()), (&plain[..], &plain[..]));
        assert_eq!(got[2].samples, started);
        assert_eq!(got[2].histograms.len(), 1);
        assert_eq!((got[2].histograms[0].ts, got[2].histograms[0].start_ts), (2_500, 2_000));
    }

    #[test]
    fn histogram_records_replay_bit_for_bit_beside_float_records() {
        let dir = tempfile::tempdir().unwrap();
        let shapes = crate::chunkenc::histogram::tests::shapes();
        let histograms: Vec<HistogramSample> = shapes
            .iter()
            .enumerate()
            .map(|(i, h)| HistogramSample { ts: 5_000 + i as i64, start_ts: 0, h: h.clone() })
            .collect();
        let floats = [Sample { ts: 1_000, value: 1.0, start_ts: 0 }];
        {
            let (wal, _) = replay(dir.path());
            let mut w = wal.writer().unwrap();
            wal.append(&mut w, &[SeriesData { id: 1, samples: &floats, histograms: &[], exemplars: &[] }]).unwrap();
            let only_histograms = SeriesData { id: 2, samples: &[], histograms: &histograms, exemplars: &[] };
            let seq = wal.append(&mut w, &[only_histograms]).unwrap();
            drop(w);
            wal.sync(seq).unwrap();
        }
        let (_, got) = replay(dir.path());
        assert_eq!((got[0].id, got[0].samples.clone(), got[0].histograms.len()), (1, floats.to_vec(), 0));
        assert_eq!(got[1].id, 2);
        assert_eq!(got[1].histograms.iter().map(|h| h.ts).collect::<Vec<_>>(), vec![5_000, 5_001, 5_002, 5_003]);
        let back: Vec<_> = got[1].histograms.iter().map(|h| h.h.clone()).collect();
        crate::chunkenc::histogram::tests::assert_same(&back, &shapes);
    }

    /// A scrape's worth of counters (one sample each of 2,000 series, as Prometheus batches them)
    /// is compressed to a fraction of its raw size and replays exactly.
    #[test]
    fn large_records_are_compressed_and_replay_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<[Sample; 1]> = (0..2000)
            .map(|i| {
                [Sample {
                    ts: 1_700_000_000_000,
                    value: (1000.0 + i as f64 * 13.37 * 100.0).round() / 100.0,
                    start_ts: 0,
                }]
            })
            .collect();
        let data: Vec<SeriesData<'_>> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| SeriesData { id: 5000 + i as u64, samples: s, histograms: &[], exemplars: &[] })
            .collect();
        {
            let (wal, _) = replay(dir.path());
            let mut w = wal.writer().unwrap();
            let seq = wal.append(&mut w, &data).unwrap();
            drop(w);
            wal.sync(seq).unwrap();
            // Raw, each sample takes an id of 2 bytes, two counts, a timestamp delta and 8 bytes.
            let bytes = wal.disk_bytes();
            assert!(bytes < 2000 * 13 / 2, "{bytes} bytes for 2000 samples");
        }
        let (_, got) = replay(dir.path());
        assert_eq!(got.len(), 2000);
        for (g, (i, s)) in got.iter().zip(samples.iter().enumerate()) {
            assert_eq!((g.id, g.samples.as_slice()), (5000 + i as u64, s.as_slice()));
        }
    }

    #[test]
    fn a_segment_check_tells_a_torn_tail_from_corruption_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let samples = [Sample { ts: 1_000, value: 1.5, start_ts: 0 }];
        {
            let (wal, _) = replay(dir.path());
            let mut w = wal.writer().unwrap();
            for id in 0..3 {
                wal.append(&mut w, &[SeriesData { id, samples: &samples, histograms: &[], exemplars: &[] }]).unwrap();
            }
        }
        let path = segment_path(dir.path(), 1);
        let clean = std::fs::read(&path).unwrap();
        let check = check_segment(&path).unwrap();
        assert_eq!(check, SegmentCheck { bytes: clean.len() as u64, records: 3, torn_tail_bytes: 0, corrupt: None });
        assert_eq!(std::fs::read(&path).unwrap(), clean, "checking changed nothing");
        let first_len = FRAME_HEADER + u32::from_le_bytes(clean[..4].try_into().unwrap()) as usize;

        // A frame promising more than follows, and a last frame failing its checksum: torn tails.
        let mut torn = clean.clone();
        torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 9]);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!((check_segment(&path).unwrap().records, check_segment(&path).unwrap().torn_tail_bytes), (3, 9));
        let mut last_bad = clean.clone();
        *last_bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &last_bad).unwrap();
        let check = check_segment(&path).unwrap();
        assert_eq!((check.records, check.corrupt), (2, None));

        // The first record failing its checksum with two after it: corruption at offset 0.
        let mut bad = clean.clone();
        bad[FRAME_HEADER + 1] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let check = check_segment(&path).unwrap();
        assert_eq!(check.records, 0);
        let (at, why) = check.corrupt.unwrap();
        assert_eq!(at, 0);
        assert!(why.contains(&format!("loses the {} bytes after it", clean.len() - first_len)), "{why}");

        // A valid checksum over a record that does not decode: corruption replay refuses.
        let mut undecodable = clean[..first_len].to_vec();
        let payload = [9u8, 1, 2];
        undecodable.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        undecodable.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        undecodable.extend_from_slice(&payload);
        undecodable.extend_from_slice(&clean[first_len..]);
        std::fs::write(&path, &undecodable).unwrap();
        let check = check_segment(&path).unwrap();
        assert_eq!(check.records, 1);
        assert_eq!(check.corrupt.unwrap().0, first_len as u64);
        assert!(Wal::open(dir.path(), true, 2, |_, _| {}).is_err(), "replay refuses what verify calls corrupt");
    }

    #[test]
    fn a_compressed_record_that_does_not_decompress_is_an_error() {
        let mut payload = vec![RECORD_COMPRESSED];
        put_uvarint(&mut payload, 100);
        payload.extend_from_slice(b"not zstd");
        assert!(decode_record(&payload, &mut DecodedRecord::default()).is_err());
        let mut huge = vec![RECORD_COMPRESSED];
        put_uvarint(&mut huge, u64::MAX);
        assert!(decode_record(&huge, &mut DecodedRecord::default()).is_err());
    }

    #[test]
    fn only_closed_segments_holding_sealed_data_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = replay(dir.path());
        let old = [Sample { ts: 1_000, value: 1.0, start_ts: 0 }];
        let new = [Sample { ts: 9_000, value: 2.0, start_ts: 0 }];
        let mut w = wal.writer().unwrap();
        wal.append(&mut w, &[SeriesData { id: 1, samples: &old, histograms: &[], exemplars: &[] }]).unwrap();
        drop(w);
        // Segment 1 holds data before 5,000: closed, so it can go once that is sealed.
        assert_eq!(wal.rotate_if_older(5_000).unwrap(), 2);
        let mut w = wal.writer().unwrap();
        wal.append(&mut w, &[SeriesData { id: 1, samples: &new, histograms: &[], exemplars: &[] }]).unwrap();
        drop(w);
        // Segment 2 holds only newer data: it stays open.
        assert_eq!(wal.rotate_if_older(5_000).unwrap(), 2);
        assert_eq!(wal.delete_sealed(2, 500).unwrap(), 0, "segment 1 holds data at 1,000, not yet sealed");
        assert_eq!(wal.delete_sealed(2, 5_000).unwrap(), 1);
        assert!(!segment_path(dir.path(), 1).exists());
        drop(wal);
        let (_, got) = replay(dir.path());
        assert_eq!(got.iter().map(|g| g.samples.clone()).collect::<Vec<_>>(), vec![new.to_vec()]);
    }
}
