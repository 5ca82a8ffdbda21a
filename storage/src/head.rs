//! The head: samples and exemplars not yet sealed into blocks, held in memory.
//!
//! Each series has a [`MemSeries`]: chunks of up to [`CHUNK_SAMPLES`] samples compressed with
//! the block codecs (delta-of-delta timestamps, XOR values; a few bytes a sample for scrape data)
//! as they arrive, the newest of them still open for appends, and its exemplars (labels kept in
//! their binary form). A chunk never spans two windows, so sealing a window takes
//! whole chunks. Chunks of a series are disjoint and in time order; an out-of-order sample older
//! than the open chunk is put into the chunk covering its time (decoded and re-encoded: rare).
//! Start timestamps are a third column of a chunk, present only in chunks where some sample has
//! one (the block codec's runs once closed), so series without them pay nothing.
//!
//! The head is made durable by the write-ahead log ([`crate::wal`]), not by RocksDB, and rebuilt
//! from it on open. What the write path remembers per series for ordering and duplicate checks
//! ([`HeadState`]) lives beside the data.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use rustc_hash::FxHashMap;

use crate::chunkenc::varint::Reader;
use crate::chunkenc::{histogram as hcodec, start, timestamp, value};
use crate::labels::Labels;
use crate::{Exemplar, Histogram, HistogramSample, NO_START, Sample, SeriesId};

/// Samples per closed chunk: enough that the codecs reach their ratio (Prometheus uses 120 too),
/// few enough that an out-of-order insert re-encodes little.
pub const CHUNK_SAMPLES: usize = 120;

/// What the write path remembers about a series between requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadState {
    pub sample_max_ts: i64,
    pub sample_max_bits: u64,
    /// The newest histogram sample's timestamp: histogram samples are ordered on their own, and
    /// a float sample at or before it must not land on a histogram's timestamp.
    pub histogram_max_ts: i64,
    pub exemplar_max_ts: i64,
    /// The window of the newest exemplar and how many exemplars that window holds, for
    /// `Options::max_exemplars_per_series_per_window`.
    pub exemplar_window: i64,
    pub exemplars_in_window: u64,
}

/// "No sample (or exemplar) yet" in a [`HeadState`].
pub(crate) const NONE_YET: i64 = i64::MIN;

impl HeadState {
    pub const NEW_SERIES: HeadState = HeadState {
        sample_max_ts: NONE_YET,
        sample_max_bits: 0,
        histogram_max_ts: NONE_YET,
        exemplar_max_ts: NONE_YET,
        exemplar_window: NONE_YET,
        exemplars_in_window: 0,
    };
}

/// The head's series by id.
pub(crate) type SeriesMap = FxHashMap<SeriesId, Arc<Mutex<MemSeries>>>;

/// Every series with data (or write state) in the head.
pub(crate) struct Head {
    block_ms: i64,
    series: RwLock<SeriesMap>,
}

impl Head {
    pub fn new(block_ms: i64) -> Head {
        Head { block_ms, series: RwLock::new(FxHashMap::default()) }
    }

    pub fn get(&self, id: SeriesId) -> Option<Arc<Mutex<MemSeries>>> {
        self.series.read().get(&id).cloned()
    }

    /// Read access to the series map with every id in `ids` present, for a write request: one
    /// lock for the whole request rather than a lookup and a reference count per series.
    pub fn series_for_write(&self, ids: impl Iterator<Item = SeriesId> + Clone) -> RwLockReadGuard<'_, SeriesMap> {
        {
            let map = self.series.read();
            if ids.clone().all(|id| map.contains_key(&id)) {
                return map;
            }
        }
        let mut map = self.series.write();
        for id in ids {
            map.entry(id).or_insert_with(|| Arc::new(Mutex::new(MemSeries::new(self.block_ms))));
        }
        RwLockWriteGuard::downgrade(map)
    }

    /// Ids of every series in the head, ascending.
    pub fn ids(&self) -> Vec<SeriesId> {
        let mut ids: Vec<SeriesId> = self.series.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Forgets the given series and their data.
    pub fn remove(&self, ids: &[SeriesId]) {
        let mut map = self.series.write();
        for id in ids {
            map.remove(id);
        }
    }

    /// Forgets series that hold no data; their write state is reloaded from blocks if they return.
    /// A series a writer or reader holds right now stays (it may be about to get data).
    pub fn remove_empty(&self) {
        self.series.write().retain(|_, s| Arc::strong_count(s) > 1 || !s.lock().is_empty());
    }

    /// The oldest timestamp of anything in the head; `None` when it holds no data.
    pub fn oldest_ts(&self) -> Option<i64> {
        self.series.read().values().filter_map(|s| s.lock().oldest_ts()).min()
    }

    /// How much the head holds, for `/metrics`.
    pub fn stats(&self) -> HeadStats {
        let mut stats = HeadStats::default();
        for s in self.series.read().values() {
            let s = s.lock();
            stats.series += 1;
            stats.chunks += s.chunks.len() as u64 + u64::from(s.open.len > 0);
            stats.samples += s.chunks.iter().map(|c| c.len as u64).sum::<u64>() + u64::from(s.open.len);
            stats.histograms += s.histograms.len() as u64;
            stats.exemplars += s.exemplars.len() as u64;
            stats.chunk_bytes += s.chunks.iter().map(|c| c.bytes.len() as u64).sum::<u64>()
                + (s.open.ts_bytes.len() + s.open.values.encoded_len() + 8 * s.open.starts.len()) as u64
                + s.histograms.iter().map(|h| h.bytes.len() as u64).sum::<u64>();
        }
        stats
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HeadStats {
    pub series: u64,
    /// Closed chunks plus open ones with samples.
    pub chunks: u64,
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
    pub chunk_bytes: u64,
}

/// A closed, compressed run of one series' samples within one window.
#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    min_ts: i64,
    max_ts: i64,
    len: u32,
    /// Where the start-timestamp column begins in `bytes`; 0 when the chunk has none (the
    /// timestamp column is never empty). Fits in the struct's padding.
    starts_at: u32,
    /// Timestamp column, value column, then (from `starts_at`) the start-timestamp column.
    bytes: Box<[u8]>,
}

/// Appends the `n` samples of a head chunk's columns to `out`: timestamps, values and, when
/// `starts_at` is not 0, start timestamps from that offset on.
fn decode_columns(bytes: &[u8], n: usize, starts_at: usize, out: &mut Vec<Sample>) {
    let (columns, starts) =
        if starts_at == 0 { (bytes, None) } else { (&bytes[..starts_at], Some(&bytes[starts_at..])) };
    let mut r = Reader::new(columns);
    // Encoded by this process a moment ago: failing to decode would be a bug, not corruption.
    let ts = timestamp::decode(&mut r, n).expect("head chunks decode");
    let values = value::decode(r.remaining(), n).expect("head chunks decode");
    match starts {
        None => out.extend(ts.into_iter().zip(values).map(|(ts, value)| Sample { ts, value, start_ts: NO_START })),
        Some(starts) => {
            let starts = start::decode(starts, &ts).expect("head chunks decode");
            out.extend(ts.iter().zip(values).zip(starts).map(|((&ts, value), start_ts)| Sample {
                ts,
                value,
                start_ts,
            }));
        }
    }
}

/// The newest samples of a series, compressed as they arrive.
#[derive(Debug, Clone, Default)]
struct OpenChunk {
    len: u32,
    min_ts: i64,
    max_ts: i64,
    ts_bytes: Vec<u8>,
    ts: timestamp::Encoder,
    values: value::Encoder,
    /// Every sample's start timestamp once one of them has one; empty (no allocation) before.
    starts: Vec<i64>,
}

impl OpenChunk {
    fn from_samples(samples: &[Sample]) -> OpenChunk {
        let mut c = OpenChunk::default();
        for s in samples {
            c.push(*s);
        }
        c
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a sample newer than every sample in the chunk.
    fn push(&mut self, s: Sample) {
        if self.len == 0 {
            self.min_ts = s.ts;
        }
        self.max_ts = s.ts;
        self.ts.push(s.ts, &mut self.ts_bytes);
        self.values.push(s.value);
        if s.start_ts != NO_START || !self.starts.is_empty() {
            // The first start timestamp of the chunk: the samples before it had none.
            self.starts.resize(self.len as usize, NO_START);
            self.starts.push(s.start_ts);
        }
        self.len += 1;
    }

    fn decode(&self) -> Vec<Sample> {
        let mut bytes = Vec::with_capacity(self.ts_bytes.len() + self.values.encoded_len());
        bytes.extend_from_slice(&self.ts_bytes);
        self.values.write_to(&mut bytes);
        let mut out = Vec::with_capacity(self.len as usize);
        decode_columns(&bytes, self.len as usize, 0, &mut out);
        for (s, &start_ts) in out.iter_mut().zip(&self.starts) {
            s.start_ts = start_ts;
        }
        out
    }

    /// Turns the chunk into a closed one and leaves it empty.
    fn close(&mut self) -> Chunk {
        let open = std::mem::take(self);
        let mut bytes = open.ts_bytes;
        open.values.write_to(&mut bytes);
        let mut starts_at = 0;
        if !open.starts.is_empty() {
            starts_at = bytes.len() as u32;
            // Encoded by this process a moment ago: the timestamps decode.
            let ts = timestamp::decode(&mut Reader::new(&bytes), open.len as usize).expect("head chunks decode");
            start::encode(&open.starts, &ts, &mut bytes);
        }
        Chunk { min_ts: open.min_ts, max_ts: open.max_ts, len: open.len, starts_at, bytes: bytes.into_boxed_slice() }
    }
}

impl Chunk {
    fn encode(samples: &[Sample]) -> Chunk {
        OpenChunk::from_samples(samples).close()
    }

    fn decode_into(&self, out: &mut Vec<Sample>) {
        decode_columns(&self.bytes, self.len as usize, self.starts_at as usize, out);
    }

    fn decode(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.decode_into(&mut out);
        out
    }
}

/// An exemplar as the head keeps it: labels in their binary form, a fraction of the size of
/// owned strings.
#[derive(Debug, Clone)]
struct HeadExemplar {
    ts: i64,
    value: f64,
    labels: Box<[u8]>,
}

/// Bit-for-bit, so that an exemplar with a NaN value equals itself.
impl PartialEq for HeadExemplar {
    fn eq(&self, other: &Self) -> bool {
        self.ts == other.ts && self.value.to_bits() == other.value.to_bits() && self.labels == other.labels
    }
}

impl HeadExemplar {
    fn new(e: &Exemplar) -> HeadExemplar {
        HeadExemplar { ts: e.ts, value: e.value, labels: e.labels.encode().into_boxed_slice() }
    }

    fn to_exemplar(&self) -> Exemplar {
        let labels = Labels::decode(&mut Reader::new(&self.labels)).expect("head exemplar labels decode");
        Exemplar { ts: self.ts, value: self.value, labels }
    }
}

/// A native histogram sample as the head keeps it: encoded (`chunkenc::histogram`), a fraction
/// of the size of the decoded spans and bucket vectors. Equal bytes mean bit-for-bit equal
/// histograms, which is what duplicate detection needs.
#[derive(Debug, Clone, PartialEq)]
struct HeadHistogram {
    ts: i64,
    start_ts: i64,
    bytes: Box<[u8]>,
}

impl HeadHistogram {
    fn new(s: &HistogramSample) -> HeadHistogram {
        HeadHistogram { ts: s.ts, start_ts: s.start_ts, bytes: encode_histogram(&s.h).into_boxed_slice() }
    }

    fn to_sample(&self) -> HistogramSample {
        // Encoded by this process: failing to decode would be a bug, not corruption.
        let h = hcodec::decode(&mut Reader::new(&self.bytes)).expect("head histograms decode");
        HistogramSample { ts: self.ts, start_ts: self.start_ts, h }
    }
}

/// A histogram's bytes in the head's (and the log's) form; equal bytes, equal histograms.
pub(crate) fn encode_histogram(h: &Histogram) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 2 * (h.positive_buckets.len() + h.negative_buckets.len()));
    hcodec::encode(&mut out, h);
    out
}

/// One series' head data.
#[derive(Debug)]
pub(crate) struct MemSeries {
    block_ms: i64,
    /// `None` until the first write after the series (re)entered the head: loaded then.
    pub state: Option<HeadState>,
    chunks: Vec<Chunk>,
    /// The newest samples, after every closed chunk, all in one window.
    open: OpenChunk,
    /// Native histogram samples, in time order.
    histograms: Vec<HeadHistogram>,
    exemplars: Vec<HeadExemplar>,
}

/// Sealable data of one series in one window, as read from the head.
pub(crate) struct SealGroup<T> {
    pub window: i64,
    pub items: Vec<T>,
}

/// What sealing took from one series, to remove once the blocks are written.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    chunks: Vec<Chunk>,
    histograms: Vec<HeadHistogram>,
    exemplars: Vec<HeadExemplar>,
}

/// A series' data in windows ready to seal, grouped by window ([`MemSeries::sealable`]).
#[derive(Default)]
pub(crate) struct Sealable {
    pub samples: Vec<SealGroup<Sample>>,
    pub histograms: Vec<SealGroup<HistogramSample>>,
    pub exemplars: Vec<SealGroup<Exemplar>>,
    pub taken: Taken,
}

impl Sealable {
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.histograms.is_empty() && self.exemplars.is_empty()
    }
}

/// Appends `item` to the group of `window`, the last one when items come in time order.
fn push_grouped<T>(groups: &mut Vec<SealGroup<T>>, window: i64, item: T) {
    match groups.last_mut() {
        Some(g) if g.window == window => g.items.push(item),
        _ => groups.push(SealGroup { window, items: vec![item] }),
    }
}

impl MemSeries {
    fn new(block_ms: i64) -> MemSeries {
        MemSeries {
            block_ms,
            state: None,
            chunks: Vec::new(),
            open: OpenChunk::default(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
        }
    }

    fn window_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.block_ms).saturating_mul(self.block_ms)
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_empty() && self.histograms.is_empty() && self.exemplars.is_empty()
    }

    fn cut_open(&mut self) {
        if !self.open.is_empty() {
            let closed = self.open.close();
            self.chunks.push(closed);
        }
    }

    /// Adds a sample; at an existing timestamp the new value replaces the old (the write path
    /// only does that on WAL replay, where the later record is the one that was accepted).
    pub fn insert_sample(&mut self, s: Sample) {
        let newest = if self.open.is_empty() { self.chunks.last().map(|c| c.max_ts) } else { Some(self.open.max_ts) };
        if newest.is_none_or(|n| s.ts > n) {
            if !self.open.is_empty()
                && (self.window_of(self.open.min_ts) != self.window_of(s.ts) || self.open.len as usize >= CHUNK_SAMPLES)
            {
                self.cut_open();
            }
            self.open.push(s);
            return;
        }
        if !self.open.is_empty() && s.ts >= self.open.min_ts {
            let mut samples = self.open.decode();
            match samples.binary_search_by_key(&s.ts, |o| o.ts) {
                Ok(i) => samples[i] = s,
                Err(i) => samples.insert(i, s),
            }
            self.open = OpenChunk::from_samples(&samples);
            return;
        }
        // Older than the open chunk: into the closed chunk covering it, or the one before it if
        // in the same window, or a new chunk of its own.
        let after = self.chunks.partition_point(|c| c.min_ts <= s.ts);
        let window = self.window_of(s.ts);
        if after > 0 {
            let c = &self.chunks[after - 1];
            if c.max_ts >= s.ts || (self.window_of(c.min_ts) == window && (c.len as usize) < 2 * CHUNK_SAMPLES) {
                let mut samples = c.decode();
                match samples.binary_search_by_key(&s.ts, |o| o.ts) {
                    Ok(i) => samples[i] = s,
                    Err(i) => samples.insert(i, s),
                }
                self.chunks[after - 1] = Chunk::encode(&samples);
                return;
            }
        }
        self.chunks.insert(after, Chunk::encode(&[s]));
    }

    /// The value at exactly `ts`, if the head holds one.
    pub fn sample_at(&self, ts: i64) -> Option<f64> {
        if !self.open.is_empty() && ts >= self.open.min_ts {
            let samples = self.open.decode();
            return samples.binary_search_by_key(&ts, |o| o.ts).ok().map(|i| samples[i].value);
        }
        let c = self.chunks.iter().find(|c| c.min_ts <= ts && ts <= c.max_ts)?;
        let samples = c.decode();
        samples.binary_search_by_key(&ts, |o| o.ts).ok().map(|i| samples[i].value)
    }

    pub fn newest_sample(&self) -> Option<Sample> {
        if !self.open.is_empty() {
            return self.open.decode().last().copied();
        }
        self.chunks.last().and_then(|c| c.decode().last().copied())
    }

    /// Appends the samples with `mint <= ts <= maxt` to `out`, in time order.
    pub fn samples_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        for c in self.chunks.iter().filter(|c| c.max_ts >= mint && c.min_ts <= maxt) {
            let start = out.len();
            c.decode_into(out);
            if c.min_ts < mint || c.max_ts > maxt {
                let mut kept = start;
                for i in start..out.len() {
                    if out[i].ts >= mint && out[i].ts <= maxt {
                        out[kept] = out[i];
                        kept += 1;
                    }
                }
                out.truncate(kept);
            }
        }
        if !self.open.is_empty() && self.open.max_ts >= mint && self.open.min_ts <= maxt {
            out.extend(self.open.decode().into_iter().filter(|s| s.ts >= mint && s.ts <= maxt));
        }
    }

    /// Adds a histogram sample; at an existing timestamp the new one replaces the old (only on
    /// WAL replay, as for float samples).
    pub fn insert_histogram(&mut self, s: &HistogramSample) {
        let h = HeadHistogram::new(s);
        if self.histograms.last().is_none_or(|l| h.ts > l.ts) {
            self.histograms.push(h);
            return;
        }
        match self.histograms.binary_search_by_key(&h.ts, |x| x.ts) {
            Ok(i) => self.histograms[i] = h,
            Err(i) => self.histograms.insert(i, h),
        }
    }

    /// The encoded histogram at exactly `ts` ([`encode_histogram`]'s form), if the head holds one.
    pub fn histogram_bytes_at(&self, ts: i64) -> Option<&[u8]> {
        let i = self.histograms.binary_search_by_key(&ts, |x| x.ts).ok()?;
        Some(&self.histograms[i].bytes)
    }

    pub fn newest_histogram_ts(&self) -> Option<i64> {
        self.histograms.last().map(|h| h.ts)
    }

    /// The histogram samples with `mint <= ts <= maxt`, in time order.
    pub fn histograms(&self, mint: i64, maxt: i64) -> Vec<HistogramSample> {
        let lo = self.histograms.partition_point(|h| h.ts < mint);
        let hi = self.histograms.partition_point(|h| h.ts <= maxt);
        self.histograms[lo..hi].iter().map(HeadHistogram::to_sample).collect()
    }

    /// Adds an exemplar; at an existing timestamp the new one replaces the old.
    pub fn insert_exemplar(&mut self, e: &Exemplar) {
        let e = HeadExemplar::new(e);
        if self.exemplars.last().is_none_or(|l| e.ts > l.ts) {
            self.exemplars.push(e);
            return;
        }
        match self.exemplars.binary_search_by_key(&e.ts, |x| x.ts) {
            Ok(i) => self.exemplars[i] = e,
            Err(i) => self.exemplars.insert(i, e),
        }
    }

    pub fn exemplar_at(&self, ts: i64) -> Option<Exemplar> {
        let i = self.exemplars.binary_search_by_key(&ts, |x| x.ts).ok()?;
        Some(self.exemplars[i].to_exemplar())
    }

    pub fn newest_exemplar_ts(&self) -> Option<i64> {
        self.exemplars.last().map(|e| e.ts)
    }

    /// How many exemplars lie in `[from, to)`.
    pub fn exemplars_between(&self, from: i64, to: i64) -> u64 {
        let lo = self.exemplars.partition_point(|e| e.ts < from);
        let hi = self.exemplars.partition_point(|e| e.ts < to);
        (hi - lo) as u64
    }

    /// The exemplars with `mint <= ts <= maxt`, in time order.
    pub fn exemplars(&self, mint: i64, maxt: i64) -> Vec<Exemplar> {
        let lo = self.exemplars.partition_point(|e| e.ts < mint);
        let hi = self.exemplars.partition_point(|e| e.ts <= maxt);
        self.exemplars[lo..hi].iter().map(HeadExemplar::to_exemplar).collect()
    }

    /// Every window the series has head data in, ascending.
    pub fn windows(&self) -> Vec<i64> {
        let open = (!self.open.is_empty()).then_some(self.open.min_ts);
        let sample_ts = self.chunks.iter().map(|c| c.min_ts).chain(open).chain(self.histograms.iter().map(|h| h.ts));
        let mut windows: Vec<i64> =
            sample_ts.chain(self.exemplars.iter().map(|e| e.ts)).map(|ts| self.window_of(ts)).collect();
        windows.sort_unstable();
        windows.dedup();
        windows
    }

    /// Drops everything older than `before` (retention).
    pub fn drop_before(&mut self, before: i64) {
        if !self.open.is_empty() && self.open.min_ts < before {
            let kept: Vec<Sample> = self.open.decode().into_iter().filter(|s| s.ts >= before).collect();
            self.open = OpenChunk::from_samples(&kept);
        }
        let mut i = 0;
        while i < self.chunks.len() {
            let c = &self.chunks[i];
            if c.max_ts < before {
                self.chunks.remove(i);
            } else if c.min_ts < before {
                let kept: Vec<Sample> = c.decode().into_iter().filter(|s| s.ts >= before).collect();
                self.chunks[i] = Chunk::encode(&kept);
                i += 1;
            } else {
                i += 1;
            }
        }
        self.histograms.retain(|h| h.ts >= before);
        self.exemplars.retain(|e| e.ts >= before);
    }

    /// Copies out what is ready to seal, grouped by window, and what to remove once it is sealed
    /// ([`MemSeries::remove_sealed`]): every closed chunk, whatever its window (a late sample
    /// merges into the block later, as a second sealing of the window), and the open chunk,
    /// histogram samples and exemplars older than `horizon`. Afterwards nothing older than
    /// `horizon` is left, and the head holds at most the open chunk and `horizon`'s newer
    /// histograms and exemplars, which is what bounds the write-ahead log.
    pub fn sealable(&mut self, horizon: i64) -> Sealable {
        if !self.open.is_empty() && self.open.min_ts < horizon {
            self.cut_open();
        }
        let mut out = Sealable::default();
        for c in &self.chunks {
            let window = self.window_of(c.min_ts);
            match out.samples.last_mut() {
                Some(g) if g.window == window => c.decode_into(&mut g.items),
                _ => out.samples.push(SealGroup { window, items: c.decode() }),
            }
            out.taken.chunks.push(c.clone());
        }
        for h in self.histograms.iter().take_while(|h| h.ts < horizon) {
            push_grouped(&mut out.histograms, self.window_of(h.ts), h.to_sample());
            out.taken.histograms.push(h.clone());
        }
        for e in self.exemplars.iter().take_while(|e| e.ts < horizon) {
            push_grouped(&mut out.exemplars, self.window_of(e.ts), e.to_exemplar());
            out.taken.exemplars.push(e.clone());
        }
        out
    }

    /// The oldest timestamp of anything the series holds in the head.
    pub fn oldest_ts(&self) -> Option<i64> {
        let open = (!self.open.is_empty()).then_some(self.open.min_ts);
        let chunk = self.chunks.first().map(|c| c.min_ts);
        let histogram = self.histograms.first().map(|h| h.ts);
        let exemplar = self.exemplars.first().map(|e| e.ts);
        [open, chunk, histogram, exemplar].into_iter().flatten().min()
    }

    /// Removes what [`MemSeries::sealable`] copied out, unless a write changed it since (then it
    /// stays, and the next pass seals it again over the block just written).
    pub fn remove_sealed(&mut self, taken: &Taken) {
        // Both lists are sorted by time, so each lookup is a binary search.
        let sealed_chunk =
            |c: &Chunk| taken.chunks.binary_search_by_key(&c.min_ts, |t| t.min_ts).is_ok_and(|i| taken.chunks[i] == *c);
        self.chunks.retain(|c| !sealed_chunk(c));
        let sealed_histogram = |h: &HeadHistogram| {
            taken.histograms.binary_search_by_key(&h.ts, |t| t.ts).is_ok_and(|i| taken.histograms[i] == *h)
        };
        self.histograms.retain(|h| !sealed_histogram(h));
        let sealed_exemplar = |e: &HeadExemplar| {
            taken.exemplars.binary_search_by_key(&e.ts, |t| t.ts).is_ok_and(|i| taken.exemplars[i] == *e)
        };
        self.exemplars.retain(|e| !sealed_exemplar(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn samples(s: &MemSeries) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        s.samples_into(i64::MIN, i64::MAX, &mut out);
        out.into_iter().map(|s| (s.ts, s.value)).collect()
    }

    #[test]
    fn chunks_close_at_the_size_limit_and_at_window_ends() {
        let mut s = MemSeries::new(2 * HOUR);
        let first = 2 * HOUR - 200 * 15_000;
        for i in 0..300 {
            s.insert_sample(Sample { ts: first + i * 15_000, value: i as f64, start_ts: 0 });
        }
        // 200 samples before the window boundary: one full chunk and 80 cut at the boundary.
        assert_eq!(s.chunks.iter().map(|c| c.len).collect::<Vec<_>>(), vec![120, 80]);
        assert_eq!(s.open.len, 100);
        // Without start timestamps, no chunk carries a start column.
        assert!(s.chunks.iter().all(|c| c.starts_at == 0) && s.open.starts.is_empty());
        assert_eq!(samples(&s), (0..300).map(|i| (first + i * 15_000, i as f64)).collect::<Vec<_>>());
        assert_eq!(s.sample_at(first + 150 * 15_000), Some(150.0));
        assert_eq!(s.sample_at(first + 150 * 15_000 + 1), None);
        let mut part = Vec::new();
        s.samples_into(first + 119 * 15_000, first + 121 * 15_000, &mut part);
        assert_eq!(part.iter().map(|s| s.value).collect::<Vec<_>>(), vec![119.0, 120.0, 121.0]);
    }

    #[test]
    fn out_of_order_samples_land_in_time_order_and_replace_equal_timestamps() {
        let mut s = MemSeries::new(2 * HOUR);
        for i in 0..130 {
            s.insert_sample(Sample { ts: 10_000 + i * 10, value: 1.0, start_ts: 0 });
        }
        s.insert_sample(Sample { ts: 10_005, value: 2.0, start_ts: 0 }); // inside the closed chunk
        s.insert_sample(Sample { ts: 11_255, value: 3.0, start_ts: 0 }); // inside the open chunk
        s.insert_sample(Sample { ts: 5, value: 4.0, start_ts: 0 }); // before everything, same window
        s.insert_sample(Sample { ts: 10_000, value: 5.0, start_ts: 0 }); // replaces
        let got = samples(&s);
        assert_eq!(got.len(), 133);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(got[0], (5, 4.0));
        assert_eq!(got[1], (10_000, 5.0));
        assert_eq!(got[2], (10_005, 2.0));
        assert_eq!(s.sample_at(11_255), Some(3.0));
    }

    #[test]
    fn start_timestamps_survive_chunk_cuts_and_out_of_order_inserts() {
        let mut s = MemSeries::new(2 * HOUR);
        let at = |i: i64| 10_000 + i * 1000;
        for i in 0..200 {
            let start_ts = if i < 120 { NO_START } else { 5_000 };
            s.insert_sample(Sample { ts: at(i), value: i as f64, start_ts });
        }
        // Only the open chunk, from its first sample, holds starts; then one lands in the closed chunk.
        assert_eq!((s.chunks.len(), s.chunks[0].starts_at), (1, 0));
        s.insert_sample(Sample { ts: at(0) + 500, value: 0.5, start_ts: at(0) + 400 });
        assert!(s.chunks[0].starts_at > 0);
        let mut got = Vec::new();
        s.samples_into(i64::MIN, i64::MAX, &mut got);
        assert_eq!(got.len(), 201);
        assert_eq!(got[1], Sample { ts: at(0) + 500, value: 0.5, start_ts: at(0) + 400 });
        assert!(got[2..121].iter().all(|x| x.start_ts == NO_START));
        assert!(got[121..].iter().all(|x| x.start_ts == 5_000));
        assert_eq!(s.newest_sample(), Some(Sample { ts: at(199), value: 199.0, start_ts: 5_000 }));
        let sealed = s.sealable(2 * HOUR).samples;
        assert_eq!(sealed[0].items, got);
    }

    #[test]
    fn sealing_takes_whole_windows_and_leaves_what_changed_meanwhile() {
        let mut s = MemSeries::new(2 * HOUR);
        for ts in [HOUR, HOUR + 1, 2 * HOUR + 5] {
            s.insert_sample(Sample { ts, value: 1.0, start_ts: 0 });
        }
        let e = Exemplar { ts: HOUR, value: 0.5, labels: Labels::default() };
        s.insert_exemplar(&e);
        let h =
            HistogramSample { ts: HOUR + 3, start_ts: 0, h: Histogram { count: 1.0, sum: 2.0, ..Default::default() } };
        s.insert_histogram(&h);
        let sealable = s.sealable(2 * HOUR);
        let (groups, taken) = (&sealable.samples, &sealable.taken);
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].window, groups[0].items.len()), (0, 2));
        assert_eq!(sealable.exemplars[0].items, vec![e]);
        assert_eq!(sealable.histograms[0].items, vec![h]);
        // A late write into the window being sealed re-encodes its chunk: it must stay.
        s.insert_sample(Sample { ts: HOUR + 2, value: 1.0, start_ts: 0 });
        s.remove_sealed(taken);
        assert_eq!(samples(&s), vec![(HOUR, 1.0), (HOUR + 1, 1.0), (HOUR + 2, 1.0), (2 * HOUR + 5, 1.0)]);
        assert!(s.exemplars.is_empty() && s.histograms.is_empty());
        let taken = s.sealable(2 * HOUR).taken;
        s.remove_sealed(&taken);
        assert_eq!(samples(&s), vec![(2 * HOUR + 5, 1.0)]);
    }
}
